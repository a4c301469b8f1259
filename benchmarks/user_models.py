"""Bring your own model: the user-style corpus (tests/user_models.py) through the whole pipeline.

For every corpus model (Keras 3 or tf_keras + tfmot, through the TF 2.21 converter; the
benchmark-only MobileNetV2 at 96x96 included): does ``tflm_train.load`` take it (or what
one-line error refuses it); with the default scheme (``last-2``, a new 10-class float head):
the planned RAM peak, the training file's size and the inference model's, whether they fit
256 KB RAM / 1 MB flash; and the outcome of the commands a user runs, as subprocesses:
``tflm-train inspect``, ``plan --json``, ``export``, ``mcu-run --steps 2 --data random --json``
(the firmware in QEMU, losses checked against the host runtime).

Writes benchmarks/results/user_models.json (with the command, machine and commit) and prints
the README table (``--table``: only print it from the committed results).
Run: python benchmarks/user_models.py   (about 5-10 minutes on 2 cores)
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tflm_train  # noqa: E402
from tests.user_models import CORPUS, corpus  # noqa: E402

SCHEME, NUM_CLASSES, STEPS = "last-2", 10, 2
RAM_KB, FLASH_KB = 256, 1024
CLI = [sys.executable, "-m", "tflm_train.cli"]


def run_cli(args, timeout=900):
    """(exit code, stdout, the last stderr line) of one tflm-train command."""
    p = subprocess.run(CLI + args, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in p.stderr.strip().splitlines() if line.strip()]
    return p.returncode, p.stdout, (lines[-1] if lines else "")


def outcome(rc, err) -> str:
    return "ok" if rc == 0 else f"exit {rc}: {err}"


def measure(name: str, path: str, work: str) -> dict:
    spec = CORPUS[name]
    row = dict(model=name, what=spec.what, framework=spec.framework, quantization=spec.quant, io=spec.io,
               batch="dynamic" if spec.batch is None else spec.batch, inference_bytes=os.path.getsize(path))
    try:
        graph = tflm_train.load(path)
        row["load"] = "ok"
    except tflm_train.GraphError as e:
        row["load"] = str(e)
        graph = None
    if graph is not None:
        # the figures at any size (the CLI below refuses a file over the budget)
        r = tflm_train.export(graph, SCHEME, num_classes=NUM_CLASSES, budget_check=False)
        row.update(conv_layers=len(graph.conv_op_indices()), params=graph.param_count(),
                   planned_ram_bytes=r.plan.peak_bytes, train_file_bytes=r.nbytes,
                   fits_ram=r.plan.peak_bytes <= RAM_KB * 1024, fits_flash=r.nbytes <= FLASH_KB * 1024)
    cli = {}
    rc, _, err = run_cli(["inspect", path])
    cli["inspect"] = outcome(rc, err)
    if rc == 0:
        rc, out, err = run_cli(["plan", path, "--scheme", SCHEME, "--json"])
        cli["plan"] = outcome(rc, err)
        train = os.path.join(work, name + "_train.tflite")
        rc, _, err = run_cli(["export", path, "--scheme", SCHEME, "-o", train])
        cli["export"] = outcome(rc, err)
        if rc == 0:
            rc, out, err = run_cli(["mcu-run", train, "--steps", str(STEPS), "--data", "random", "--json"])
            cli["mcu-run"] = outcome(rc, err)
            if rc == 0:
                report = json.loads(out)
                row["mcu"] = {k: report.get(k) for k in ("losses", "host_losses", "matches_host",
                                                          "instructions_per_step", "ram", "flash")}
    row["cli"] = cli
    failed = [f"{step}: {v}" for step, v in cli.items() if v != "ok"]
    row["pipeline"] = failed[0] if failed else "ok"
    return row


def kb(n) -> str:
    return "" if n is None else f"{n / 1024:.1f}"


def _short(message: str, limit: int = 100) -> str:
    """A one-line error for a table cell: the problems without tensor names, shortened."""
    text = message.split("(docs/support_contract.md): ", 1)[-1].split(" (supported ops:")[0]
    text = re.sub(r" '[^']*'", "", text.split("tflm-train: error: ", 1)[-1])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def markdown(rows) -> str:
    lines = ["| model | made with | load | planned RAM (KB) | training file (KB) | inference model (KB) | "
             "fits 256 KB / 1 MB | inspect / plan / export / mcu-run |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        io = "int16" if r["quantization"] == "16x8" and r["io"] == "int8" else r["io"]
        made = f"{'Keras 3' if r['framework'] == 'keras' else 'tf_keras + tfmot'} {r['quantization'].upper()}, " \
               f"{io} I/O, batch {r['batch']}"
        load = "ok" if r["load"] == "ok" else "refused: " + _short(r["load"])
        fits = "" if "fits_ram" not in r else \
            f"{'yes' if r['fits_ram'] else '**no**'} / {'yes' if r['fits_flash'] else '**no**'}"
        if r["pipeline"] == "ok":
            pipe = "ok (device losses = host)" if (r.get("mcu") or {}).get("matches_host") else "ok"
        elif r["load"] != "ok":
            pipe = "refused at load (exit 2)" if r["cli"].get("inspect", "").startswith("exit 2") else r["pipeline"]
        else:
            step, _, message = r["pipeline"].partition(": ")
            message = message.split("tflm-train: error: ", 1)[-1]
            pipe = f"{step} refused (exit 2): {_short(message.split(r['model'] + ': ', 1)[-1], 80)}"
        lines.append(f"| {r['model']} ({r['what']}) | {made} | {load} | {kb(r.get('planned_ram_bytes'))} | "
                     f"{kb(r.get('train_file_bytes'))} | {kb(r['inference_bytes'])} | {fits} | {pipe} |")
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:] == ["--table"]:  # the README table from the committed results
        with open(os.path.join(HERE, "results", "user_models.json")) as f:
            print(markdown(json.load(f)["models"]))
        return 0
    t0 = time.time()
    models = corpus(extra=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="user_models_") as work:
        for name, path in models.items():
            t = time.time()
            rows.append(measure(name, path, work))
            print(f"{name}: load {rows[-1]['load'][:60]}; pipeline {rows[-1]['pipeline'][:100]} "
                  f"({time.time() - t:.0f} s)", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    result = dict(command="python benchmarks/user_models.py", commit=commit, working_tree_modified=dirty,
                  machine=dict(platform=platform.platform(), processor=platform.processor(),
                               cpus=os.cpu_count(), python=platform.python_version()),
                  scheme=SCHEME, num_classes=NUM_CLASSES, head="float", mcu_steps=STEPS, ram_kb=RAM_KB,
                  flash_kb=FLASH_KB, wall_seconds=round(time.time() - t0, 1), models=rows)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "user_models.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
