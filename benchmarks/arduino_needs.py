"""RAM and flash a TinyTrainer sketch needs, per model and scheme: the README's board table.

For each model and sparse scheme: export the training .tflite (``tflm_train.export``: the
planner's arena), generate the Arduino library (``tflm-train arduino``), build the
LearnNewClasses example as tests/test_arduino.py does (the Nano 33 BLE core's flags, the
test board's Arduino API layer, the 1 MB flash linker script, RAM region raised to 4 MB so
that a model beyond 256 KB still links and is measured) and run it in QEMU on two
Fashion-MNIST-like images (one training step, one prediction) for the stack high-water mark.

RAM = .data + .bss (TinyTrainer's arena, the sketch's line buffer and image, the API layer)
+ the measured stack; flash = code + constants + the model. The Arduino core itself (Mbed OS:
its RTOS, USB serial, drivers) needs RAM and flash on top; it is not part of these numbers.

Writes benchmarks/results/arduino_needs.json and prints the Markdown table.
Run: python benchmarks/arduino_needs.py
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

import numpy as np  # noqa: E402

import tflm_train  # noqa: E402
from tests import arduino_board as board  # noqa: E402
from tflm_train.arduino import write_library  # noqa: E402
from tflm_train.io.train_export import export  # noqa: E402
from tflm_train.micro import mcu  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
BACKBONE = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
BACKBONE_SCHEMES = os.path.join(REPO, "examples", "schemes", "fmnist_backbone.json")
# (model label, loader, scheme spellings): the bundled backbone and the seed models with their
# published schemes at the smallest, middle and largest budget.
CASES = [("fmnist_backbone 32x32x1", lambda: tflm_train.load(BACKBONE),
          ["bias-only", "last-2", BACKBONE_SCHEMES + ":sparse"])]
for _name, _keys in (("mcunet-5fps", ("49kb", "99kb", "148kb")), ("mbv2-w0.35", ("49kb", "99kb", "138kb")),
                     ("proxyless-w0.3", ("49kb", "98kb", "148kb"))):
    CASES.append((f"{_name} 128x128x3", (lambda n=_name: tflm_train.load(os.path.join(SHARED, "models", n + ".npz"),
                                                                         input_size=128)),
                  [os.path.join(SHARED, "schemes", _name + ".json") + ":" + k for k in _keys]))
# What a sketch may use, in KB (RAM, flash), before the core's own needs: the Nano 33 BLE's
# Mbed core places sketches at 0x10000 with APPLICATION_SIZE 0xf0000 (960 KB) and 256 KB RAM;
# the STM32H747 boards' Cortex-M7 has 512 KB of AXI SRAM and 1 MB of flash with the default
# 1 MB + 1 MB split between its two cores; the RP2040 has 264 KB of SRAM and 16 MB of QSPI flash
# (a Cortex-M0+: no FPU, the float32 training runs in software).
BOARDS = {"Nano 33 BLE": (256, 960), "Nano RP2040 Connect": (264, 16384),
          "Portenta H7 / Nicla Vision / GIGA R1 (M7)": (512, 1024)}
NUM_CLASSES = 4
MEASURE_RAM = 4 << 20


def measure(model_path: str, objects, work: str) -> dict:
    lib = os.path.join(work, "TinyTrainer")
    facts = write_library(model_path, lib)
    model_obj = board.compile_all([os.path.join(lib, "src", "TinyTrainerModel.cpp")], os.path.join(work, "model"),
                                  lib, [board.API_DIR, os.path.join(lib, "src")])
    others = [o for o in objects if not o.endswith("TinyTrainerModel.cpp.o")]
    out = os.path.join(work, "sketch")
    row = dict(model_bytes=facts.model_bytes, arena_bytes=facts.arena_bytes)
    try:
        elf = board.build_sketch(lib, "LearnNewClasses", others + model_obj, out, ram_bytes=MEASURE_RAM)
    except mcu.FirmwareTooLarge as e:
        row.update(flash_bytes=mcu.FLASH_BYTES + e.overflow if e.region == "FLASH" else None, fits_link=False)
        return row
    mem = board.memory(elf)
    rng = np.random.default_rng(0)
    image = rng.integers(-128, 128, int(np.prod(facts.input_shape)), dtype=np.int8)
    lines = board.run_sketch(elf, os.path.join(work, "run"), [board.hex_line("T", 0, image),
                                                              board.hex_line("E", 0, image), "R"], timeout=900)
    stack = next(int(l.split("=")[1].split()[0]) for l in lines if l.startswith("TT stack high_water="))
    assert any(l.startswith("step 1 ") for l in lines), lines[-5:]
    row.update(flash_bytes=mem["flash"], ram_static_bytes=mem["ram_static"], stack_bytes=stack,
               ram_bytes=mem["ram_static"] + stack, fits_link=True)
    return row


def main() -> int:
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model0 = os.path.join(tmp, "first.tflite")
        export(CASES[0][1](), CASES[0][2][0], model0, num_classes=NUM_CLASSES)
        write_library(model0, os.path.join(tmp, "base"))
        objects = board.build_library(os.path.join(tmp, "base"), os.path.join(tmp, "build"))
        for label, load, schemes in CASES:
            graph = load()
            for scheme in schemes:
                path = os.path.join(tmp, "train.tflite")
                r = export(graph, scheme, path, num_classes=NUM_CLASSES)
                work = tempfile.mkdtemp(dir=tmp)
                row = dict(model=label, scheme=os.path.basename(scheme), planned_peak_bytes=r.plan.peak_bytes,
                           **measure(path, objects, work))
                rows.append(row)
                print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    for row in rows:
        row["boards"] = boards(row)
    result = dict(command="python benchmarks/arduino_needs.py", commit=commit, board_limits_kb=BOARDS,
                  machine=f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
                  note="the sketch alone (LearnNewClasses, 4 classes) on the test board; the Arduino core's own "
                       "RAM and flash come on top", seconds=round(time.time() - t0, 1), rows=rows)
    with open(os.path.join(HERE, "results", "arduino_needs.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(table(rows))
    return 0


def boards(row) -> list:
    """The boards whose sketch memory holds the row's RAM and flash."""
    return [b for b, (ram_kb, flash_kb) in BOARDS.items() if row.get("fits_link") and
            row["ram_bytes"] <= ram_kb * 1024 and row["flash_bytes"] <= flash_kb * 1024]


def table(rows) -> str:
    kb = lambda b: "-" if b is None else f"{b / 1024:.0f} KB"  # noqa: E731
    out = ["| model | scheme | model in flash | arena | sketch RAM (incl. stack) | sketch flash | fits |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        fits = ", ".join(boards(r)) or "none of these"
        out.append(f"| {r['model']} | {r['scheme']} | {kb(r['model_bytes'])} | {kb(r['arena_bytes'])} | "
                   f"{kb(r.get('ram_bytes'))} | {kb(r.get('flash_bytes'))} | {fits} |")
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:  # the table of the committed results
        with open(os.path.join(HERE, "results", "arduino_needs.json")) as f:
            print(table(json.load(f)["rows"]))
        raise SystemExit(0)
    raise SystemExit(main())
