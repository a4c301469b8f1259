#!/usr/bin/env python
"""Make the project's default int8 model: a small backbone pretrained on Fashion-MNIST.

    python scripts/make_default_model.py            # writes tflm_train/data/fmnist_backbone.tflite

Steps: float training (tf_keras), quantization-aware training with tfmot, conversion to a
full-int8 ``.tflite`` (int8 input and output), then the int8 test accuracy measured with the
tflite-micro interpreter, which is written into ``tflm_train/data/README.md``.

The network is a MobileNetV2-style backbone (conv, depthwise, pointwise, inverted residual
blocks with residual ADDs, ReLU6) with 64 feature channels before the global average pool,
so its features can be reused for a new task (MNIST digits) by on-device fine-tuning.
The output is int8 logits (no softmax): the on-device loss is softmax cross-entropy on the
dequantized logits.

The helpers at the top (op listing, tflite-micro evaluation) import no TensorFlow, so the
tests import this file to check the shipped model with the same code.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tflm_train import datasets  # noqa: E402

DEFAULT_OUT = REPO / "tflm_train" / "data" / "fmnist_backbone.tflite"
INPUT_SIZE = 32          # Fashion-MNIST 28x28 is resized to 32x32 (bilinear)
INPUT_CHANNELS = 1
NUM_CLASSES = 10
SEED = 20240607

#: The builtin ops the default model may contain (what the project's reference and runtime support).
ALLOWED_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "RESHAPE", "SOFTMAX", "PAD", "QUANTIZE", "DEQUANTIZE",
})


# ----------------------------------------------------------------------------------------
# TensorFlow-free helpers (shared with tests/test_default_model.py)
# ----------------------------------------------------------------------------------------

def model_op_names(model_bytes: bytes) -> list[str]:
    """Builtin op names of every operator of subgraph 0, in execution order."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    code_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                  if not name.startswith("_")}
    names = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        # Newer schemas keep the code in builtinCode; deprecatedBuiltinCode holds it for codes < 127.
        value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        names.append(code_names.get(value, f"BUILTIN_{value}"))
    return names


def micro_interpreter(model_bytes: bytes):
    """A tflite-micro interpreter for ``model_bytes`` (the exactness oracle of the project)."""
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=256 * 1024)


def input_quantization(interpreter) -> tuple[float, int]:
    """(scale, zero_point) of the interpreter's input 0."""
    q = interpreter.get_input_details(0)["quantization_parameters"]
    return float(q["scales"][0]), int(q["zero_points"][0])


def micro_predict(model_bytes: bytes, images_uint8: np.ndarray) -> np.ndarray:
    """Class predictions of the int8 model for uint8 [N,28,28,1] images, run one by one in tflite-micro."""
    interpreter = micro_interpreter(model_bytes)
    details = interpreter.get_input_details(0)
    if np.dtype(details["dtype"]) != np.int8:
        raise ValueError(f"model input must be int8, got {details['dtype']}")
    height, width, channels = (int(d) for d in details["shape"][1:4])
    scale, zero_point = input_quantization(interpreter)
    x = datasets.to_int8_input(datasets.prepare_images(images_uint8, (height, width), channels),
                               scale, zero_point)
    predictions = np.empty(len(x), dtype=np.int64)
    for i, image in enumerate(x):
        interpreter.set_input(image[np.newaxis], 0)
        interpreter.invoke()
        predictions[i] = int(np.argmax(interpreter.get_output(0)[0]))
    return predictions


