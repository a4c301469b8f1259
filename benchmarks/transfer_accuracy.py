#!/usr/bin/env python
"""Transfer accuracy: fine-tune the ImageNet-pretrained int8 MCUNet-5FPS on Fashion-MNIST.

    python benchmarks/transfer_accuracy.py                 # the committed run (~15 min, 2 cores)
    python benchmarks/transfer_accuracy.py --quick         # a smoke run (~3 min)

Every run starts from the same pretrained graph, gets a new 10-class head at zero
(``head_init``), sees the same images in the same order (pre-shuffled, ``shuffle=False``) for the same
number of steps with the same batch size, and plain SGD with the same learning rate. The
runs differ only in what they train (the update set) and how:

- ``fp32``: the float version of the same network (``from_graph(..., quantized=False)``:
  real weights, no rounding, the int8 graph's clamps as activations), float head, SGD;
- ``int8+QAS``: the int8-emulating network (bit-exact with the int8 reference forward),
  int8 head, ``QAS(SGD)`` with the device's rounding (weights stochastically, biases to
  nearest);
- ``int8``: the same int8 network, head and rounding without the QAS scaling
  (``QAS(SGD, scale_gradients=False)``): the gradient w.r.t. an int8 value is ``s_w * G_w``,
  so its steps are ``s_w^2`` times the float ones.

Update sets: the last layer (new head only), bias-only (every bias + head), the published
sparse scheme ``--scheme`` of ``../shared/schemes/mcunet-5fps.json`` and, with ``--full``,
everything. Accuracy is top-1 on ``--test`` Fashion-MNIST test images; an int8 model's
accuracy is that of its exported int8 graph (the Keras forward equals the reference's bit
for bit; a few test images are also checked through ``to_graph`` + ``reference.invoke``).

The learning rate is chosen before the runs, on a validation split of the *training* images
(never the test set): the fp32 sparse-scheme run for each candidate ``--lr-candidates``; the
best is used for every run (``--lr`` skips the selection).

Single runs scatter by about a point (head init, rounding stream): the fp32 / int8+QAS pair
on the sparse scheme is repeated for ``--pair-seeds`` and reported as mean ± std.

Reference trainer check: the sparse scheme, int8 head, QAS, batch 1 (as on the device) for
``--ref-steps`` steps, with Keras (``model.fit(batch_size=1)``, Keras RNG for the stochastic
rounding) and with the NumPy reference trainer (``tflm_train.training.train_step``: the
device's xorshift32 stream), from the same head and the same images, for each of
``--ref-seeds``; both evaluated on the same test images. Learning rate ``--lr-batch1``
(0.001: fixed in development on the validation split, 0.001 beat 0.003 at 600 steps).

Writes ``benchmarks/results/transfer_accuracy.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

SHARED = Path(os.environ.get("TFLM_TRAIN_SHARED", REPO.parent / "shared"))
MODEL = SHARED / "models" / "mcunet-5fps.npz"
SCHEMES = SHARED / "schemes" / "mcunet-5fps.json"
RESULT = REPO / "benchmarks" / "results" / "transfer_accuracy.json"
#: the seed models take pixel p as round((p / 127.5 - 1) / (1 / 127.5)) (../shared/models/README.md)
INPUT_SCALE, INPUT_ZERO_POINT, INPUT_RANGE = 1.0 / 127.5, 0, (-1.0, 1.0)


# --------------------------------------------------------------------------- data
def load_data(resolution: int, n_train: int, n_val: int, n_test: int, seed: int):
    """Shuffled Fashion-MNIST subsets as int8 model inputs: (train, val, test) pairs."""
    from tflm_train import datasets

    images, labels = datasets.fashion_mnist("train")
    order = np.random.default_rng(seed).permutation(len(labels))
    if n_train + n_val > len(order):
        raise SystemExit(f"--train + --val = {n_train + n_val} exceeds the 60000 training images")
    test_images, test_labels = datasets.fashion_mnist("test")
    test_order = np.random.default_rng(seed + 1).permutation(len(test_labels))[:n_test]

    def prep(x):
        x = datasets.prepare_images(x, resolution, 3)
        return datasets.to_int8_input(x, INPUT_SCALE, INPUT_ZERO_POINT, input_range=INPUT_RANGE)

    tr, va = order[:n_train], order[n_train:n_train + n_val]
    return ((prep(images[tr]), labels[tr]), (prep(images[va]), labels[va]),
            (prep(test_images[test_order]), test_labels[test_order]))


# --------------------------------------------------------------------------- runs
def scheme_for(update_set: str, graph, scheme_key: str):
    from tflm_train.training import SparseScheme

    if update_set == "last-layer":
        return SparseScheme.classifier_only(graph)
    if update_set == "bias-only":
        return SparseScheme.bias_only(graph)
    if update_set == "full":
        return SparseScheme.full(graph)
    return SparseScheme.from_json(str(SCHEMES), scheme_key)


def accuracy(model, x, y, batch_size=256) -> float:
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def make_model(graph, mode: str, seed: int, grad_dtype: str = "float32"):
    from tflm_train.keras import from_graph

    if mode == "fp32":
        return from_graph(graph, 10, head="float", quantized=False, grad_dtype=grad_dtype)
    return from_graph(graph, 10, head="int8", grad_dtype=grad_dtype)


def make_optimizer(mode: str, lr: float, seed: int):
    """fp32: SGD; int8+QAS: QAS(SGD) with the device's rounding (stochastic weights, nearest
    biases); int8: the same int8 update rule without the QAS scaling."""
    import keras
    from tflm_train.keras import QAS

    sgd = keras.optimizers.SGD(lr)
    if mode == "fp32":
        return sgd
    return QAS(sgd, scale_gradients=(mode == "int8+QAS"), seed=seed)


def train(graph, mode, update_set, scheme_key, lr, batch, train_xy, seed, grad_dtype="float32"):
    """One fine-tuning run; returns (model, seconds, final loss)."""
    import keras
    from tflm_train.keras import SparseUpdate

    keras.utils.set_random_seed(seed)
    model = make_model(graph, mode, seed, grad_dtype)
    model.compile(optimizer=make_optimizer(mode, lr, seed),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    x, y = train_xy
    t = time.time()
    hist = model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0,
                     callbacks=[SparseUpdate(scheme_for(update_set, graph, scheme_key))])
    return model, time.time() - t, float(hist.history["loss"][-1])


def check_export(model, graph_in, x, y, n: int) -> dict:
    """Predictions of the exported int8 graph (to_graph + reference.invoke) on ``n`` test
    images agree with the Keras model's."""
    from tflm_train import reference
    from tflm_train.keras import to_graph

    g = to_graph(model)
    keras_pred = np.argmax(model.predict(x[:n], verbose=0), axis=1)
    ref_pred = np.array([int(np.argmax(reference.invoke(g, x[i:i + 1])[0][0])) for i in range(n)])
    return {"images": n, "agree": int(np.sum(ref_pred == keras_pred)), "ref_correct": int(np.sum(ref_pred == y[:n]))}


