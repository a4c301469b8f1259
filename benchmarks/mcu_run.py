"""On-device training of the three seed models on an emulated Cortex-M4 inside 256 KB / 1 MB.

For MCUNet-5FPS (published "99kb" scheme), MobileNetV2-w0.35 and ProxylessNAS-w0.3 (their
largest published schemes, "138kb" and "148kb") at 128x128 with a new 10-class float head
(SGD, lr 1e-3, seed 1): export the training .tflite, build the firmware (C++ runtime,
model and Fashion-MNIST test images in flash, static arena in RAM; linker regions 256 KB
RAM and 1 MB flash), run 3 training steps and one inference in QEMU mps2-an386
(`tflm-train mcu-run`), and record losses (checked equal to the host runtime's), RAM
(static data + arena + measured stack high-water mark), flash, and exact instruction
counts per training step and per inference.

Writes benchmarks/results/mcu_run.json and replaces its section of benchmarks/README.md.
Run: python benchmarks/mcu_run.py
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tflm_train  # noqa: E402
from tflm_train.io.train_export import export  # noqa: E402
from tflm_train.micro import mcu  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
RUNS = [
    ("mcunet-5fps", "MCUNet-5FPS", "99kb"),
    ("mbv2-w0.35", "MobileNetV2-w0.35", "138kb"),
    ("proxyless-w0.3", "ProxylessNAS-w0.3", "148kb"),
]
INPUT_SIZE, NUM_CLASSES, LR, SEED, STEPS, SAMPLES = 128, 10, 1e-3, 1, 3, 3
BEGIN, END = "<!-- mcu_run:begin -->", "<!-- mcu_run:end -->"


def run_one(model: str, key: str, work: str) -> dict:
    graph = tflm_train.load(os.path.join(SHARED, "models", f"{model}.npz"), input_size=INPUT_SIZE)
    path = os.path.join(work, f"{model}_{key}_train.tflite")
    r = export(graph, os.path.join(SHARED, "schemes", f"{model}.json") + f":{key}", path, num_classes=NUM_CLASSES,
               lr=LR, seed=SEED)
    t0 = time.time()
    report = mcu.mcu_run(r.data, steps=STEPS, samples=SAMPLES, data="fmnist")
    row = dict(model=model, scheme=key, input_size=INPUT_SIZE, num_classes=NUM_CLASSES, lr=LR, seed=SEED,
               export_command=f"tflm-train export {model}.npz --input-size {INPUT_SIZE} --scheme "
                              f"{model}.json:{key} --lr {LR} --seed {SEED} -o {os.path.basename(path)}",
               command=f"tflm-train mcu-run {os.path.basename(path)} --steps {STEPS} --samples {SAMPLES} --json",
               file_bytes=len(r.data), plan_peak_bytes=r.plan.peak_bytes, wall_seconds=round(time.time() - t0, 1),
               **report.to_dict())
    row["embedded_samples"] = 0 if report.synthetic else len(report.labels)
    return row


def kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def markdown(rows) -> str:
    lines = [
        BEGIN,
        "## Training on an emulated Cortex-M4 (`mcu_run.py`)",
        "",
        "`python benchmarks/mcu_run.py` exports each model at 128x128 with its scheme and a new 10-class float head "
        f"(SGD lr {LR}, seed {SEED}), and runs `tflm-train mcu-run MODEL_TRAIN.tflite --steps {STEPS}`: the firmware "
        "(C++ runtime, the training .tflite and Fashion-MNIST test images in flash, a static arena in RAM) is linked "
        "into a 256 KB RAM / 1 MB flash region and runs in QEMU `mps2-an386` (Cortex-M4F): "
        f"{STEPS} training steps, then one inference with the trained parameters. Instructions are exact "
        "guest-instruction counts (TCG plugin, calibrated on every run); RAM = static data + .bss (the arena "
        "included) + the measured stack high-water mark; flash = everything loaded into the flash region. "
        "Losses are checked equal, bit for bit, to the host runtime's on the same samples (which equals the NumPy "
        "reference trainer's, `tests/test_micro_train.py`). Results: `results/mcu_run.json`.",
        "",
        "| model | scheme | RAM used (KB) | arena (KB) | stack (KB) | planned peak (KB) | flash (KB) | model file (KB) "
        "| samples in flash | instructions / training step | instructions / inference | losses (= host) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['scheme']} | — | — | — | — | — | — | — | — | — | {r['error']} |")
            continue
        losses = ", ".join(f"{v:.4f}" for v in r["losses"])
        lines.append(
            f"| {r['label']} | {r['scheme']} | {kb(r['ram']['used'])} | {kb(r['arena_used'])} | "
            f"{kb(r['stack_high_water'])} | {kb(r['plan_peak_bytes'])} | {kb(r['flash']['total'])} | "
            f"{kb(r['file_bytes'])} | {r['embedded_samples'] or 'generated'} | "
            f"{sum(r['instructions_per_step']) // len(r['instructions_per_step']):,} | "
            f"{r['instructions_per_inference']:,} | {losses} ({'yes' if r['matches_host'] else '**no**'}) |")
    lines += [
        "",
        "KB = 1024 bytes. RAM region 256 KB = 262144 bytes, flash 1 MB = 1048576 bytes. The arena is the plan's "
        "(parameters, activations, gradients, scratch) plus the runtime state (a few hundred bytes: the planner "
        "models 512 B + 16 B per step, the runtime needs less). The model file holds the int8 inference graph "
        "with the new head and the training metadata (graph, plan, QAS tables).",
        END,
    ]
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    path = os.path.join(HERE, "README.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)


def main() -> int:
    tools = mcu.check_tools()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model, label, key in RUNS:
            try:
                row = run_one(model, key, work)
            except (mcu.McuError, ValueError) as e:
                row = dict(model=model, scheme=key, error=str(e).splitlines()[0])
            row["label"] = label
            rows.append(row)
            print(f"{label} {key}: " + (row.get("error") or
                                         f"RAM {row['ram']['used']} B, flash {row['flash']['total']} B, "
                                         f"{row['instructions_per_step']} instructions/step, losses {row['losses']} "
                                         f"(host equal: {row['matches_host']})"), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    result = dict(command="python benchmarks/mcu_run.py", machine="QEMU mps2-an386 (Cortex-M4F), 256 KB RAM / 1 MB "
                  "flash link regions", tools=tools, host=platform.platform(), commit=commit, runs=rows)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mcu_run.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(rows)
    update_readme(text)
    print(text)
    return 0 if all(r.get("matches_host") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
