"""Writes .tflite files the readers must reject: a float model and an int8 model with an unsupported op.

Run as ``python -m tests.make_edge_models OUTDIR`` (a subprocess, so TensorFlow's
converter state stays out of the test process).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class Net(tf.Module):
    def __init__(self, unsupported: bool):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(size=(3, 3, 3, 4)).astype(np.float32) * 0.3)
        self.unsupported = unsupported

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def __call__(self, x):
        y = tf.nn.conv2d(x, self.w, 1, "SAME")
        return tf.math.tanh(y) if self.unsupported else tf.nn.relu(y)


def convert(net, quantize: bool) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)
    if quantize:
        def rep():
            rng = np.random.default_rng(1)
            for _ in range(8):
                yield [rng.uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "float_model.tflite"), "wb") as f:
        f.write(convert(Net(False), quantize=False))
    with open(os.path.join(out, "int8_tanh.tflite"), "wb") as f:
        f.write(convert(Net(True), quantize=True))
