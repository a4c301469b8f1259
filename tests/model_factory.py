"""Small int8 .tflite models that together use every op tflm-train supports.

Two kinds:
- ``python -m tests.model_factory OUTDIR`` writes models made the way users make them:
  tf_keras + tfmot quantization-aware training, then the TFLite converter with full-integer
  quantization and a representative dataset. Run it as a subprocess: tfmot needs Keras 2
  (TF_USE_LEGACY_KERAS=1), which must not leak into the test process.
- ``synthetic_graphs()`` builds QuantGraphs directly, for cases the converter does not
  emit on demand (dilation, RELU_N1_TO_1, int8 -> int8 QUANTIZE, broadcasting ADD,
  MEAN over other axes, per-tensor convolution weights).

Each converter model lists its ops in ``EXPECTED_OPS`` so the tests can check that the
converter really produced them.
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List

import numpy as np

#: name -> ops the converted model must contain (checked by the tests)
EXPECTED_OPS: Dict[str, List[str]] = {
    "conv_stack_float_io": ["QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX", "DEQUANTIZE"],
    "residual_int8_io": ["CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"],
    "pool_head_int8_io": ["CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX"],
    "depth_multiplier_float_io": ["QUANTIZE", "DEPTHWISE_CONV_2D", "CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "DEQUANTIZE"],
    "dense_per_channel_int8_io": ["FULLY_CONNECTED", "SOFTMAX"],
}


# --------------------------------------------------------------------------- converter models
def _keras_models(keras):
    """The float Keras 2 models, by name: (model, int8 input/output?, QAT?).

    Without QAT the converter quantizes post-training, which makes FULLY_CONNECTED
    weights per-channel (tfmot's QAT Dense is per-tensor) and calibrates every activation
    range (one short QAT epoch leaves most ranges near their initial [-6, 6]).

    ReLU6 is a separate ``ReLU(6.0)`` layer (tfmot rejects activation="relu6"); the
    converter fuses it into the preceding op.
    """
    L = keras.layers
    models = {}

    # CONV_2D SAME/VALID, stride 1/2, relu/relu6/none; depthwise; MEAN without keepdims; FC; softmax
    x = inp = keras.Input((20, 20, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.ReLU(6.0)(L.Conv2D(12, 3, strides=2, padding="valid")(x))  # fused as RELU6
    x = L.Conv2D(12, 3, strides=2, padding="same")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.ReLU(6.0)(L.Conv2D(16, 1, padding="valid")(x))
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    x = L.Softmax()(x)
    models["conv_stack_float_io"] = (keras.Model(inp, x), False, True)

    # residual block (ADD), ZeroPadding2D (PAD), max pool, Flatten (RESHAPE), dense head
    x = inp = keras.Input((12, 12, 4))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    skip = x
    y = L.ReLU(6.0)(L.DepthwiseConv2D(3, padding="same")(x))
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([skip, y])
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(8, 3, strides=2, padding="valid", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(5)(x)
    models["residual_int8_io"] = (keras.Model(inp, x), True, False)  # PTQ: ADD inputs get different scales

    # pools with SAME padding (partial windows), MEAN keepdims, 1x1 conv head, reshape, softmax
    x = inp = keras.Input((15, 15, 3))
    x = L.ReLU(6.0)(L.Conv2D(8, 5, strides=2, padding="same")(x))
    x = L.AveragePooling2D(3, strides=1, padding="same")(x)
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Conv2D(6, 1)(x)
    x = L.Reshape((6,))(x)
    x = L.Softmax()(x)
    models["pool_head_int8_io"] = (keras.Model(inp, x), True, True)

    # depth multiplier 2, valid average pool, 5x5 global mean, dense
    x = inp = keras.Input((22, 22, 4))
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", depth_multiplier=2, activation="relu")(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(4, activation="relu")(x)
    x = L.Dense(3)(x)
    models["depth_multiplier_float_io"] = (keras.Model(inp, x), False, True)

    # post-training quantization: per-channel dense layers
    x = inp = keras.Input((24,))
    x = L.Dense(16, activation="relu")(x)
    x = L.Dense(7)(x)
    x = L.Softmax()(x)
    models["dense_per_channel_int8_io"] = (keras.Model(inp, x), True, False)
    return models


def _calibration_data(shape, n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n,) + tuple(shape)).astype(np.float32)


def _convert(tf, keras, tfmot, model, int8_io: bool, qat: bool) -> bytes:
    """Optionally QAT-wrap the model and train it one short epoch on random data (so the
    quantization ranges are real), then convert it to a full-integer .tflite with batch 1
    (a static shape, so Reshape/Flatten stay a single RESHAPE)."""
    in_shape = model.input_shape[1:]
    if qat:
        model = tfmot.quantization.keras.quantize_model(model)
        x = _calibration_data(in_shape, 64, seed=1)
        y = np.random.default_rng(2).normal(size=(64,) + tuple(model.output_shape[1:])).astype(np.float32)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    forward = tf.function(lambda t: model(t, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec((1,) + tuple(in_shape), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for sample in _calibration_data(in_shape, 16, seed=3):
            yield [sample[None]]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def write_converter_models(out_dir: str) -> List[str]:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot needs Keras 2 (tf_keras); this process only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name, (model, int8_io, qat) in _keras_models(keras).items():
        data = _convert(tf, keras, tfmot, model, int8_io, qat)
        path = os.path.join(out_dir, name + ".tflite")
        with open(path, "wb") as f:
            f.write(data)
        written.append(path)
    return written


# --------------------------------------------------------------------------- synthetic graphs
def _act(name, shape, scale, zp):
    from tflm_train.graph import Tensor

    return Tensor(name, shape, "int8", [scale], [zp])


def _weights(name, shape, rng, per_channel_dim=None, scale=0.02):
    from tflm_train.graph import Tensor

    data = rng.integers(-127, 128, size=shape).astype(np.int8)
    if per_channel_dim is None:
        return Tensor(name, shape, "int8", [scale], [0], 0, data)
    n = shape[per_channel_dim]
    scales = rng.uniform(0.5, 1.5, size=n) * scale
    return Tensor(name, shape, "int8", scales, np.zeros(n, np.int64), per_channel_dim, data)


def _bias(name, n, in_scale, w_scales, rng):
    from tflm_train.graph import Tensor

    w_scales = np.broadcast_to(np.asarray(w_scales, np.float64), (n,))
    data = rng.integers(-3000, 3000, size=n).astype(np.int32)
    return Tensor(name, (n,), "int32", in_scale * w_scales, np.zeros(n, np.int64), 0, data)


def synthetic_graphs() -> Dict[str, "object"]:
    """QuantGraphs for op variants the converter does not produce on request."""
    from tflm_train.graph import Op, QuantGraph, Tensor

    rng = np.random.default_rng(7)
    graphs = {}

    # dilated conv (per-tensor weights) with RELU_N1_TO_1, dilated depthwise, int8 -> int8 QUANTIZE
    t = {}
    t["x"] = _act("x", (1, 11, 11, 3), 0.05, 3)
    t["w1"] = _weights("w1", (6, 3, 3, 3), rng, scale=0.0005)
    t["b1"] = _bias("b1", 6, 0.05, t["w1"].scale, rng)
    t["y1"] = _act("y1", (1, 11, 11, 6), 1.0 / 120, -2)
    t["w2"] = _weights("w2", (1, 3, 3, 6), rng, per_channel_dim=3, scale=0.005)
    t["b2"] = _bias("b2", 6, 1.0 / 120, t["w2"].scale, rng)
    t["y2"] = _act("y2", (1, 4, 5, 6), 0.01, 5)
    t["y3"] = _act("y3", (1, 4, 5, 6), 0.023, -20)
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["y1"], dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=2,
                                                   dilation_w=2, activation="RELU_N1_TO_1"), "conv_dilated"),
        Op("DEPTHWISE_CONV_2D", ["y1", "w2", "b2"], ["y2"], dict(padding="VALID", stride_h=2, stride_w=2,
                                                              dilation_h=2, dilation_w=1, activation="RELU",
                                                              depth_multiplier=1), "dw_dilated"),
        Op("QUANTIZE", ["y2"], ["y3"], {}, "requantize"),
    ]
    graphs["dilation_requantize"] = QuantGraph(t, ops, ["x"], ["y3"], name="dilation_requantize")

    # broadcasting ADD with activation, MEAN over channels (keep_dims) and over H (no keep_dims)
    t = {}
    t["a"] = _act("a", (1, 5, 6, 4), 0.04, -10)
    t["c"] = Tensor("c", (1, 1, 1, 4), "int8", [0.07], [2], 0, rng.integers(-128, 128, (1, 1, 1, 4)).astype(np.int8))
    t["s"] = _act("s", (1, 5, 6, 4), 0.03, -128)
    t["ax_c"] = Tensor("ax_c", (1,), "int32", data=np.array([3], np.int32))
    t["m_c"] = _act("m_c", (1, 5, 6, 1), 0.05, -100)
    t["ax_h"] = Tensor("ax_h", (1,), "int32", data=np.array([-3], np.int32))
    t["m_h"] = _act("m_h", (1, 6, 1), 0.04, -60)
    ops = [
        Op("ADD", ["a", "c"], ["s"], dict(activation="RELU6"), "add_broadcast"),
        Op("MEAN", ["s", "ax_c"], ["m_c"], dict(keep_dims=True), "mean_channels"),
        Op("MEAN", ["m_c", "ax_h"], ["m_h"], dict(keep_dims=False), "mean_height"),
    ]
    graphs["broadcast_add_means"] = QuantGraph(t, ops, ["a"], ["m_h"], name="broadcast_add_means")

    # MEAN over {1, 2} with a 7x7 (non power of two) window and rescaling, keep_dims False
    t = {}
    t["x"] = _act("x", (1, 7, 7, 5), 0.1, 4)
    t["ax"] = Tensor("ax", (2,), "int32", data=np.array([2, 1], np.int32))
    t["y"] = _act("y", (1, 5), 0.02, -9)
    ops = [Op("MEAN", ["x", "ax"], ["y"], dict(keep_dims=False), "mean_hw")]
    graphs["mean_7x7_rescale"] = QuantGraph(t, ops, ["x"], ["y"], name="mean_7x7_rescale")

    # pools with fused activations; FULLY_CONNECTED with keep_num_dims and without bias
    t = {}
    t["x"] = _act("x", (1, 9, 9, 3), 0.05, 10)
    t["p1"] = _act("p1", (1, 5, 5, 3), 0.05, 10)
    t["p2"] = _act("p2", (1, 4, 4, 3), 0.05, 10)
    t["r"] = _act("r", (1, 16, 3), 0.05, 10)
    t["shape"] = Tensor("shape", (3,), "int32", data=np.array([1, 16, 3], np.int32))
    t["w1"] = _weights("w1", (5, 3), rng, scale=0.01)
    t["b1"] = _bias("b1", 5, 0.05, t["w1"].scale, rng)
    t["f1"] = _act("f1", (1, 16, 5), 0.02, -30)
    t["w2"] = _weights("w2", (4, 80), rng, per_channel_dim=0, scale=0.002)
    t["f2"] = _act("f2", (1, 4), 0.03, 3)
    pool = dict(filter_h=3, filter_w=3, stride_h=2, stride_w=2, padding="SAME", activation="RELU6")
    ops = [
        Op("AVERAGE_POOL_2D", ["x", ], ["p1"], pool, "avg_relu6"),
        Op("MAX_POOL_2D", ["p1"], ["p2"], dict(filter_h=2, filter_w=2, stride_h=1, stride_w=1, padding="VALID",
                                               activation="RELU"), "max_relu"),
        Op("RESHAPE", ["p2", "shape"], ["r"], {}, "reshape3d"),
        Op("FULLY_CONNECTED", ["r", "w1", "b1"], ["f1"], dict(activation="NONE", keep_num_dims=True), "fc_keep_dims"),
        Op("FULLY_CONNECTED", ["f1", "w2", None], ["f2"], dict(activation="NONE", keep_num_dims=False), "fc_no_bias"),
    ]
    graphs["pool_act_fc_variants"] = QuantGraph(t, ops, ["x"], ["f2"], name="pool_act_fc_variants")

    # softmax with beta != 1 over rows of 40 classes (batch 3)
    t = {}
    t["x"] = _act("x", (3, 40), 0.09, 5)
    t["y"] = Tensor("y", (3, 40), "int8", [1.0 / 256], [-128])
    ops = [Op("SOFTMAX", ["x"], ["y"], dict(beta=0.6), "softmax_beta")]
    graphs["softmax_beta"] = QuantGraph(t, ops, ["x"], ["y"], name="softmax_beta")

    graphs["fc_multiplier_rounding"] = _multiplier_rounding_graph("FULLY_CONNECTED", rng)
    graphs["conv_multiplier_rounding"] = _multiplier_rounding_graph("CONV_2D", rng)
    return graphs


def multiplier_variants(s_in: float, s_w: float, s_out: float):
    """Two ways TFLite versions form a per-tensor multiplier: (float32 product s_in * s_w,
    divided in double) and (everything in double). Returns both (multiplier, shift) pairs."""
    from tflm_train.ops.quant import quantize_multiplier

    f32 = np.float32
    from_f32_product = quantize_multiplier(float(f32(s_in) * f32(s_w)) / float(f32(s_out)))
    all_double = quantize_multiplier(float(f32(s_in)) * float(f32(s_w)) / float(f32(s_out)))
    return from_f32_product, all_double


def _multiplier_rounding_graph(op_type: str, rng):
    """A layer whose outputs depend on which multiplier formula the kernel uses.

    Scales are searched so that the two formulas of ``multiplier_variants`` give different
    Q31 multipliers, and half the output units get a zero weight and a bias on which the
    two multipliers round differently, so a kernel using the wrong formula is caught.
    """
    from tflm_train.graph import Op, QuantGraph, Tensor
    from tflm_train.ops.quant import multiply_by_quantized_multiplier

    # a tiny real multiplier (~1e-7) makes consecutive accumulators differ by less than
    # the gap between the two multipliers' products, so rounding boundaries can be hit
    while True:
        s_in, s_w, s_out = (float(np.float32(v)) for v in (rng.uniform(0.005, 0.01), rng.uniform(1e-5, 3e-5),
                                                             rng.uniform(0.5, 1.0)))
        a, b = multiplier_variants(s_in, s_w, s_out)
        if a != b:
            break
    real = s_in * s_w / s_out
    near_boundaries = np.array([round((k + 0.5) / real) + d for k in range(-60, 60) for d in range(-3, 4)])
    differ = multiply_by_quantized_multiplier(near_boundaries, *a) != multiply_by_quantized_multiplier(near_boundaries, *b)
    crafted = near_boundaries[differ][:8]
    if crafted.size < 8:
        raise RuntimeError("multiplier rounding search found too few distinguishing biases")
    units, depth = 16, 6
    weights = rng.integers(-127, 128, size=(units, depth)).astype(np.int8)
    weights[:8] = 0
    bias = rng.integers(-int(20 / real), int(20 / real), size=units).astype(np.int32)
    bias[:8] = crafted
    t = {}
    if op_type == "FULLY_CONNECTED":
        x_shape, w_shape, y_shape = (1, depth), (units, depth), (1, units)
        attrs = dict(activation="NONE", keep_num_dims=False)
    else:
        x_shape, w_shape, y_shape = (1, 1, 1, depth), (units, 1, 1, depth), (1, 1, 1, units)
        attrs = dict(padding="VALID", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, activation="NONE")
    t["x"] = _act("x", x_shape, s_in, 0)
    t["w"] = Tensor("w", w_shape, "int8", [s_w], [0], 0, weights.reshape(w_shape))
    t["b"] = Tensor("b", (units,), "int32", [s_in * s_w], [0], 0, bias)
    t["y"] = _act("y", y_shape, s_out, 0)
    name = op_type.lower() + "_multiplier_rounding"
    return QuantGraph(t, [Op(op_type, ["x", "w", "b"], ["y"], attrs, name)], ["x"], ["y"], name=name)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.model_factory OUTDIR")
    for p in write_converter_models(sys.argv[1]):
        print(p)
