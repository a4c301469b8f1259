"""Default device learning rate per head mode, measured on a small digits CNN.

The question (issue 8): which SGD rate should ``tflm_train.export`` / ``tflm-train export``
use when the user gives none? A new head (``head="float"`` / ``"int8"``) starts from a
random classifier and wants a large step; a kept head (``head="keep"``: the model's own,
already trained classifier continues training) is destroyed by the same step.

Setting: scikit-learn's digits (1797 8x8 images), a small Keras 3 CNN (conv 8 -> conv 16
stride 2 -> global average pool -> dense 10) trained in float for a few epochs on one split,
converted to a full-integer int8 .tflite by the TFLite converter (post-training
quantization, int8 input/output, batch 1), loaded with ``tflm_train.load``. Then, for each
head mode and each learning rate, one epoch of on-device training (the NumPy reference
trainer: the C++ runtime's arithmetic, batch 1, QAS SGD, stochastic rounding) on a second
split under the ``full`` scheme, scored on a third split by the training graph's forward
(int8 backbone + head, what the device computes). Two training orders (seeds) per rate.

    python benchmarks/learning_rate.py [--out benchmarks/results/learning_rate.json]

Writes the accuracy of every (head, lr, seed) run, the model's own accuracy before, and the
best rate per head mode (mean over seeds).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

LRS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
HEADS = ("keep", "float", "int8")
SEEDS = (0, 1)
PRETRAIN_EPOCHS = 10
SPLITS = (500, 700)  # pretrain, fine-tune; the rest (597) is the test split


def digits_splits(seed: int = 0):
    """(pretrain, fine-tune, test) splits of the digits as uint8 [N, 8, 8, 1] images and labels."""
    from tflm_train.datasets import sklearn_digits

    x, y = sklearn_digits()
    order = np.random.default_rng(seed).permutation(len(x))
    a, b = SPLITS
    parts = order[:a], order[a:a + b], order[a + b:]
    return [(x[p], y[p]) for p in parts]


def make_int8_model(x_pre, y_pre, epochs: int) -> bytes:
    """The float CNN (inputs: pixels / 255) trained for ``epochs`` on the pretrain split,
    PTQ-converted to int8."""
    import keras
    import tensorflow as tf

    x_pre = x_pre.astype(np.float32) / 255.0
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    out = L.Dense(10)(h)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_pre, y_pre, batch_size=32, epochs=epochs, verbose=0)

    forward = tf.function(lambda t: model(t, training=False))
    concrete = forward.get_concrete_function(tf.TensorSpec((1, 8, 8, 1), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x_pre[i:i + 1]] for i in range(100))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def quantize_images(graph, x):
    from tflm_train.datasets import to_int8_input

    t = graph.tensors[graph.inputs[0]]
    return to_int8_input(x, t.scalar_scale(), t.scalar_zero_point())


def run(graph, head: str, lr: float, seed: int, train, test) -> dict:
    from tflm_train.training import SparseScheme, TrainState, build_train_graph, evaluate, train_step

    tg = build_train_graph(graph, SparseScheme.full(graph), num_classes=10, head=head, lr=lr, seed=seed + 1)
    state = TrainState.from_train_graph(tg)
    x, y = train
    order = np.random.default_rng(seed).permutation(len(x))
    losses = [train_step(tg, state, x[i], int(y[i])) for i in order]
    finite = bool(np.all(np.isfinite(losses)))
    return dict(head=head, lr=lr, seed=seed, accuracy=evaluate(tg, state, *test) if finite else 0.0,
                mean_loss_last_100=float(np.mean(losses[-100:])), finite=finite)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(HERE, "results", "learning_rate.json"))
    args = p.parse_args(argv)

    import tflm_train
    from tflm_train.training import SparseScheme, TrainState, build_train_graph, evaluate

    t0 = time.time()
    (x_pre, y_pre), (x_ft, y_ft), (x_te, y_te) = digits_splits()
    data = make_int8_model(x_pre, y_pre, PRETRAIN_EPOCHS)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits_cnn.tflite")
        with open(path, "wb") as f:
            f.write(data)
        graph = tflm_train.load(path)
    train = (quantize_images(graph, x_ft), y_ft)
    test = (quantize_images(graph, x_te), y_te)
    tg = build_train_graph(graph, SparseScheme.full(graph), num_classes=10, head="keep")
    before = evaluate(tg, TrainState.from_train_graph(tg), *test)
    print(f"digits CNN, int8: {len(graph.ops)} ops, own classifier accuracy {before:.3f} on {len(y_te)} test images",
          flush=True)

    runs = []
    for head in HEADS:
        for lr in LRS:
            for seed in SEEDS:
                r = run(graph, head, lr, seed, train, test)
                runs.append(r)
                print(f"  head {head:<5} lr {lr:<7g} seed {seed}: accuracy {r['accuracy']:.3f}", flush=True)
    best = {}
    for head in HEADS:
        means = {lr: float(np.mean([r["accuracy"] for r in runs if r["head"] == head and r["lr"] == lr]))
                 for lr in LRS}
        top = max(means, key=lambda lr: (means[lr], -lr))
        best[head] = dict(lr=top, mean_accuracy=means[top], mean_accuracy_by_lr={str(k): v for k, v in means.items()})
        print(f"best for head {head}: lr {top:g} ({means[top]:.3f})", flush=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(HERE)).stdout.strip()
    except OSError:
        commit = ""
    result = dict(
        command="python benchmarks/learning_rate.py", commit=commit, host=platform.platform(),
        machine=f"{os.cpu_count()} CPU cores", seconds=round(time.time() - t0, 1),
        setting=dict(data="sklearn digits 8x8x1", splits=dict(pretrain=len(y_pre), finetune=len(y_ft),
                                                                  test=len(y_te)),
                     model="Conv2D(8,3,relu) Conv2D(16,3,s2,relu) GAP Dense(10); Keras 3 float, Adam 0.01, "
                           f"{PRETRAIN_EPOCHS} epochs; TFLite converter PTQ int8 I/O",
                     scheme="full", epochs=1, batch=1, trainer="tflm_train.training.train_step (device arithmetic)",
                     lrs=list(LRS), seeds=list(SEEDS)),
        own_classifier_accuracy=before, best=best, runs=runs)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
