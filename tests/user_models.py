"""A corpus of int8 models made the way a user makes them: a Keras model (Keras 3, or
tf_keras + tfmot for quantization-aware training) through the TF 2.21 TFLite converter.

Nothing here is copied from elsewhere: every file is built from the Keras definitions
below. ``corpus()`` returns ``{name: path}``, building the models in subprocesses (Keras 3
and tf_keras cannot share a process: tfmot sets TF_USE_LEGACY_KERAS=1) and caching them
under ``<cache>/user_models/<digest of this file and the TF version>``, so a session (or a
later session on the same machine) builds them once.

    python -m tests.user_models OUTDIR [--framework keras|tfmot] [NAME ...]

Each ``Spec`` says how the user made the model: which Keras, PTQ / QAT / 16x8, int8 or
float model edges, a dynamic batch (``keras.Input(shape)``, what most users write) or
batch 1 (``keras.Input(shape, batch_size=1)``, the form the README recommends).
``extra=True`` models are larger and only built by ``benchmarks/user_models.py``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Spec:
    build: Callable  # build(keras, spec) -> a float Keras model
    input_shape: tuple  # without the batch dimension
    framework: str = "keras"  # "keras" (Keras 3) or "tfmot" (tf_keras + tfmot QAT)
    quant: str = "ptq"  # "ptq" (int8 post-training), "qat" (tfmot), "16x8" (int16 activations)
    io: str = "int8"  # model edges: "int8" or "float" (the converter adds QUANTIZE / DEQUANTIZE)
    batch: Optional[int] = None  # None: dynamic batch (Input(shape)); 1: Input(shape, batch_size=1)
    extra: bool = False  # benchmark only
    what: str = ""


# --------------------------------------------------------------------------- Keras definitions
def _input(keras, spec):
    return keras.Input(spec.input_shape, batch_size=spec.batch)


def flatten_head(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(10)(x)
    return keras.Model(inp, x)


def gap_softmax(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, activation="softmax")(x)
    return keras.Model(inp, x)


def residual_adds(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(2):
        y = L.Conv2D(16, 1, activation="relu")(x)
        y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
        y = L.Conv2D(8, 1)(y)
        x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(6)(x)
    return keras.Model(inp, x)


def separable_convs(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.SeparableConv2D(16, 3, padding="same", activation="relu")(x)
    x = L.SeparableConv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(5, activation="softmax")(x)
    return keras.Model(inp, x)


def mobilenet(keras, spec):
    return keras.applications.MobileNet(input_shape=spec.input_shape, alpha=0.25, weights=None, classes=10)


def mobilenet_v2(keras, spec):
    return keras.applications.MobileNetV2(input_shape=spec.input_shape, alpha=0.35, weights=None, classes=10)


def qat_convnet(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return keras.Model(inp, x)


def qat_flatten_softmax(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(4)(x)
    x = L.Softmax()(x)
    return keras.Model(inp, x)


def signal_conv1d(keras, spec):
    """Keras Conv1D over a (steps, channels) signal: the converter makes it a CONV_2D over 1xN."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv1D(8, 5, strides=2, padding="same", activation="relu")(x)
    x = L.Conv1D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(4)(x)
    return keras.Model(inp, x)


def signal_1xn(keras, spec):
    """A (1, N, channels) signal with Conv2D 1xK kernels."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, (1, 5), strides=(1, 2), padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D((1, 3), padding="same", activation="relu")(x)
    x = L.Conv2D(12, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(3)(x)
    return keras.Model(inp, x)


def flat_input_reshaped(keras, spec):
    """A flat feature vector reshaped to HxWx1 inside the graph."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Reshape((12, 12, 1))(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(5)(x)
    return keras.Model(inp, x)


