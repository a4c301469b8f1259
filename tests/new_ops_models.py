"""Keras 3 classifiers whose int8 conversion contains CONCATENATION and standalone RELU / RELU6.

Run as ``python -m tests.new_ops_models OUTDIR`` (a subprocess: the converter's TensorFlow
state stays out of the test process). Models are made the way users make them: a float
Keras model, the TF converter with full-integer post-training quantization and a
representative dataset. ``EXPECTED_OPS`` lists what each converted model must contain
(the tests check it, so a converter that stops emitting an op is noticed).
"""
from __future__ import annotations

import os
import sys
from typing import Dict, List

import numpy as np

#: name -> (input shape, ops the converted model must contain)
EXPECTED_OPS: Dict[str, List[str]] = {
    # two conv branches joined on the channel axis, a separate ReLU after the join
    "concat_branches": ["CONCATENATION", "RELU", "CONV_2D", "MEAN", "FULLY_CONNECTED"],
    # separate ReLU / ReLU6 layers where the converter cannot fuse them
    "relu_layers": ["RELU", "RELU6", "CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED"],
    # three inputs, height and width axes, negative axis, ReLU6 after a join
    "concat_axes": ["CONCATENATION", "RELU6", "CONV_2D", "FULLY_CONNECTED"],
    # LeakyReLU layers (the converter never fuses them)
    "leaky_relu": ["LEAKY_RELU", "CONV_2D", "MEAN", "FULLY_CONNECTED"],
}
INPUT_SHAPES = {"concat_branches": (8, 8, 3), "relu_layers": (10, 10, 2), "concat_axes": (6, 6, 2), "leaky_relu": (9, 9, 3)}


def _keras_models(keras):
    L = keras.layers
    models = {}
    x = inp = keras.Input(INPUT_SHAPES["concat_branches"], batch_size=1)
    a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(6, 1, padding="same")(x)
    y = L.ReLU()(L.Concatenate()([a, b]))
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    models["concat_branches"] = keras.Model(inp, L.Dense(5)(y))

    x = inp = keras.Input(INPUT_SHAPES["relu_layers"], batch_size=1)
    y = L.ReLU()(x)
    y = L.Conv2D(6, 3)(y)
    y = L.MaxPooling2D()(y)
    y = L.ReLU(6.0)(L.Conv2D(8, 3, padding="same")(y))
    y = L.GlobalAveragePooling2D()(y)
    y = L.ReLU(6.0)(y)
    y = L.ReLU()(L.Dense(12)(y))
    models["relu_layers"] = keras.Model(inp, L.Dense(4)(y))

    x = inp = keras.Input(INPUT_SHAPES["concat_axes"], batch_size=1)
    a = L.Conv2D(3, 3, padding="same")(x)
    b = L.Conv2D(3, 1)(x)
    y = L.Concatenate(axis=-1)([a, b, a])
    y = L.ReLU(6.0)(y)
    y = L.Concatenate(axis=1)([y, L.Conv2D(9, 3, padding="same")(y)])
    y = L.Concatenate(axis=2)([y, y])
    y = L.Conv2D(4, 3, strides=2)(y)
    y = L.Flatten()(y)
    models["concat_axes"] = keras.Model(inp, L.Dense(3)(y))

    x = inp = keras.Input(INPUT_SHAPES["leaky_relu"], batch_size=1)
    y = L.LeakyReLU(negative_slope=0.2)(L.Conv2D(6, 3, strides=2, padding="same")(x))
    y = L.LeakyReLU()(L.Conv2D(8, 3, padding="same")(y))
    y = L.GlobalAveragePooling2D()(y)
    models["leaky_relu"] = keras.Model(inp, L.Dense(4)(y))
    return models


def _convert(tf, model, shape, seed: int) -> bytes:
    def representative():
        rng = np.random.default_rng(seed)
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1,) + tuple(shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def write_models(out_dir: str) -> List[str]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    paths = []
    for k, (name, model) in enumerate(_keras_models(keras).items()):
        path = os.path.join(out_dir, f"{name}.tflite")
        with open(path, "wb") as f:
            f.write(_convert(tf, model, INPUT_SHAPES[name], seed=k))
        paths.append(path)
    return paths


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(sys.argv[1], exist_ok=True)
    for p in write_models(sys.argv[1]):
        print(p)
