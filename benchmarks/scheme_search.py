#!/usr/bin/env python
"""Searched vs published sparse-update schemes at the published schemes' planned memory.

    nice python benchmarks/scheme_search.py                        # the committed run
    python benchmarks/scheme_search.py --quick --out /tmp/s.json   # a smoke run

For each seed model and each published scheme key (``--budgets``, default 49kb and 99kb), the
budget is that published scheme's exact planned peak (``tflm_train.plan``, new 10-class float
head, at ``--resolution``). Under it, four schemes are compared:

- ``searched``: ``tflm_train.search_scheme`` on the task's training images (contribution
  analysis cached per (model, data, settings); knapsack + refinement against the planner);
- ``published``: the published scheme itself;
- ``bias-only``: the biases of the last k conv layers, k the deepest that fits the budget;
- ``last-k``: weights and biases of the last k conv layers, k the largest that fits.

Each is fine-tuned from the same pretrained graph with the same head init, images, order,
steps, batch and learning rate (``QAS(SGD)``, no momentum, the device's rounding) for each
of ``--seeds`` and scored on held-out test images; the table gives the mean over seeds. The
runs use the contribution analysis' masked training step (what the scheme freezes gets a
zero gradient; one traced step for every scheme), not ``fit`` + ``SparseUpdate``, which
re-traces the model for each scheme. The
searched scheme's budget check is the planner's exact number; with ``--qemu`` the first
model's searched scheme (first budget) is exported and trained in the Cortex-M4 firmware in
QEMU (256 KB RAM / 1 MB flash link), which reports the arena it used.

Results are written after every run (``--out``, default ``benchmarks/results/scheme_search.json``),
so an interrupted run keeps what it finished; ``--resume`` skips runs already in the file.
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
RESULT = REPO / "benchmarks" / "results" / "scheme_search.json"


#: classes of each task's new head
TASK_CLASSES = {"fmnist": 10, "mnist": 10, "digits": 10, "basicmotions": 4}


def task_data(name: str, graph, n_train: int, n_test: int, seed: int):
    """(train x, train y, test x, test y) as int8 model inputs, via the package's data rule."""
    from tflm_train import datasets
    from tflm_train.scheme_search import prepare_inputs

    if name == "fmnist":
        x, y = datasets.fashion_mnist("train")
        xt, yt = datasets.fashion_mnist("test")
    elif name == "mnist":
        x, y = datasets.mnist_5k()  # sorted by label: split at random (a fixed seed), 4000 / 1000
        split = np.random.default_rng(1234).permutation(len(y))
        xt, yt = x[split[4000:]], y[split[4000:]]
        x, y = x[split[:4000]], y[split[:4000]]
    elif name == "digits":
        x, y = datasets.sklearn_digits()
        xt, yt = x[1300:], y[1300:]
        x, y = x[:1300], y[:1300]
    elif name == "basicmotions":
        x, y = datasets.basic_motions("train")
        xt, yt = datasets.basic_motions("test")
    else:
        raise SystemExit(f"unknown task {name!r}")
    tr = np.random.default_rng(seed).permutation(len(y))[:n_train]
    te = np.random.default_rng(seed + 1).permutation(len(yt))[:n_test]
    xtr, ytr = prepare_inputs(graph, x[tr], y[tr], TASK_CLASSES[name])
    xte, yte = prepare_inputs(graph, xt[te], yt[te], TASK_CLASSES[name])
    return xtr, ytr, xte, yte


def fits(cost, scheme, budget) -> bool:
    return cost.exact_peak(scheme) <= budget


def baselines(graph, cost, budget):
    """bias-only and last-k at the largest depth whose exact planned peak fits the budget."""
    from tflm_train.training import SparseScheme

    n = len(graph.conv_op_indices())
    bias = max((k for k in range(1, n + 1) if cost.quick_peak(SparseScheme(k, {})) <= budget), default=1)
    while bias > 1 and not fits(cost, SparseScheme(bias, {}), budget):
        bias -= 1
    lastk = max((k for k in range(1, n + 1) if cost.quick_peak(SparseScheme.last_k(graph, k)) <= budget), default=1)
    while lastk > 1 and not fits(cost, SparseScheme.last_k(graph, lastk), budget):
        lastk -= 1
    return SparseScheme(bias, {}, name=f"bias-only (last {bias})"), SparseScheme.last_k(graph, lastk)