def fc_classifier(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Dense(24, activation="relu")(x)
    x = L.Dense(16, activation="relu")(x)
    x = L.Dense(6)(x)
    return keras.Model(inp, x)


def conv1x1_classifier(keras, spec):
    """A 1x1 convolution as the classifier (as keras.applications do), flattened to logits."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Conv2D(7, 1)(x)
    x = L.Reshape((7,))(x)
    return keras.Model(inp, x)


def separate_relu(keras, spec):
    """ReLU / ReLU6 layers the converter cannot fuse into the op before them (a MEAN, the input)."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.ReLU(6.0)(x)
    x = L.Dense(4)(x)
    return keras.Model(inp, x)


def concat_branches(keras, spec):
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    a = L.Conv2D(8, 1, activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Concatenate()([a, b])
    x = L.Conv2D(12, 1, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(4)(x)
    return keras.Model(inp, x)


def upsample_unsupported(keras, spec):
    """UpSampling2D (RESIZE_NEAREST_NEIGHBOR): TFLite Micro runs it, tflm-train does not train it."""
    L = keras.layers
    x = inp = _input(keras, spec)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = L.UpSampling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(3)(x)
    return keras.Model(inp, x)


CORPUS: Dict[str, Spec] = {
    "flatten_dynamic": Spec(flatten_head, (16, 16, 3), what="Flatten + Dense, dynamic batch"),
    "flatten_batch1": Spec(flatten_head, (16, 16, 3), batch=1, what="Flatten + Dense, batch 1"),
    "gap_softmax_float_io": Spec(gap_softmax, (16, 16, 3), io="float", what="GAP + Dense softmax, float I/O"),
    "residual_adds": Spec(residual_adds, (16, 16, 3), what="two residual ADDs, GAP head"),
    "separable_convs": Spec(separable_convs, (16, 16, 3), what="SeparableConv2D, softmax"),
    "mobilenet_a025_32": Spec(mobilenet, (32, 32, 3), what="keras.applications MobileNet alpha 0.25, 32x32"),
    "mobilenet_v2_a035_32": Spec(mobilenet_v2, (32, 32, 3), io="float",
                                 what="keras.applications MobileNetV2 alpha 0.35, 32x32, float I/O"),
    "qat_convnet": Spec(qat_convnet, (16, 16, 3), framework="tfmot", quant="qat", what="tfmot QAT, GAP head"),
    "qat_flatten_softmax_float_io": Spec(qat_flatten_softmax, (16, 16, 1), framework="tfmot", quant="qat",
                                         io="float", what="tfmot QAT, Flatten + softmax, float I/O"),
    "signal_conv1d": Spec(signal_conv1d, (64, 3), what="Conv1D over a 64-step 3-axis signal"),
    "signal_1xn_batch1": Spec(signal_1xn, (1, 64, 2), batch=1, what="Conv2D 1xK over a 1x64 signal"),
    "flat_input_reshaped": Spec(flat_input_reshaped, (144,), what="flat input reshaped to 12x12x1"),
    "fc_classifier": Spec(fc_classifier, (20,), what="Dense-only classifier"),
    "conv1x1_classifier_batch1": Spec(conv1x1_classifier, (16, 16, 3), batch=1, what="1x1-conv classifier"),
    "separate_relu": Spec(separate_relu, (16, 16, 3), what="standalone ReLU / ReLU6 layers"),
    "concat_branches": Spec(concat_branches, (16, 16, 3), what="two branches joined by Concatenate"),
    "int16x8": Spec(gap_softmax, (16, 16, 3), quant="16x8", what="16x8 quantization (int16 activations)"),
    "upsample": Spec(upsample_unsupported, (16, 16, 3), what="UpSampling2D (RESIZE_NEAREST_NEIGHBOR)"),
    # benchmark only: the MobileNetV2 at 96x96
    "mobilenet_v2_a035_96": Spec(mobilenet_v2, (96, 96, 3), extra=True,
                                 what="keras.applications MobileNetV2 alpha 0.35, 96x96"),
}


# --------------------------------------------------------------------------- conversion
def _calibration(shape, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n,) + tuple(shape)).astype(np.float32)


def _calibrate_batch_norm(keras, model, spec: Spec) -> None:
    """Set every BatchNormalization's moving statistics to those of one calibration batch, as
    training would: with the initial (0, 1) statistics a deep untrained network's activations
    shrink layer by layer until the logits are all but constant (a logit scale of 1e-8, on
    which TFLite Micro's int8 SOFTMAX aborts at prepare)."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return
    momentum = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(_calibration(spec.input_shape, 32, seed=4), training=True)
    for layer, m in zip(layers, momentum):
        layer.momentum = m


def convert(tf, keras, tfmot, name: str, spec: Spec) -> bytes:
    """Build ``spec``'s Keras model and convert it as a user would (from_keras_model)."""
    keras.utils.set_random_seed(sum(map(ord, name)))
    model = spec.build(keras, spec)
    _calibrate_batch_norm(keras, model, spec)
    if spec.quant == "qat":
        # one short epoch on random data, so the quantization ranges are trained ones
        model = tfmot.quantization.keras.quantize_model(model)
        x = _calibration(spec.input_shape, 64, seed=1)
        y = np.random.default_rng(2).integers(0, model.output_shape[-1], size=64)
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False))
        model.fit(x, y, batch_size=16 if spec.batch is None else spec.batch, epochs=1, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for sample in _calibration(spec.input_shape, 16, seed=3):
            yield [sample[None]]

    converter.representative_dataset = representative
    if spec.quant == "16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io_type = tf.int16
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8
    if spec.io != "float":
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter.convert()


def write_models(out_dir: str, framework: str, names: Sequence[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if framework == "tfmot":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tfmot needs Keras 2 (tf_keras); this process only
    import tensorflow as tf

    tfmot = None
    if framework == "tfmot":
        import tensorflow_model_optimization as tfmot
        import tf_keras as keras
    else:
        import keras
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        spec = CORPUS[name]
        if spec.framework != framework:
            raise SystemExit(f"{name} is a {spec.framework} model, not {framework}")
        data = convert(tf, keras, tfmot, name, spec)
        with open(os.path.join(out_dir, name + ".tflite"), "wb") as f:
            f.write(data)


# --------------------------------------------------------------------------- cached corpus
def _digest() -> str:
    import importlib.metadata as md

    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    for dist in ("tensorflow", "keras", "tf_keras", "tensorflow-model-optimization"):
        try:
            h.update(f"{dist}={md.version(dist)}".encode())
        except md.PackageNotFoundError:
            h.update(f"{dist}=none".encode())
    return h.hexdigest()[:16]


def cache_dir() -> str:
    from tflm_train.micro.mcu import cache_dir as root

    return os.path.join(root(), "user_models", _digest())


def corpus(extra: bool = False) -> Dict[str, str]:
    """{name: path} of the corpus (with ``extra``: the benchmark-only models too), built on
    first use in two parallel subprocesses (Keras 3 and tf_keras + tfmot) and cached."""
    names = [n for n, s in CORPUS.items() if extra or not s.extra]
    out = cache_dir()
    missing = [n for n in names if not os.path.exists(os.path.join(out, n + ".tflite"))]
    if missing:
        os.makedirs(out, exist_ok=True)
        work = tempfile.mkdtemp(prefix="building_", dir=out)
        try:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            procs = []
            for framework in ("keras", "tfmot"):
                group = [n for n in missing if CORPUS[n].framework == framework]
                if group:
                    cmd = [sys.executable, "-m", "tests.user_models", "--framework", framework, work] + group
                    procs.append((framework, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                                              stderr=subprocess.PIPE, text=True)))
            for framework, p in procs:
                _, err = p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"building the {framework} corpus models failed (exit {p.returncode}):\n"
                                       f"{err[-3000:]}")
            for n in missing:  # rename: a concurrent or interrupted build never leaves a partial file
                os.replace(os.path.join(work, n + ".tflite"), os.path.join(out, n + ".tflite"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {n: os.path.join(out, n + ".tflite") for n in names}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--framework", choices=("keras", "tfmot"))
    p.add_argument("names", nargs="*", help="models to build (default: all of the framework)")
    args = p.parse_args(argv)
    if args.framework is None:  # everything, through the cache
        os.makedirs(args.out_dir, exist_ok=True)
        for name, path in corpus(extra=True).items():
            shutil.copy(path, os.path.join(args.out_dir, name + ".tflite"))
        return 0
    names = args.names or [n for n, s in CORPUS.items() if s.framework == args.framework]
    write_models(args.out_dir, args.framework, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
