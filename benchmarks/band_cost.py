"""Band chains on the device: planned and measured RAM, and the instructions they cost.

For the ~100 KB published schemes whose plan runs a band chain (MobileNetV2-w0.35 99kb,
ProxylessNAS-w0.3 98kb; 128x128, 10-class float head, lr 1e-3, seed 1), the training file
is exported twice, with band chains (``export(..., bands=True)``, the default) and without
(``bands=False``), and each runs in the Cortex-M4 firmware in QEMU (``mcu.mcu_run``, 2 steps,
2 embedded Fashion-MNIST samples, ``--profile``). Reported: the planned peak, the device's
RAM (data + bss incl. the arena + stack high-water), arena and stack, instructions per
training step and per inference, and the instructions of the chain's ops in both files
(per-step profile of the last training step; a banded chain runs at its last step): the
difference is what band execution costs (window memmoves, one kernel call per op and band;
no row is computed twice). Losses equal the host runtime's in every run (asserted).

Writes benchmarks/results/band_cost.json and prints a Markdown table.
Run: python benchmarks/band_cost.py   (about 10-15 minutes on 2 shared cores)
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tflm_train  # noqa: E402
from tflm_train.io.train_export import export  # noqa: E402
from tflm_train.micro import mcu  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
CASES = (("mbv2-w0.35", "99kb"), ("proxyless-w0.3", "98kb"))
INPUT_SIZE, LR, SEED, STEPS, SAMPLES = 128, 1e-3, 1, 2, 2


def run(model: str, key: str, bands: bool) -> dict:
    graph = tflm_train.load(os.path.join(SHARED, "models", f"{model}.npz"), input_size=INPUT_SIZE)
    r = export(graph, os.path.join(SHARED, "schemes", f"{model}.json") + f":{key}", lr=LR, seed=SEED, bands=bands)
    rep = mcu.mcu_run(r.data, steps=STEPS, samples=SAMPLES, data="fmnist", profile=True)
    assert rep.matches_host, (rep.losses, rep.host_losses)
    chains = [[r.plan.steps[k].op for k in range(f, last + 1) if r.plan.steps[k].mode == "band"]
              for f, last, _ in r.plan.bands]
    # instructions per op of the graph (profile rows are per executed step of the last training step)
    per_op = {r.plan.steps[row["step"]].op: row["instructions"] for row in rep.profile["train_step"]}
    return dict(model=model, scheme=key, bands=bands, chains=r.plan.bands, chain_ops=chains,
                plan_peak_bytes=r.plan.peak_bytes, plan_arena_bytes=r.plan.arena_bytes, file_bytes=len(r.data),
                ram_used=rep.ram["used"], arena_used=rep.arena_used, stack_high_water=rep.stack_high_water,
                instructions_per_step=rep.instructions_per_step,
                instructions_per_inference=rep.instructions_per_inference, losses=rep.losses,
                host_losses=rep.host_losses, per_op=per_op)


def op_instructions(row: dict, ops) -> int:
    return sum(n for op, n in row["per_op"].items() if op in ops)


def main() -> int:
    rows = []
    for model, key in CASES:
        on, off = run(model, key, True), run(model, key, False)
        ops = {op for chain in on["chain_ops"] for op in chain}
        for row in (on, off):
            row["chain_op_instructions"] = op_instructions(row, ops)
        on["band_cost_instructions"] = on["chain_op_instructions"] - off["chain_op_instructions"]
        rows += [on, off]
        print(f"{model} {key}: planned {on['plan_peak_bytes']} vs {off['plan_peak_bytes']}, RAM used "
              f"{on['ram_used']} vs {off['ram_used']}, chain ops {on['chain_op_instructions']} vs "
              f"{off['chain_op_instructions']}", file=sys.stderr)
    for r in rows:
        r.pop("per_op")
    doc = dict(command="python benchmarks/band_cost.py", host=platform.platform(),
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip(),
               setting=dict(input=[INPUT_SIZE, INPUT_SIZE, 3], num_classes=10, head="float", lr=LR, seed=SEED,
                            steps=STEPS, samples=SAMPLES), rows=rows)
    with open(os.path.join(HERE, "results", "band_cost.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print("| model | scheme | bands | planned peak (KB) | RAM used (KB) | arena (KB) | stack (KB) "
          "| instructions / step | chain ops' instructions | band cost |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cost = r.get("band_cost_instructions")
        print(f"| {r['model']} | {r['scheme']} | {'on ' + str(r['chains']) if r['bands'] else 'off'} "
              f"| {r['plan_peak_bytes'] / 1024:.1f} | {r['ram_used'] / 1024:.1f} | {r['arena_used'] / 1024:.1f} "
              f"| {r['stack_high_water'] / 1024:.1f} | {r['instructions_per_step'][-1] / 1e6:.2f} M "
              f"| {r['chain_op_instructions'] / 1e6:.2f} M | "
              + ("" if cost is None else f"{cost / 1e6:+.2f} M ({cost / max(1, r['instructions_per_step'][-1]):+.1%})")
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
