#!/usr/bin/env python
"""Warm-cache search time: ``tflm_train.search_scheme`` on a case of benchmarks/scheme_search.py
whose contribution analysis and proposal measurements are already cached (run that benchmark,
or this one, first), twice:

- ``plans cold``: the plan cache of this model and head removed first, so every planner call
  and export of the search runs (what a warm search cost before the plan cache);
- ``plans warm``: the same search again, every planned number read from the plan cache.

Both must choose the same scheme with the same planned peak, file size, proposals and
measurements (checked; a difference exits 1). Results: ``benchmarks/results/warm_search.json``.

    nice python benchmarks/warm_search.py --case mbv2-w0.35 fmnist 99kb
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

import scheme_search as bench  # noqa: E402

RESULT = HERE / "results" / "warm_search.json"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", nargs=3, action="append", metavar=("MODEL", "TASK", "BUDGET"),
                   help="a case of benchmarks/scheme_search.py (default: mbv2-w0.35 fmnist 99kb)")
    p.add_argument("--out", default=str(RESULT))
    args = p.parse_args(argv)
    cases = args.case or [["mbv2-w0.35", "fmnist", "99kb"]]

    import tflm_train
    from tflm_train.io.npz_reader import load_npz
    from tflm_train.keras.contribution import AnalysisSettings, VerifySettings
    from tflm_train.training import SparseScheme
    from tflm_train.training.search import CostModel

    # scheme_search.py's defaults, with its committed run's --verify-top 2
    settings = AnalysisSettings(steps=60, batch_size=16, lr=0.01, val_images=512, metric="accuracy")
    verify = VerifySettings(steps=100, batch_size=32, seeds=(0, 1))
    options = dict(settings=settings, max_weight_layers=7, bias_points=4, ratios=[0.25, 0.5, 1.0], verify_top=2,
                   expanding_only=True, verify=verify)
    bench.single_threaded()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()
    result = {"command": "python benchmarks/warm_search.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "commit": commit, "options": {k: str(v) for k, v in options.items()}, "cases": []}
    ok = True
    for model, task, key in cases:
        classes = bench.TASK_CLASSES[task]
        graph = load_npz(str(bench.SHARED / "models" / f"{model}.npz"), input_size=48)
        x, y, _, _ = bench.task_data(task, graph, 3200, 2000, 0)
        published = SparseScheme.from_json(str(bench.SHARED / "schemes" / f"{model}.json"), key)
        budget = CostModel(graph, classes, "float").exact_peak(published)
        runs = {}
        for name in ("plans cold", "plans warm"):
            if name == "plans cold":
                path = CostModel.cached(graph, classes, "float").path
                if path.is_file():
                    path.unlink()
            t = time.time()
            scheme, res, _ = tflm_train.search_scheme(graph, x, y, budget / 1024, num_classes=classes,
                                                      return_result=True, **options)
            seconds = time.time() - t
            runs[name] = {"seconds": seconds, "scheme": scheme.to_dict(), "planned_peak_bytes": res.planned_peak_bytes,
                          "flash_bytes": res.flash_bytes,
                          "proposals": [[s.to_dict(), m] for s, m in res.proposals]}
            print(f"{model} / {task} / {key}: {name}: {seconds:.1f} s, planned {res.planned_peak_bytes} B, "
                  f"file {res.flash_bytes} B", flush=True)
        same = all(runs["plans cold"][k] == runs["plans warm"][k]
                   for k in ("scheme", "planned_peak_bytes", "flash_bytes", "proposals"))
        ok &= same
        result["cases"].append({"model": model, "task": task, "budget": key, "budget_bytes": budget,
                                "identical": same, **{n.replace(" ", "_"): r for n, r in runs.items()}})
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if not ok:
        print("the two searches differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