def micro_accuracy(model_bytes: bytes, images_uint8: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of the int8 model through tflite-micro."""
    return float(np.mean(micro_predict(model_bytes, images_uint8) == np.asarray(labels)))


# ----------------------------------------------------------------------------------------
# Training (tf_keras + tfmot; TensorFlow is imported only here)
# ----------------------------------------------------------------------------------------

def _import_tf():
    # tfmot works only with Keras 2: make tf.keras resolve to tf_keras before TF is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras
    import tensorflow_model_optimization as tfmot

    return tf, tf_keras, tfmot


def build_backbone(tf_keras):
    """The float model: conv/depthwise/pointwise + inverted residuals, ReLU6, GAP, Dense logits."""
    layers = tf_keras.layers

    def conv_bn(x, filters, kernel, stride, relu6=True, name=""):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=name + "_bn")(x)
        return layers.ReLU(6.0, name=name + "_relu6")(x) if relu6 else x

    def dw_bn(x, stride, name):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(name=name + "_bn")(x)
        return layers.ReLU(6.0, name=name + "_relu6")(x)

    def inverted_residual(x, expand, out_channels, stride, name):
        in_channels = x.shape[-1]
        y = conv_bn(x, in_channels * expand, 1, 1, name=name + "_expand")
        y = dw_bn(y, stride, name=name + "_dw")
        y = conv_bn(y, out_channels, 1, 1, relu6=False, name=name + "_project")
        if stride == 1 and in_channels == out_channels:
            y = layers.Add(name=name + "_add")([x, y])
        return y

    inputs = tf_keras.Input((INPUT_SIZE, INPUT_SIZE, INPUT_CHANNELS), name="image")
    x = conv_bn(inputs, 16, 3, 2, name="stem")                     # 16x16x16
    x = dw_bn(x, 1, name="sep_dw")
    x = conv_bn(x, 32, 1, 1, name="sep_pw")                        # 16x16x32
    x = inverted_residual(x, 3, 32, 1, name="block1")             # 16x16x32, residual ADD
    x = inverted_residual(x, 3, 48, 2, name="block2")             # 8x8x48
    x = inverted_residual(x, 3, 48, 1, name="block3")             # 8x8x48, residual ADD
    x = conv_bn(x, 64, 1, 1, name="features")                      # 8x8x64 features
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(NUM_CLASSES, name="classifier")(x)      # logits
    return tf_keras.Model(inputs, outputs, name="fmnist_backbone")


def _float_inputs(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28,1] -> float32 [N,32,32,1] in 0..1, the real input range of the model."""
    resized = datasets.prepare_images(images_uint8, INPUT_SIZE, INPUT_CHANNELS)
    return resized.astype(np.float32) / 255.0


def _compile(tf_keras, model, learning_rate):
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def train_int8_model(x_train, y_train, x_val, y_val, epochs: int, qat_epochs: int,
                     batch_size: int, log=print) -> bytes:
    """Float-train, QAT-fine-tune and convert to a full-int8 flatbuffer; returns its bytes."""
    tf, tf_keras, tfmot = _import_tf()
    tf_keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    model = build_backbone(tf_keras)
    log(f"float model: {model.count_params()} parameters")
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = tf_keras.optimizers.schedules.CosineDecay(3e-3, max(steps, 1), alpha=0.05)
    _compile(tf_keras, model, schedule)
    t0 = time.time()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=2)
    log(f"float training: {time.time() - t0:.0f} s, "
        f"val accuracy {model.evaluate(x_val, y_val, verbose=0)[1]:.4f}")

    # QAT folds BatchNorm into the convolutions and learns the activation ranges.
    qat_model = tfmot.quantization.keras.quantize_model(model)
    _compile(tf_keras, qat_model, 1e-4)
    t0 = time.time()
    qat_model.fit(x_train, y_train, batch_size=batch_size, epochs=qat_epochs, shuffle=True, verbose=2)
    log(f"QAT: {time.time() - t0:.0f} s, "
        f"val accuracy {qat_model.evaluate(x_val, y_val, verbose=0)[1]:.4f}")

    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _write_readme(path: Path, facts: dict) -> None:
    text = f"""# Default model: `fmnist_backbone.tflite`

A small int8 backbone pretrained on Fashion-MNIST, made by the project itself
(`python scripts/make_default_model.py`, deterministic seed {SEED}). It is the starting
point of the README's main job: fine-tune it on device for a new task (MNIST digits).

- Architecture (MobileNetV2-style, ReLU6): 3x3 conv stride 2 (16) -> depthwise 3x3 +
  pointwise (32) -> inverted residual x3 (expansion 3; 32 with residual ADD, 48 stride 2,
  48 with residual ADD) -> pointwise (64 features) -> global average pool (MEAN) ->
  fully connected (10 logits, int8; no softmax).
- Input: int8 `[1, {INPUT_SIZE}, {INPUT_SIZE}, {INPUT_CHANNELS}]`, Fashion-MNIST 28x28 resized bilinearly to
  {INPUT_SIZE}x{INPUT_SIZE}, real range 0..1 (pixel / 255); input scale {facts['input_scale']:.9g},
  zero point {facts['input_zero_point']} (use `tflm_train.datasets.prepare_images` and
  `to_int8_input`).
- Output: int8 logits `[1, 10]`, scale {facts['output_scale']:.9g}, zero point {facts['output_zero_point']}.
- Training: float Adam ({facts['epochs']} epochs, cosine decay, batch {facts['batch_size']}) on
  {facts['train_count']} Fashion-MNIST training images, then {facts['qat_epochs']} epoch(s) of quantization-aware
  training (tensorflow-model-optimization `quantize_model`), converted by the TFLite converter
  to full int8 (`inference_input_type = inference_output_type = tf.int8`).
- Int8 test accuracy through the tflite-micro interpreter: **{facts['accuracy'] * 100:.2f}%** on
  {facts['eval_count']} Fashion-MNIST test images.
- Ops (execution order): {', '.join(facts['ops'])}.
- File size: {facts['size']} bytes.
"""
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .tflite path")
    parser.add_argument("--epochs", type=int, default=3, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=1, help="quantization-aware training epochs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-count", type=int, default=60000, help="training images used (of 60000)")
    parser.add_argument("--eval-count", type=int, default=10000,
                        help="test images evaluated through tflite-micro (of 10000)")
    args = parser.parse_args(argv)

    train_images, train_labels = datasets.fashion_mnist("train")
    test_images, test_labels = datasets.fashion_mnist("test")
    rng = np.random.default_rng(SEED)
    subset = np.sort(rng.permutation(len(train_images))[:args.train_count])
    x_train, y_train = _float_inputs(train_images[subset]), train_labels[subset]
    x_val, y_val = _float_inputs(test_images[:2000]), test_labels[:2000]

    model_bytes = train_int8_model(x_train, y_train, x_val, y_val, args.epochs, args.qat_epochs,
                                   args.batch_size)

    ops = model_op_names(model_bytes)
    unsupported = sorted(set(ops) - ALLOWED_OPS)
    if unsupported:
        raise SystemExit(f"converted model uses unsupported ops: {unsupported}")
    interpreter = micro_interpreter(model_bytes)
    input_scale, input_zero_point = input_quantization(interpreter)
    out_q = interpreter.get_output_details(0)["quantization_parameters"]

    t0 = time.time()
    accuracy = micro_accuracy(model_bytes, test_images[:args.eval_count], test_labels[:args.eval_count])
    print(f"tflite-micro int8 accuracy: {accuracy:.4f} on {args.eval_count} test images "
          f"({time.time() - t0:.0f} s)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(model_bytes)
    facts = dict(
        accuracy=accuracy, eval_count=args.eval_count, ops=ops, size=len(model_bytes),
        input_scale=input_scale, input_zero_point=input_zero_point,
        output_scale=float(out_q["scales"][0]), output_zero_point=int(out_q["zero_points"][0]),
        epochs=args.epochs, qat_epochs=args.qat_epochs, batch_size=args.batch_size,
        train_count=len(subset),
    )
    if args.out.resolve() == DEFAULT_OUT.resolve():
        _write_readme(DEFAULT_OUT.parent / "README.md", facts)
    print(f"wrote {args.out} ({len(model_bytes)} bytes)")
    print(f"ops: {' '.join(ops)}")
    print(f"input scale {input_scale:.9g} zero point {input_zero_point}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