class Trainer:
    """One traced training step per (model, task) (``tflm_train.keras.contribution.MaskedTrainer``):
    every run restores the same initial weights (head included) and optimizer state; the seed
    sets the image order and the stochastic rounding's stream. The masked step trains exactly
    what ``SparseUpdate`` trains (tests/test_search.py) without re-tracing Keras' ``fit`` for
    each scheme, which would cost ~20-60 s a run on this shared machine."""

    def __init__(self, graph, seed_for_head: int, num_classes: int = 10, lr=0.01, schedule="constant", steps=100):
        import keras

        from tflm_train.keras.contribution import MaskedTrainer

        rate = keras.optimizers.schedules.CosineDecay(lr, steps) if schedule == "cosine" else lr
        self.masked = MaskedTrainer(graph, num_classes, head="float", lr=rate, seed=seed_for_head)

    def run(self, scheme, x, y, xt, yt, steps, batch, seed) -> float:
        order = np.random.default_rng(seed).permutation(len(y))
        idx = np.resize(order, steps * batch)
        self.masked.train(scheme, x[idx], y[idx], batch, rounding_seed=seed)
        return self.masked.evaluate(xt, yt)["accuracy"]


def qemu_check(graph, scheme, log) -> dict:
    """Export ``scheme`` and train 2 steps in the Cortex-M4 firmware (QEMU, 256 KB RAM link):
    the device's arena and RAM against the planned peak."""
    import tflm_train
    from tflm_train.micro.mcu import mcu_run

    r = tflm_train.export(graph, scheme)
    rep = mcu_run(r.data, steps=2, samples=1)
    d = rep.to_dict()
    log(f"  QEMU: {rep.summary()}")
    return {"scheme": scheme.to_dict(), "planned_peak_bytes": r.plan.peak_bytes, "planned_arena_bytes": r.plan.arena_bytes,
            "file_bytes": r.nbytes, "matches_host": rep.matches_host, "summary": rep.summary(),
            "report": {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool)) or k in ("ram", "flash", "losses")}}


def qemu_only(args, log) -> None:
    """``--qemu-only``: the QEMU check of the first case's searched scheme in ``--out`` (written by
    an earlier run), into ``results/scheme_search_qemu.json``."""
    import subprocess as sp

    from tflm_train.io.npz_reader import load_npz
    from tflm_train.training import SparseScheme

    case = json.loads((Path(args.out) if args.out else RESULT).read_text())["cases"][0]
    graph = load_npz(str(SHARED / "models" / f"{case['model']}.npz"), input_size=args.resolution)
    scheme = SparseScheme.from_dict(case["schemes"]["searched"]["scheme"])
    out = {"command": "python benchmarks/scheme_search.py --qemu-only", "model": case["model"],
           "resolution": args.resolution, "budget": case["budget"], "budget_bytes": case["budget_bytes"],
           "commit": sp.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
           **qemu_check(graph, scheme, log)}
    path = RESULT.parent / "scheme_search_qemu.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    log(f"wrote {path}")


def describe(scheme) -> str:
    w = ", ".join(f"{k}:{r:g}" for k, r in scheme.weight_update.items() if r > 0)
    return f"bias {scheme.n_bias_update}" + (f"; weights {w}" if w else "")


def markdown(result) -> str:
    lines = ["| model | task | budget = published scheme's planned peak (KB) | scheme | planned peak (KB) | "
             "accuracy, mean of seeds (%) | per seed (%) | what trains |",
             "|---|---|---:|---|---:|---:|---|---|"]
    for case in result["cases"]:
        for name, row in case["schemes"].items():
            accs = row.get("accuracy", [])
            mean = f"{100 * np.mean(accs):.2f}" if accs else "n/a"
            lines.append(f"| {case['model']} | {case['task']} | {case['budget_bytes'] / 1024:.1f} ({case['budget']}) | "
                         f"{name} | {row['planned_peak_bytes'] / 1024:.1f} | {mean} | "
                         f"{', '.join(f'{100 * a:.1f}' for a in accs)} | {row['describe']} |")
    return "\n".join(lines)


