"""On-device training of the three seed models on an emulated Cortex-M4 inside 256 KB / 1 MB.

For MCUNet-5FPS, MobileNetV2-w0.35 and ProxylessNAS-w0.3, each with its ~100 KB published
scheme ("99kb", "99kb", "98kb") and its largest ("148kb", "138kb", "148kb"), at 128x128 with a
new 10-class float head
(SGD, lr 1e-3, seed 1): export the training .tflite, build the firmware (C++ runtime,
model and Fashion-MNIST test images in flash, static arena in RAM; linker regions 256 KB
RAM and 1 MB flash), run 3 training steps and one inference in QEMU mps2-an386
(`tflm-train mcu-run`), and record losses (checked equal to the host runtime's), RAM
(static data + arena + measured stack high-water mark), flash, and exact instruction
counts per training step and per inference, with the per-op profile (`mcu-run --profile`:
one instruction-count reading after every op) and the code size of the kernels.

Writes benchmarks/results/mcu_run.json and replaces its section of benchmarks/README.md.
Run: python benchmarks/mcu_run.py

``--grad-dtype float16`` exports with float16 activation gradients; ``--stream-input`` with the
image streamed in rows (the firmware feeds it row by row from flash, ``tt_train_step_rows``);
with ``--only MODEL:KEY ...`` a subset of the runs. Any run but the default writes
benchmarks/results/mcu_run_<grad dtype>[_streamed].json (``--out``) and leaves the README alone.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tflm_train  # noqa: E402
from tflm_train.io.train_export import export  # noqa: E402
from tflm_train.micro import mcu  # noqa: E402
from readme_section import replace_section  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
RUNS = [
    ("mcunet-5fps", "MCUNet-5FPS", "99kb"),
    ("mbv2-w0.35", "MobileNetV2-w0.35", "99kb"),
    ("proxyless-w0.3", "ProxylessNAS-w0.3", "98kb"),
    ("mcunet-5fps", "MCUNet-5FPS", "148kb"),
    ("mbv2-w0.35", "MobileNetV2-w0.35", "138kb"),
    ("proxyless-w0.3", "ProxylessNAS-w0.3", "148kb"),
]
# The paper's engine (Lin et al. 2022, Table/Fig. of training latency) on a Cortex-M7 at 216 MHz, for
# the ~100 KB schemes: cycles per training step.
PAPER_M7_CYCLES = {("mcunet-5fps", "99kb"): 118e6, ("mbv2-w0.35", "99kb"): 81e6, ("proxyless-w0.3", "98kb"): 96e6}
INPUT_SIZE, NUM_CLASSES, LR, SEED, STEPS, SAMPLES = 128, 10, 1e-3, 1, 3, 3
BEGIN, END = "<!-- mcu_run:begin -->", "<!-- mcu_run:end -->"


def run_one(model: str, key: str, work: str, grad_dtype: str = "float32", stream_input: bool = False) -> dict:
    graph = tflm_train.load(os.path.join(SHARED, "models", f"{model}.npz"), input_size=INPUT_SIZE)
    path = os.path.join(work, f"{model}_{key}_train.tflite")
    r = export(graph, os.path.join(SHARED, "schemes", f"{model}.json") + f":{key}", path, num_classes=NUM_CLASSES,
               lr=LR, seed=SEED, grad_dtype=grad_dtype, stream_input=stream_input)
    t0 = time.time()
    report = mcu.mcu_run(r.data, steps=STEPS, samples=SAMPLES, data="fmnist", profile=True)
    row = dict(model=model, scheme=key, input_size=INPUT_SIZE, num_classes=NUM_CLASSES, lr=LR, seed=SEED,
               export_command=f"tflm-train export {model}.npz --input-size {INPUT_SIZE} --scheme "
                              f"{model}.json:{key} --lr {LR} --seed {SEED} --grad-dtype {grad_dtype} "
                              + ("--stream-input " if stream_input else "") + f"-o {os.path.basename(path)}",
               grad_dtype=grad_dtype, stream_input=stream_input,
               command=f"tflm-train mcu-run {os.path.basename(path)} --steps {STEPS} --samples {SAMPLES} --profile "
                       "--json",
               file_bytes=len(r.data), plan_peak_bytes=r.plan.peak_bytes, wall_seconds=round(time.time() - t0, 1),
               **report.to_dict())
    row["embedded_samples"] = 0 if report.synthetic else len(report.labels)
    row["profile_by_type"] = {what: by_type(rows) for what, rows in report.profile.items()}
    if (model, key) in PAPER_M7_CYCLES:
        row["paper_m7_cycles_per_step"] = PAPER_M7_CYCLES[(model, key)]
    return row


def by_type(rows) -> dict:
    """Instructions per op type, largest first."""
    total: dict = {}
    for r in rows:
        total[r["type"]] = total.get(r["type"], 0) + r["instructions"]
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def kernel_code_size(opt: str = "-O2") -> dict:
    """.text bytes of the compiled kernels (Cortex-M4, before the link drops unused functions)."""
    objs = mcu.build_runtime_objects(opt)
    out = subprocess.run([mcu.TOOLS["size"], "-A", *objs], capture_output=True, text=True, check=True).stdout
    sizes, current = {}, None
    for line in out.splitlines():
        if line.endswith(":") and "(ex " in line or line.startswith(tuple(o + " " for o in objs)):
            current = line.split()[0]
        parts = line.split()
        if current and len(parts) >= 2 and parts[0].startswith(".text") and parts[1].isdigit():
            sizes[current] = sizes.get(current, 0) + int(parts[1])
    groups = {"conv_core_optimized": 0, "conv_core_reference": 0, "inference_kernels": 0, "training_kernels": 0,
              "runtime_other": 0}
    for obj, n in sizes.items():
        name = os.path.basename(obj)
        if "conv_core_optimized" in name:
            groups["conv_core_optimized"] += n
        elif "conv_core_reference" in name:
            groups["conv_core_reference"] += n
        elif name.startswith("src_train_kernels_"):
            groups["training_kernels"] += n
        elif name.startswith("src_kernels_"):
            groups["inference_kernels"] += n
        else:
            groups["runtime_other"] += n
    return groups


def kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def markdown(rows, code=None) -> str:
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
        "| samples in flash | instructions / training step | paper's M7 cycles / step | instructions / inference "
        "| losses (= host) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['scheme']} | — | — | — | — | — | — | — | — | — | — | {r['error']} |")
            continue
        losses = ", ".join(f"{v:.4f}" for v in r["losses"])
        paper = f"{int(r['paper_m7_cycles_per_step']):,}" if r.get("paper_m7_cycles_per_step") else "—"
        lines.append(
            f"| {r['label']} | {r['scheme']} | {kb(r['ram']['used'])} | {kb(r['arena_used'])} | "
            f"{kb(r['stack_high_water'])} | {kb(r['plan_peak_bytes'])} | {kb(r['flash']['total'])} | "
            f"{kb(r['file_bytes'])} | {r['embedded_samples'] or 'generated'} | "
            f"{sum(r['instructions_per_step']) // len(r['instructions_per_step']):,} | {paper} | "
            f"{r['instructions_per_inference']:,} | {losses} ({'yes' if r['matches_host'] else '**no**'}) |")
    lines += ["", "Where the instructions of a training step go (`--profile`, last step, share per op type):", "",
              "| model | scheme | top op types (share of the training step) |", "|---|---|---|"]
    for r in rows:
        if "error" in r:
            continue
        types = r["profile_by_type"]["train_step"]
        total = sum(types.values()) or 1
        top = ", ".join(f"{t} {100 * n / total:.0f}%" for t, n in list(types.items())[:6])
        lines.append(f"| {r['label']} | {r['scheme']} | {top} |")
    if code:
        lines += ["", "Kernel code (.text of the compiled objects, Cortex-M4 -O2, bytes): " +
                  ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in code.items()) + "."]
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
    replace_section(text, BEGIN, END)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grad-dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--only", nargs="+", metavar="MODEL:KEY", help="these runs only (e.g. mcunet-5fps:99kb)")
    p.add_argument("--stream-input", action="store_true", help="the image streamed in rows (export stream_input)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    default_run = args.grad_dtype == "float32" and not args.only and not args.stream_input
    name = "mcu_run.json" if default_run else \
        f"mcu_run_{args.grad_dtype}{'_streamed' if args.stream_input else ''}.json"
    out = args.out or os.path.join(HERE, "results", name)
    runs = [r for r in RUNS if not args.only or f"{r[0]}:{r[2]}" in args.only]
    tools = mcu.check_tools()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model, label, key in runs:
            try:
                row = run_one(model, key, work, args.grad_dtype, args.stream_input)
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
    code = kernel_code_size()
    result = dict(command="python benchmarks/mcu_run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  machine="QEMU mps2-an386 (Cortex-M4F), 256 KB RAM / 1 MB "
                  "flash link regions", tools=tools, host=platform.platform(), commit=commit, runs=rows,
                  kernel_code_bytes=code)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(rows, code)
    if default_run:
        update_readme(text)
    print(text)
    return 0 if all(r.get("matches_host") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