def select_lr(graph, candidates, scheme_key, batch, train_xy, val_xy, seed, log):
    """The candidate with the best validation accuracy of the fp32 sparse-scheme run."""
    scores = {}
    for lr in candidates:
        model, secs, loss = train(graph, "fp32", "sparse", scheme_key, lr, batch, train_xy, seed)
        scores[lr] = accuracy(model, *val_xy)
        log(f"  lr {lr:g}: val acc {100 * scores[lr]:.2f} (loss {loss:.3f}, {secs:.0f}s)")
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, {str(k): v for k, v in scores.items()}


def reference_comparison(graph, scheme_key, lr, steps, train_xy, test_xy, seeds, log) -> dict:
    """Keras vs the NumPy reference trainer: batch 1, int8 head, QAS SGD, same images, per seed
    (the seed sets the stochastic rounding streams of both; the head starts at zero)."""
    import keras
    from tflm_train.keras import QAS, SparseUpdate, from_graph
    from tflm_train.training import TrainState, apply_to_graph, build_train_graph, train_step

    scheme = scheme_for("sparse", graph, scheme_key)
    x, y = train_xy[0][:steps], train_xy[1][:steps]
    per_seed = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        model = from_graph(graph, 10, head="int8", seed=seed)
        model.compile(optimizer=QAS(keras.optimizers.SGD(lr), seed=seed),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        t = time.time()
        model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=[SparseUpdate(scheme)])
        keras_secs = time.time() - t
        keras_acc = accuracy(model, *test_xy)

        tg = build_train_graph(graph, scheme, num_classes=10, head="int8", lr=lr, seed=seed + 1)
        state = TrainState.from_train_graph(tg)
        t = time.time()
        for i in range(steps):
            train_step(tg, state, x[i], int(y[i]))
        ref_secs = time.time() - t
        # evaluated with the Keras emulation of the trained int8 graph (bit-exact with its reference forward)
        ref_acc = accuracy(from_graph(apply_to_graph(graph, tg, state)), *test_xy)
        log(f"  seed {seed}: keras {100 * keras_acc:.2f} ({keras_secs:.0f}s), "
            f"numpy reference trainer {100 * ref_acc:.2f} ({ref_secs:.0f}s)")
        per_seed.append({"seed": seed, "keras_accuracy": keras_acc, "reference_accuracy": ref_acc,
                         "keras_seconds": keras_secs, "reference_seconds": ref_secs,
                         "reference_rng_seed": seed + 1})
    k = float(np.mean([r["keras_accuracy"] for r in per_seed]))
    r = float(np.mean([r["reference_accuracy"] for r in per_seed]))
    return {"steps": steps, "batch_size": 1, "lr": lr, "scheme": scheme_key, "head": "int8",
            "rounding": "stochastic weights, nearest biases (both)", "seeds": per_seed,
            "keras_accuracy_mean": k, "reference_accuracy_mean": r, "difference_points": 100 * (k - r)}


