"""The TFLite + Flex peer of `host_speed.py`: one SGD step of the same network and trainable set,
as a `.tflite` training signature run by TFLite's interpreter with the Flex delegate.

Runs in an environment whose TFLite interpreter has the Flex delegate (tensorflow-cpu 2.16.2 with
numpy<2; TF 2.21's has none), never in CI: `host_speed.py --flex-python PY` (or
`--make-flex-venv DIR`) starts it as a subprocess. It imports no tflm_train code: `host_speed.py`
writes the network as a plain description (`--net NET.npz`, see `host_speed.float_network`): the
ops in execution order with their int8 output ranges as clamps, dequantized float32 weights, the
scheme's trained-element masks and the sample. This script builds a `tf.Module` from it whose
`train` signature is what a TFLite user writes for on-device training: forward, softmax
cross-entropy, `tf.GradientTape`, and an SGD update of each trained variable masked to the
scheme's channels. It converts that with `SELECT_TF_OPS` (the gradient ops are Flex ops), then
times the signature runner, one thread, median process CPU time, like `host_speed.timed`.
Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import numpy as np  # noqa: E402

def activation(tf, name: str, t):
    if name == "NONE":
        return t
    if name == "RELU":
        return tf.nn.relu(t)
    if name == "RELU6":
        return tf.nn.relu6(t)
    raise ValueError(f"flex peer: activation {name!r} is not supported")


def build_module(tf, net: dict, lr: float):
    """A tf.Module whose `train(x, y)` is one masked SGD step of the described network."""
    ops = json.loads(str(net["ops"]))
    trained = json.loads(str(net["trained"]))  # tensor name -> has a mask (weights) or not (bias / head)

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.consts, self.vars, self.masks = {}, {}, {}
            for key in net.files:
                if not key.startswith("t:"):
                    continue
                name = key[2:]
                value = net[key]
                if name in trained:
                    self.vars[name] = tf.Variable(value, name=name.replace("/", "_"))
                    if trained[name]:
                        self.masks[name] = tf.constant(net["mask:" + name])
                else:
                    self.consts[name] = tf.constant(value)
            self.order = sorted(self.vars)

        def tensor(self, env, name):
            if name in env:
                return env[name]
            return self.vars[name] if name in self.vars else self.consts[name]

        def forward(self, x):
            env = {str(net["input"]): x}
            for op in ops:
                t, a = op["type"], op["attrs"]
                ins = [self.tensor(env, n) if n else None for n in op["inputs"]]
                if t == "CONV_2D":
                    y = tf.nn.conv2d(ins[0], ins[1], strides=[1, a["stride_h"], a["stride_w"], 1],
                                     padding=a["padding"], dilations=[1, a["dilation_h"], a["dilation_w"], 1])
                    y = activation(tf, a["activation"], y + ins[2] if ins[2] is not None else y)
                elif t == "DEPTHWISE_CONV_2D":
                    y = tf.nn.depthwise_conv2d(ins[0], ins[1], strides=[1, a["stride_h"], a["stride_w"], 1],
                                               padding=a["padding"], dilations=[a["dilation_h"], a["dilation_w"]])
                    y = activation(tf, a["activation"], y + ins[2] if ins[2] is not None else y)
                elif t == "FULLY_CONNECTED":
                    y = tf.matmul(tf.reshape(ins[0], [-1, ins[1].shape[0]]), ins[1])
                    y = activation(tf, a["activation"], y + ins[2] if ins[2] is not None else y)
                elif t == "ADD":
                    y = activation(tf, a["activation"], ins[0] + ins[1])
                elif t == "PAD":
                    y = tf.pad(ins[0], ins[1])
                elif t == "MEAN":
                    y = tf.reduce_mean(ins[0], axis=ins[1], keepdims=bool(a["keep_dims"]))
                elif t == "RESHAPE":
                    y = tf.reshape(ins[0], ins[1])
                else:
                    raise ValueError(f"flex peer: op {t} ({op['name']}) is not supported")
                if op.get("clamp"):
                    y = tf.clip_by_value(y, op["clamp"][0], op["clamp"][1])
                env[op["outputs"][0]] = y
            return env[str(net["output"])]

        @tf.function(input_signature=[tf.TensorSpec(net["x"].shape, tf.float32),
                                      tf.TensorSpec([1], tf.int32)])
        def train(self, x, y):
            variables = [self.vars[n] for n in self.order]
            with tf.GradientTape() as tape:
                logits = self.forward(x)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            grads = tape.gradient(loss, variables)
            for name, v, g in zip(self.order, variables, grads):
                if name in self.masks:
                    g = g * self.masks[name]
                v.assign_sub(lr * g)
            return {"loss": loss}

    return Net()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", required=True, help="the network description written by host_speed.py")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    net = np.load(args.net, allow_pickle=False)
    module = build_module(tf, net, args.lr)
    with tempfile.TemporaryDirectory() as work:
        tf.saved_model.save(module, work, signatures={"train": module.train.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(work, signature_keys=["train"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.experimental_enable_resource_variables = True
        model = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=model, num_threads=1)
    runner = interpreter.get_signature_runner("train")
    x, y = net["x"].astype(np.float32), net["y"].astype(np.int32)
    losses = [float(runner(x=x, y=y)["loss"])]
    for _ in range(args.warmup):
        runner(x=x, y=y)
    times = []
    for _ in range(args.repeat):
        t0 = time.process_time()
        runner(x=x, y=y)
        times.append(time.process_time() - t0)
    losses.append(float(runner(x=x, y=y)["loss"]))
    print(json.dumps(dict(flex_train_step_s=statistics.median(times), flex_tflite_bytes=len(model),
                          flex_loss_first=losses[0], flex_loss_last=losses[-1], tensorflow=tf.__version__,
                          steps_between=args.warmup + args.repeat + 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