def summary_markdown(result) -> str:
    """One row per (model, task, budget): the mean accuracy of each compared scheme, and whether
    the searched one is at least the published one and above bias-only and last-k."""
    lines = ["| model | task | budget (KB) | searched | published | bias-only | last-k | searched >= published | "
             "searched > bias-only, last-k |", "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for case in result["cases"]:
        rows = case["schemes"]
        if not case.get("complete"):
            continue
        mean = {name.split(" ")[0]: 100 * float(np.mean(r["accuracy"])) for name, r in rows.items() if r["accuracy"]}
        peak = {name.split(" ")[0]: r["planned_peak_bytes"] / 1024 for name, r in rows.items()}
        cell = {k: f"{mean[k]:.1f} ({peak[k]:.1f} KB)" for k in mean}
        lines.append(f"| {case['model']} | {case['task']} | {case['budget_bytes'] / 1024:.1f} ({case['budget']}) | "
                     f"{cell['searched']} | {cell['published']} | {cell['bias-only']} | {cell['last-k']} | "
                     f"{'yes' if mean['searched'] >= mean['published'] else 'no'} "
                     f"({mean['searched'] - mean['published']:+.1f}) | "
                     f"{'yes' if mean['searched'] > max(mean['bias-only'], mean['last-k']) else 'no'} |")
    return "\n".join(lines)


def single_threaded() -> None:
    """One thread for TensorFlow (this benchmark shares a 2-core machine; the runs are sequential)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mcunet-5fps", "mbv2-w0.35"])
    p.add_argument("--tasks", nargs="+", default=["fmnist", "mnist", "digits", "basicmotions"],
                   choices=sorted(TASK_CLASSES))
    p.add_argument("--budgets", nargs="+", default=["49kb", "99kb"], help="published scheme keys")
    p.add_argument("--resolution", type=int, default=48)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps of each compared run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--train", type=int, default=3200, help="training images (search and fine-tuning)")
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--analysis-steps", type=int, default=60)
    p.add_argument("--analysis-batch", type=int, default=16)
    p.add_argument("--analysis-lr", type=float, default=0.01)
    p.add_argument("--analysis-metric", choices=("accuracy", "loss"), default="accuracy")
    p.add_argument("--analysis-val", type=int, default=512, help="held-out training images scoring each run")
    p.add_argument("--max-layers", type=int, default=7, help="weight layers the contribution analysis measures")
    p.add_argument("--all-layers", action="store_true",
                   help="analyse every non-depthwise layer, not only expanding pointwise convs")
    p.add_argument("--bias-points", type=int, default=4)
    p.add_argument("--verify-top", type=int, default=3, help="search proposals measured before one is chosen")
    p.add_argument("--verify-seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds of the search's measurement of each proposal (runs of --steps x --batch on the "
                        "training images, scored on the analysis' held-out part of them)")
    p.add_argument("--reuse-runs", default=None,
                   help="an earlier results JSON whose comparison runs (same model, task, scheme, seed and "
                        "fine-tuning settings) are taken instead of rerun, after one of them is rerun and matches")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="channel ratios the analysis measures (the package's default is 0.125 0.25 0.5 1)")
    p.add_argument("--qemu", action="store_true", help="confirm the first searched scheme in the QEMU firmware")
    p.add_argument("--qemu-only", action="store_true",
                   help="only the QEMU check of the first searched scheme of an earlier run's results")
    p.add_argument("--tables", action="store_true", help="only print the tables of --out's results")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs of --out made with the same settings; run only what is missing")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.train, args.test = args.seeds[:1], 5, 400, 200
        args.analysis_steps, args.max_layers, args.bias_points, args.budgets = 3, 1, 1, args.budgets[:1]
        args.verify_top, args.verify_seeds = 1, [0]
    out = Path(args.out) if args.out else RESULT
    if args.tables:
        saved = json.loads(out.read_text())
        print(summary_markdown(saved) + "\n\n" + markdown(saved))
        return

    import keras
    import tensorflow as tf

    import tflm_train
    from tflm_train.io.npz_reader import load_npz
    from tflm_train.keras.contribution import AnalysisSettings, VerifySettings
    from tflm_train.training import SparseScheme
    from tflm_train.training.search import CostModel

    single_threaded()
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    if args.qemu_only:
        return qemu_only(args, log)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    settings_record = {k: v for k, v in vars(args).items()
                       if k not in ("out", "resume", "qemu_only", "tables", "reuse_runs")}
    result = {"command": "python benchmarks/scheme_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit,
              # files that differed from that commit when the run started (others work in the same tree)
              "uncommitted_at_start": subprocess.run(["git", "status", "--short", "--untracked-files=no"], cwd=REPO,
                                                     capture_output=True, text=True).stdout.split("\n")[:-1],
              "settings": settings_record,
              "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                              "keras": keras.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
                              "load_average_at_start": os.getloadavg(), "tensorflow_threads": 1},
              "cases": [], "runs": {}, "complete": False}
    if args.resume and out.is_file():
        old = json.loads(out.read_text())
        same = {k: v for k, v in old.get("settings", {}).items() if k not in ("models", "tasks", "budgets", "qemu")}
        mine = {k: v for k, v in settings_record.items() if k not in ("models", "tasks", "budgets", "qemu")}
        if same != mine:
            raise SystemExit(f"--resume: {out} was made with other settings ({same}); not mixing them with {mine}")
        result["cases"], result["runs"] = old["cases"], old.get("runs", {})
        result["resumed_from"] = {"commit": old.get("commit"), "total_seconds": old.get("total_seconds"),
                                  **({"resumed_from": old["resumed_from"]} if "resumed_from" in old else {})}

    reusable, reuse_checked = {}, False
    if args.reuse_runs:
        old = json.loads(Path(args.reuse_runs).read_text())
        # what a comparison run depends on (not the search's settings)
        fields = ("resolution", "steps", "batch", "lr", "lr_schedule", "train", "test")
        differ = {k: (old["settings"].get(k), settings_record[k]) for k in fields
                  if old["settings"].get(k) != settings_record[k]}
        if differ:
            raise SystemExit(f"--reuse-runs: {args.reuse_runs} was made with other fine-tuning settings {differ}")
        reusable = dict(old.get("runs", {}))
        result["reused_runs"] = {"file": args.reuse_runs, "commit": old.get("commit"), "available": len(reusable),
                                 "reused": [], "check": None}

    def save():
        result["total_seconds"] = time.time() - t0
        result["markdown"] = markdown(result)
        result["summary_markdown"] = summary_markdown(result)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, out)

    settings = AnalysisSettings(steps=args.analysis_steps, batch_size=args.analysis_batch, lr=args.analysis_lr,
                                val_images=args.analysis_val, metric=args.analysis_metric)
    verify = VerifySettings(steps=args.steps, batch_size=args.batch, seeds=tuple(args.verify_seeds))
    first_searched = None
    graphs = {m: load_npz(str(SHARED / "models" / f"{m}.npz"), input_size=args.resolution) for m in args.models}
    # tasks outermost: every model gets the first task before any model gets the second
    for task in args.tasks:
        classes = TASK_CLASSES[task]
        for model_name in args.models:
            graph = graphs[model_name]
            cost = CostModel(graph, classes, "float")
            x, y, xt, yt = task_data(task, graph, args.train, args.test, 0)
            trainer = Trainer(graph, seed_for_head=0, num_classes=classes, lr=args.lr, schedule=args.lr_schedule,
                              steps=args.steps)
            for key in args.budgets:
                case = next((c for c in result["cases"] if (c["model"], c["task"], c["budget"]) == (model_name, task, key)),
                            None)
                if case is not None and case.get("complete"):
                    log(f"{model_name} / {task} / {key}: complete in {out}, skipped")
                    continue
                if case is None:
                    case = {"model": model_name, "task": task, "budget": key, "num_classes": classes,
                            "train_images": len(y), "test_images": len(yt), "schemes": {}, "complete": False}
                    result["cases"].append(case)
                published = SparseScheme.from_json(str(SHARED / "schemes" / f"{model_name}.json"), key)
                budget = cost.exact_peak(published)
                case["budget_bytes"] = budget
                log(f"{model_name} / {task} / {key}: budget {budget / 1024:.1f} KB; searching")
                t = time.time()
                options = dict(num_classes=classes, settings=settings, max_weight_layers=args.max_layers,
                               bias_points=args.bias_points, ratios=args.ratios, verify_top=args.verify_top,
                               expanding_only=not args.all_layers, verify=verify)
                scheme, res, contrib = tflm_train.search_scheme(graph, x, y, budget / 1024, progress=True,
                                                                return_result=True, **options)
                search_seconds = time.time() - t
                t = time.time()
                tflm_train.search_scheme(graph, x, y, budget / 1024, **options)
                warm_seconds = time.time() - t
                case["search"] = {"seconds": search_seconds, "warm_cache_seconds": warm_seconds,
                                  "predicted_gain": res.predicted_gain, "metric": contrib.metric,
                                  "baseline_held_out_accuracy": contrib.baseline_accuracy,
                                  "contributions": {"bias": {str(k): v for k, v in contrib.bias.items()},
                                                    "weight": {f"{l}:{r:g}": v for (l, r), v in contrib.weight.items()}},
                                  "proposals": [{"describe": describe(s), "measured": m, "predicted": contrib.gain(s),
                                                 "planned_peak_bytes": cost.exact_peak(s)} for s, m in res.proposals],
                                  "flash_bytes": res.flash_bytes}
                log(f"  searched {describe(scheme)}: planned {res.planned_peak_bytes / 1024:.1f} KB "
                    f"({search_seconds:.0f}s, warm {warm_seconds:.1f}s)")
                first_searched = first_searched or (graph, scheme)
                bias_only, last_k = baselines(graph, cost, budget)
                compared = (("searched", scheme), ("published " + key, published), ("bias-only", bias_only),
                            ("last-k", last_k))
                for name, s in compared:
                    row = case["schemes"].setdefault(name, {"accuracy": [], "seeds": []})
                    if row.get("scheme") not in (None, s.to_dict()):  # another scheme than before: rerun it
                        row.update(accuracy=[], seeds=[])
                    row.update(planned_peak_bytes=cost.exact_peak(s), describe=describe(s), scheme=s.to_dict(),
                               within_budget=cost.exact_peak(s) <= budget)
                # seeds outermost: an interrupted run still holds complete comparisons for its first seeds
                for seed in args.seeds:
                    for name, s in compared:
                        row = case["schemes"][name]
                        if seed in row["seeds"]:
                            continue
                        # the same scheme on the same model, task and seed is the same run (e.g. last-k
                        # at both budgets): run once, reused
                        run_key = f"{model_name}/{task}/{describe(s)}/{seed}"
                        t = time.time()
                        if run_key in result["runs"]:
                            acc = result["runs"][run_key]
                        elif run_key in reusable and reuse_checked:
                            acc = result["runs"][run_key] = reusable[run_key]
                            result["reused_runs"]["reused"].append(run_key)
                        elif run_key in reusable:
                            # the first reusable run is rerun: the earlier result must come out again
                            acc = trainer.run(s, x, y, xt, yt, args.steps, args.batch, seed)
                            result["runs"][run_key] = acc
                            result["reused_runs"]["check"] = {"run": run_key, "earlier": reusable[run_key],
                                                              "now": acc}
                            if acc != reusable[run_key]:
                                raise SystemExit(f"--reuse-runs: {run_key} gave {acc}, the earlier run "
                                                 f"{reusable[run_key]}: not reusing runs of another code")
                            reuse_checked = True
                        else:
                            acc = trainer.run(s, x, y, xt, yt, args.steps, args.batch, seed)
                            result["runs"][run_key] = acc
                        row["accuracy"].append(acc)
                        row["seeds"].append(seed)
                        log(f"  {name:>16} seed {seed}: {100 * acc:.2f} % ({time.time() - t:.0f}s)")
                        save()
                case["complete"] = True
                save()
    if args.qemu and first_searched is not None:
        log("QEMU: exporting and training the first searched scheme on the Cortex-M4 firmware")
        try:
            result["qemu"] = qemu_check(*first_searched, log)
        except Exception as e:  # recorded, not hidden: the table still stands on the planner
            result["qemu"] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  QEMU failed: {e}")
    result["complete"] = all(c.get("complete") for c in result["cases"])
    save()
    print(markdown(result))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