def pair_runs(graph, scheme_key, lr, batch, train_xy, test_xy, seeds, first, log) -> dict:
    """fp32 vs int8+QAS on the sparse scheme over several seeds (head init, rounding stream):
    the spread of single runs, and the mean difference."""
    acc = {"fp32": [first["fp32"]], "int8+QAS": [first["int8+QAS"]]}
    for seed in seeds:
        for mode in acc:
            model, secs, _ = train(graph, mode, "sparse", scheme_key, lr, batch, train_xy, seed)
            acc[mode].append(accuracy(model, *test_xy))
            log(f"  seed {seed} {mode:>8}: {100 * acc[mode][-1]:.2f} ({secs:.0f}s)")
    diffs = [100 * (a - b) for a, b in zip(acc["fp32"], acc["int8+QAS"])]
    return {"seeds": [None] + list(seeds), "accuracy": acc,
            "mean": {m: float(np.mean(v)) for m, v in acc.items()},
            "std": {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in acc.items()},
            "fp32_minus_int8_qas_points": diffs, "mean_difference_points": float(np.mean(diffs))}


def grad_dtype_runs(graph, scheme_key, lr, batch, train_xy, test_xy, seeds, ref_steps, lr_batch1, ref_xy, log) -> dict:
    """float32 vs float16 gradient storage (``grad_dtype``), int8 + QAS on the sparse scheme,
    per seed: the Keras simulation (batch ``batch``, ``GradientStore``) and the NumPy reference
    trainer (batch 1, the device's arithmetic: one binary16 rounding per stored gradient element)."""
    from tflm_train.keras import from_graph
    from tflm_train.training import TrainState, apply_to_graph, build_train_graph, train_step

    dtypes = ("float32", "float16")
    keras_acc = {d: [] for d in dtypes}
    ref_acc = {d: [] for d in dtypes}
    scheme = scheme_for("sparse", graph, scheme_key)
    for seed in seeds:
        for d in dtypes:
            model, secs, _ = train(graph, "int8+QAS", "sparse", scheme_key, lr, batch, train_xy, seed, d)
            keras_acc[d].append(accuracy(model, *test_xy))
            log(f"  keras seed {seed} {d}: {100 * keras_acc[d][-1]:.2f} ({secs:.0f}s)")
        if ref_steps <= 0:
            continue
        x, y = ref_xy[0][:ref_steps], ref_xy[1][:ref_steps]
        for d in dtypes:
            tg = build_train_graph(graph, scheme, num_classes=10, head="int8", lr=lr_batch1, seed=seed + 1,
                                   grad_dtype=d)
            state = TrainState.from_train_graph(tg)
            t = time.time()
            for i in range(ref_steps):
                train_step(tg, state, x[i], int(y[i]))
            ref_acc[d].append(accuracy(from_graph(apply_to_graph(graph, tg, state)), *test_xy))
            log(f"  reference seed {seed} {d}: {100 * ref_acc[d][-1]:.2f} ({time.time() - t:.0f}s)")

    def summary(acc):
        if not acc["float32"]:
            return None
        diffs = [100 * (a - b) for a, b in zip(acc["float32"], acc["float16"])]
        return {"accuracy": acc, "mean": {d: float(np.mean(v)) for d, v in acc.items()},
                "float32_minus_float16_points": diffs, "mean_difference_points": float(np.mean(diffs))}

    return {"seeds": list(seeds), "scheme": scheme_key, "mode": "int8+QAS", "head": "int8",
            "keras": dict(summary(keras_acc), batch_size=batch, lr=lr, steps=len(train_xy[1]) // batch),
            "reference_trainer": (dict(summary(ref_acc), batch_size=1, lr=lr_batch1, steps=ref_steps)
                                  if ref_steps > 0 else None)}


def grad_dtype_markdown(r: dict) -> str:
    lines = ["| gradient storage | " + " | ".join(f"seed {s}" for s in r["seeds"]) + " | mean |",
             "|---|" + "---:|" * (len(r["seeds"]) + 1)]
    for what in ("keras", "reference_trainer"):
        part = r.get(what)
        if not part:
            continue
        label = (f"Keras, batch {part['batch_size']}, {part['steps']} steps" if what == "keras"
                 else f"NumPy reference (device arithmetic), batch 1, {part['steps']} steps")
        for d in ("float32", "float16"):
            cells = " | ".join(f"{100 * a:.2f}" for a in part["accuracy"][d])
            lines.append(f"| {label}, {d} | {cells} | {100 * part['mean'][d]:.2f} |")
        lines.append(f"| {label}: float32 - float16 (points) | "
                     + " | ".join(f"{v:+.2f}" for v in part["float32_minus_float16_points"])
                     + f" | {part['mean_difference_points']:+.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    modes = result["settings"]["modes"]
    lines = ["| update set | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
    for update_set, row in result["accuracy"].items():
        cells = [f"{100 * row[m]:.2f}" if m in row else "" for m in modes]
        lines.append(f"| {update_set} | " + " | ".join(cells) + " |")
    pair = result.get("seeds_sparse")
    if pair:
        lines += ["", f"Sparse scheme over {len(pair['accuracy']['fp32'])} seeds: fp32 "
                      f"{100 * pair['mean']['fp32']:.2f} ± {100 * pair['std']['fp32']:.2f}, int8+QAS "
                      f"{100 * pair['mean']['int8+QAS']:.2f} ± {100 * pair['std']['int8+QAS']:.2f} "
                      f"(mean difference {pair['mean_difference_points']:+.2f} points)"]
    ref = result.get("reference_trainer")
    if ref:
        per = ", ".join(f"{100 * s['keras_accuracy']:.2f} vs {100 * s['reference_accuracy']:.2f}" for s in ref["seeds"])
        lines += ["", f"Batch 1, {ref['steps']} steps, {ref['scheme']}, int8 + QAS, lr {ref['lr']:g}, "
                      f"Keras vs NumPy reference trainer per seed: {per}; mean {100 * ref['keras_accuracy_mean']:.2f} "
                      f"vs {100 * ref['reference_accuracy_mean']:.2f} (difference {ref['difference_points']:+.2f} points)"]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--val", type=int, default=1000, help="validation images (from the training set) for the lr choice")
    p.add_argument("--test", type=int, default=3000, help="test images")
    p.add_argument("--scheme", default="99kb", help="published scheme key in mcunet-5fps.json")
    p.add_argument("--lr", type=float, default=None, help="skip the lr selection and use this rate")
    p.add_argument("--lr-candidates", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    p.add_argument("--select-steps", type=int, default=None, help="steps of each lr-selection run (default --steps)")
    p.add_argument("--pair-seeds", type=int, nargs="*", default=[1, 2],
                   help="extra seeds of the fp32 / int8+QAS sparse-scheme pair")
    p.add_argument("--ref-steps", type=int, default=1000, help="batch-1 steps of the reference-trainer check (0: skip)")
    p.add_argument("--ref-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lr-batch1", type=float, default=0.001)
    p.add_argument("--full", action="store_true", help="also update every parameter (slow)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny smoke run, nothing written unless --out is given")
    p.add_argument("--out", default=None)
    p.add_argument("--grad-dtypes", action="store_true",
                   help="only compare float32 and float16 gradient storage (int8+QAS, sparse scheme, "
                        "--grad-seeds, Keras and the reference trainer); writes transfer_accuracy_grad16.json")
    p.add_argument("--grad-seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.test, args.val, args.ref_steps = 20, 300, 200, 40
        args.lr_candidates, args.pair_seeds, args.ref_seeds = args.lr_candidates[:2], [1], [0]
    out = Path(args.out) if args.out else (None if args.quick else RESULT)
    if args.grad_dtypes and not args.out and not args.quick:
        out = RESULT.with_name("transfer_accuracy_grad16.json")

    import keras
    from tflm_train.io.npz_reader import load_npz

    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:6.0f}s] {msg}", flush=True)

    graph = load_npz(str(MODEL), input_size=args.resolution)
    n_train = args.steps * args.batch
    train_xy, val_xy, test_xy = load_data(args.resolution, max(n_train, args.ref_steps), args.val, args.test,
                                          args.seed)
    train_xy = (train_xy[0][:n_train], train_xy[1][:n_train]), train_xy
    batched_xy, all_train_xy = train_xy
    log(f"data: {n_train} train, {args.val} val, {args.test} test images at {args.resolution}x{args.resolution}")

    lr, lr_scores = args.lr, None
    if args.grad_dtypes:
        return grad_dtype_main(args, argv, graph, lr, batched_xy, all_train_xy, test_xy, out, t_start, log)
    if lr is None:
        log("choosing the learning rate on the validation split (fp32, sparse scheme)")
        sel_steps = args.select_steps or args.steps
        sel_xy = (batched_xy[0][:sel_steps * args.batch], batched_xy[1][:sel_steps * args.batch])
        lr, lr_scores = select_lr(graph, args.lr_candidates, args.scheme, args.batch, sel_xy, val_xy, args.seed, log)
    log(f"learning rate {lr:g}")

    modes = ["fp32", "int8+QAS", "int8"]
    update_sets = ["last-layer", "bias-only", "sparse"] + (["full"] if args.full else [])
    acc, runs = {}, []
    for update_set in update_sets:
        label = f"sparse ({args.scheme})" if update_set == "sparse" else update_set
        acc[label] = {}
        for mode in modes:
            model, secs, loss = train(graph, mode, update_set, args.scheme, lr, args.batch, batched_xy, args.seed)
            a = accuracy(model, *test_xy)
            acc[label][mode] = a
            run = {"update_set": label, "mode": mode, "test_accuracy": a, "final_loss": loss, "train_seconds": secs}
            if mode == "int8+QAS" and update_set == "sparse":
                run["export_check"] = check_export(model, graph, *test_xy, n=20)
            runs.append(run)
            log(f"{label:>18} {mode:>8}: {100 * a:.2f}  (loss {loss:.3f}, {secs:.0f}s)")

    pair = None
    if args.pair_seeds:
        log(f"sparse scheme, fp32 vs int8+QAS, seeds {args.pair_seeds}")
        pair = pair_runs(graph, args.scheme, lr, args.batch, batched_xy, test_xy, args.pair_seeds,
                         acc[f"sparse ({args.scheme})"], log)

    ref = None
    if args.ref_steps > 0:
        log(f"reference trainer check: batch 1, {args.ref_steps} steps, lr {args.lr_batch1:g}")
        ref = reference_comparison(graph, args.scheme, args.lr_batch1, args.ref_steps, all_train_xy, test_xy,
                                   args.ref_seeds, log)

    import tensorflow as tf

    result = {
        "command": "python benchmarks/transfer_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {
            "model": "mcunet-5fps (ImageNet-pretrained int8, ../shared/models)", "dataset": "Fashion-MNIST",
            "resolution": args.resolution, "channels": 3, "input_mapping": "p -> round(p - 127.5) (scale 1/127.5, zp 0)",
            "train_images": n_train, "val_images": args.val, "test_images": args.test, "batch_size": args.batch,
            "steps": args.steps, "epochs": 1, "optimizer": "SGD (no momentum)", "lr": lr,
            "lr_candidates": args.lr_candidates if lr_scores else None, "lr_selection_val_accuracy": lr_scores,
            "seed": args.seed, "scheme": args.scheme, "modes": modes, "update_sets": update_sets,
            "heads": {"fp32": "float", "int8+QAS": "int8", "int8": "int8"},
        },
        "accuracy": acc,
        "runs": runs,
        "seeds_sparse": pair,
        "reference_trainer": ref,
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "cpus": os.cpu_count(), "machine": platform.machine()},
        "total_seconds": time.time() - t_start,
    }
    table = markdown(result)
    print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result["markdown"] = table
        out.write_text(json.dumps(result, indent=1) + "\n")
        log(f"wrote {out}")
    return result


def grad_dtype_main(args, argv, graph, lr, batched_xy, all_train_xy, test_xy, out, t_start, log) -> dict:
    if lr is None:
        raise SystemExit("--grad-dtypes needs --lr (the committed run's selected rate)")
    log(f"float32 vs float16 gradients, seeds {args.grad_seeds}, lr {lr:g} (batch {args.batch}), "
        f"reference {args.ref_steps} steps at lr {args.lr_batch1:g}")
    r = grad_dtype_runs(graph, args.scheme, lr, args.batch, batched_xy, test_xy, args.grad_seeds, args.ref_steps,
                        args.lr_batch1, all_train_xy, log)
    r.update(command="python benchmarks/transfer_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             resolution=args.resolution, train_images=len(batched_xy[1]), test_images=args.test,
             commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                   text=True).stdout.strip(), total_seconds=time.time() - t_start)
    table = grad_dtype_markdown(r)
    print(table)
    if out is not None:
        r["markdown"] = table
        out.write_text(json.dumps(r, indent=1) + "\n")
        log(f"wrote {out}")
    return r


if __name__ == "__main__":
    main()
