"""Small int8 models in the forms load must normalize, made the way users make them: Keras 3
models with a dynamic batch (``keras.Input(shape)``) through the TF converter with int8
post-training quantization; plus a 16x8 (int16 activation) model load must refuse.

Run as ``python -m tests.make_contract_models OUTDIR`` (a subprocess: TensorFlow's converter
state stays out of the test process).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402


def models(keras):
    """name -> (float Keras model, int8 model edges?, quantization)"""
    L = keras.layers
    out = {}
    # Keras Flatten() head: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE for the dynamic batch
    x = inp = keras.Input((10, 10, 3))
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(5)(x)
    out["flatten_head"] = (keras.Model(inp, x), True, "int8")
    # a flat feature vector reshaped inside the graph to HxWxC (float model edges)
    x = inp = keras.Input((64,))
    x = L.Reshape((8, 8, 1))(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(4)(x)
    out["flat_input"] = (keras.Model(inp, x), False, "int8")
    # the same with int8 edges and a Flatten head: both rewrites in one graph
    x = inp = keras.Input((48,))
    x = L.Reshape((4, 4, 3))(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(3)(x)
    out["flat_input_flatten"] = (keras.Model(inp, x), True, "int8")
    # the smallest trainable model: the loader fuzz test's cheapest case
    x = inp = keras.Input((6, 6, 2))
    x = L.Conv2D(3, 3, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(2)(x)
    out["tiny"] = (keras.Model(inp, x), True, "int8")
    # 16x8: int16 activations, int8 weights (refused at load)
    x = inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(3)(x)
    out["int16_activations"] = (keras.Model(inp, x), False, "16x8")
    return out


def convert(tf, model, int8_io: bool, quant: str) -> bytes:
    in_shape = tuple(model.input_shape[1:])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        rng = np.random.default_rng(3)
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1,) + in_shape).astype(np.float32)]

    converter.representative_dataset = representative
    if quant == "16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def main(out_dir: str) -> None:
    import tensorflow as tf
    import keras

    keras.utils.set_random_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    for name, (model, int8_io, quant) in models(keras).items():
        # random biases, so every layer has one the training step can update
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.random.default_rng(1).normal(0, 0.1, layer.bias.shape).astype(np.float32))
        with open(os.path.join(out_dir, name + ".tflite"), "wb") as f:
            f.write(convert(tf, model, int8_io, quant))


if __name__ == "__main__":
    main(sys.argv[1])
