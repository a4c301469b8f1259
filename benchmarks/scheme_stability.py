#!/usr/bin/env python
"""Why some schemes diverge in benchmarks/scheme_search.py: loss curves of one scheme under the
benchmark's fine-tuning, with the new head as the package initializes it or scaled down, at
several learning rates.

    nice python benchmarks/scheme_stability.py            # the committed run (~15 min on a busy 2-core machine)

Every run is the benchmark's (``scheme_search.Trainer``: the masked training step, the same
initial weights, images, order and stochastic rounding per seed, 100 steps of batch 32, QAS(SGD)
without momentum, 48x48, scored on the benchmark's test images); the one change some runs make
is ``head_scale``: the new float head's initial kernel is the former rule's (uniform in
+-1/sqrt(features) from ``numpy.random.default_rng(0)``, ``former_head_init``) multiplied by it
(0: a zero head, whose first step sends no gradient into the backbone: the package's
``head_init`` since this study). Per run: the loss of the first batch (the initial head on the
pretrained features), the mean loss of each tenth of the run, the largest batch loss, and the
test accuracy. Also, per model and task, the new head's input features (real values): their
root mean square and the largest eigenvalue of their second moment, which bounds the head's
stable SGD step.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import scheme_search as bench  # noqa: E402

RESULT = HERE / "results" / "scheme_stability.json"
#: (scheme, lr, seed, head_scale): the published 99kb MCUNet-5FPS scheme that reached 19.9-41 %
#: on MNIST in benchmarks/results/scheme_search.json, and the classifier alone
DEFAULT_RUNS = [("published:99kb", 0.01, s, 1.0) for s in (1, 2)] + \
               [("published:99kb", 0.01, s, 0.0) for s in (1, 2)] + \
               [("published:99kb", 0.003, s, 1.0) for s in (1, 2)] + \
               [("classifier", 0.01, 1, 1.0), ("classifier", 0.003, 1, 1.0), ("classifier", 0.01, 1, 0.0)]


def scheme_named(name: str, model: str):
    from tflm_train.training import SparseScheme

    if name == "classifier":
        return SparseScheme(1, {})
    if name.startswith("published:"):
        return SparseScheme.from_json(str(bench.SHARED / "schemes" / f"{model}.json"), name.split(":", 1)[1])
    raise SystemExit(f"unknown scheme {name!r}: classifier or published:KEY")


def head_features(masked, x: np.ndarray) -> dict:
    """The new head's real input features on ``x``: scale and the largest eigenvalue of E[f f^T]."""
    import keras

    from tflm_train.keras.layers import FloatHead

    head = next(layer for layer in masked.model.layers if isinstance(layer, FloatHead))
    below = keras.Model(masked.model.inputs, head.input)
    f = np.asarray(head.features(below.predict(x.astype(np.float32), batch_size=256, verbose=0)), np.float64)
    lam = float(np.linalg.eigvalsh(f.T @ f / len(f))[-1])
    return {"images": len(f), "features": f.shape[1], "rms": float(np.sqrt(np.mean(f ** 2))),
            "mean_squared_norm": float(np.mean(np.sum(f ** 2, axis=1))), "lambda_max_second_moment": lam}


def former_head_init(c_in: int, num_classes: int) -> np.ndarray:
    """The new head's initial kernel ``[c_in, num_classes]`` before ``head_init`` became zero:
    uniform in +-1/sqrt(c_in) (seed 0), kept here only for this comparison."""
    a = 1.0 / np.sqrt(c_in)
    return np.random.default_rng(0).uniform(-a, a, size=(num_classes, c_in)).astype(np.float32).T


def run_one(masked, scheme, x, y, xt, yt, steps, batch, seed, head_scale) -> dict:
    """``scheme_search.Trainer.run`` with the loss of every step recorded and the head's kernel
    ``head_scale`` times the former init."""
    import keras
    import tensorflow as tf

    from tflm_train.keras.layers import FloatHead

    masked.model.set_weights(masked.initial)
    for v, value in zip(masked._state, masked._initial_state):
        v.assign(value)
    masked._optimizer._seed_generator.state.assign(keras.random.SeedGenerator(seed).state.numpy())
    masked._set_masks(scheme)
    head = next(layer for layer in masked.model.layers if isinstance(layer, FloatHead))
    head.kernel.assign(former_head_init(*head.kernel.shape) * head_scale)
    order = np.random.default_rng(seed).permutation(len(y))
    idx = np.resize(order, steps * batch)
    xs, ys = x[idx], y[idx]
    losses = [float(masked._step(tf.constant(xs[i:i + batch], tf.float32), tf.constant(ys[i:i + batch])))
              for i in range(0, steps * batch, batch)]
    ev = masked.evaluate(xt, yt)
    tenths = np.array_split(np.array(losses), 10)
    return {"accuracy": ev["accuracy"], "test_loss": ev["loss"], "first_batch_loss": losses[0],
            "max_batch_loss": max(losses), "mean_loss_per_tenth": [float(np.mean(t)) for t in tenths]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mcunet-5fps")
    p.add_argument("--task", default="mnist", choices=sorted(bench.TASK_CLASSES))
    p.add_argument("--feature-models", nargs="+", default=["mcunet-5fps", "mbv2-w0.35"])
    p.add_argument("--feature-tasks", nargs="+", default=["fmnist", "mnist", "digits"])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=str(RESULT))
    args = p.parse_args(argv)

    from tflm_train.io.npz_reader import load_npz
    from tflm_train.keras.contribution import MaskedTrainer
    from tflm_train.keras.layers import FloatHead

    bench.single_threaded()
    t0 = time.time()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()
    result = {"command": "python benchmarks/scheme_stability.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit, "settings": vars(args), "features": [], "runs": []}

    def save():
        result["total_seconds"] = time.time() - t0
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    for model in args.feature_models:
        graph = load_npz(str(bench.SHARED / "models" / f"{model}.npz"), input_size=48)
        masked = MaskedTrainer(graph, 10, head="float", lr=0.01, seed=0)
        for task in args.feature_tasks:
            x, y, _, _ = bench.task_data(task, graph, 3200, 2000, 0)
            row = {"model": model, "task": task, **head_features(masked, x[:1024])}
            head = next(layer for layer in masked.model.layers if isinstance(layer, FloatHead))
            head.kernel.assign(former_head_init(*head.kernel.shape))  # the former head's first loss
            ev = masked.evaluate(x[:1024], y[:1024])
            row["initial_loss"], row["chance_loss"] = ev["loss"], float(np.log(10))
            masked.model.set_weights(masked.initial)
            result["features"].append(row)
            print(json.dumps(row), flush=True)
            save()
    graph = load_npz(str(bench.SHARED / "models" / f"{args.model}.npz"), input_size=48)
    x, y, xt, yt = bench.task_data(args.task, graph, 3200, 2000, 0)
    trainers = {}
    for name, lr, seed, head_scale in DEFAULT_RUNS:
        if lr not in trainers:  # the learning rate is part of the traced step
            trainers[lr] = MaskedTrainer(graph, 10, head="float", lr=lr, seed=0)
        t = time.time()
        row = {"model": args.model, "task": args.task, "scheme": name, "lr": lr, "seed": seed, "head_scale": head_scale,
               **run_one(trainers[lr], scheme_named(name, args.model), x, y, xt, yt, args.steps, args.batch, seed,
                         head_scale), "seconds": time.time() - t}
        result["runs"].append(row)
        print(json.dumps(row), flush=True)
        save()
    save()


if __name__ == "__main__":
    main()
