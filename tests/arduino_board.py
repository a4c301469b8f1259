"""Build an Arduino sketch of a generated TinyTrainer library for the test board, and run it.

The test board is the QEMU mps2-an386 Cortex-M4F firmware of tflm_train/micro/mcu.py (its
startup code, semihosting console and linker script: 1 MB flash, 256 KB RAM) with the small
Arduino API layer in tests/arduino_api (setup/loop, Serial, millis, digitalRead, FlashIAP).

Sources compile as the Arduino Mbed OS core of the Nano 33 BLE compiles libraries and
sketches (its variants/ARDUINO_NANO33BLE/cxxflags.txt: GNU C++14, unsigned char, -Os,
softfp float ABI), and a sketch is preprocessed as an Arduino build does: `#include
<Arduino.h>` in front of the .ino, compiled as C++.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
from typing import Dict, List, Optional, Sequence

from tflm_train.micro import mcu

API_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "arduino_api")
ARCH_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=softfp"]
CORE_FLAGS = ARCH_FLAGS + ["-Os", "-g1", "-Wall", "-Wextra", "-Wno-unused-parameter",
                           "-Wno-missing-field-initializers", "-ffunction-sections", "-fdata-sections",
                           "-funsigned-char", "-fno-exceptions", "-fomit-frame-pointer", "-Werror"]
CXX_FLAGS = ["-std=gnu++14", "-fno-rtti", "-Wvla", "-fno-threadsafe-statics"]
C_FLAGS = ["-std=gnu11"]
FLASH_FILE_BYTES = 1 << 20  # the FlashIAP of tests/arduino_api


def _compile(job):
    src, obj, includes = job
    if os.path.exists(obj) and os.path.getmtime(obj) > os.path.getmtime(src):
        return obj  # built before in this build folder (the tests use a fresh one)
    is_c = src.endswith(".c")
    tool = mcu.TOOLS["cc"] if is_c else mcu.TOOLS["cxx"]
    flags = CORE_FLAGS + (C_FLAGS if is_c else CXX_FLAGS) + [f"-I{d}" for d in includes]
    mcu._run([tool, *flags, "-c", src, "-o", obj], f"compiling {src}")
    return obj


def compile_all(sources: Sequence[str], build_dir: str, root: str, includes: Sequence[str]) -> List[str]:
    """Objects of ``sources`` (named after their path under ``root``), two at a time."""
    os.makedirs(build_dir, exist_ok=True)
    jobs = [(s, os.path.join(build_dir, os.path.relpath(s, root).replace(os.sep, "_") + ".o"), includes)
            for s in sources]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(_compile, jobs))


def library_sources(lib_dir: str) -> List[str]:
    """What an Arduino build compiles of a 1.5-format library: src/ and its subfolders."""
    found = []
    for d, _, names in os.walk(os.path.join(lib_dir, "src")):
        found += [os.path.join(d, n) for n in names if n.endswith((".c", ".cpp", ".S"))]
    return sorted(found)


def build_library(lib_dir: str, build_dir: str) -> List[str]:
    """The library and the test board's core (Arduino API layer, startup, semihosting)."""
    includes = [API_DIR, os.path.join(lib_dir, "src"), mcu.PORT]
    board = sorted(os.path.join(API_DIR, f) for f in os.listdir(API_DIR) if f.endswith((".c", ".cpp")))
    board += [os.path.join(mcu.PORT, "startup.c"), os.path.join(mcu.PORT, "semihosting.c")]
    return (compile_all(library_sources(lib_dir), os.path.join(build_dir, "library"), lib_dir, includes)
            + compile_all(board, os.path.join(build_dir, "core"), os.path.dirname(mcu.PORT), includes))


def build_sketch(lib_dir: str, example: str, objects: Sequence[str], build_dir: str,
                 ram_bytes: int = mcu.RAM_BYTES) -> str:
    """The firmware ELF of ``examples/<example>/<example>.ino`` (``ram_bytes``: the RAM region of the
    link; more than the 256 KB budget only to measure what a larger model needs)."""
    sketch = os.path.join(lib_dir, "examples", example, example + ".ino")
    out = os.path.join(build_dir, example)
    os.makedirs(out, exist_ok=True)
    cpp = os.path.join(out, example + ".ino.cpp")
    with open(sketch) as f, open(cpp, "w") as g:
        g.write(f'#include <Arduino.h>\n#line 1 "{sketch}"\n' + f.read())
    obj = compile_all([cpp], out, out, [API_DIR, os.path.join(lib_dir, "src")])
    return mcu.link_elf([*objects, *obj], os.path.join(out, example + ".elf"), ram_bytes=ram_bytes,
                        arch_flags=ARCH_FLAGS)


def memory(elf: str) -> Dict[str, int]:
    """RAM (.data + .bss, the stack aside) and flash bytes of the image."""
    s = mcu.section_sizes(elf)
    flash = sum(s.get(k, 0) for k in (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx",
                                      ".init_array", ".data"))
    return {"ram_static": s.get(".data", 0) + s.get(".bss", 0), "flash": flash, "init_array": s.get(".init_array", 0)}


def hex_line(command: str, label: Optional[int], image) -> str:
    parts = [command] + ([str(int(label))] if label is not None else []) + [image.tobytes().hex()]
    return " ".join(parts)


def run_sketch(elf: str, work_dir: str, serial_lines: Sequence[str], timeout: float = 300.0) -> List[str]:
    """Power the board up with ``serial_lines`` arriving on Serial; its Serial output lines.
    ``work_dir/flash.bin`` is the flash chip: created erased, kept across runs (resets)."""
    os.makedirs(work_dir, exist_ok=True)
    with open(os.path.join(work_dir, "serial_in.txt"), "w") as f:
        f.write("".join(line + "\n" for line in serial_lines))
    flash = os.path.join(work_dir, "flash.bin")
    if not os.path.exists(flash):
        with open(flash, "wb") as f:
            f.write(b"\xff" * FLASH_FILE_BYTES)
    console, _ = mcu.run_qemu(elf, timeout, cwd=work_dir, count_instructions=False)
    lines = [line.rstrip("\r") for line in console.splitlines()]
    errors = [line for line in lines if line.startswith(("TT error", "TT fault"))]
    if errors:
        raise mcu.McuError(f"{os.path.basename(elf)}: {errors[0]}\n" + "\n".join(lines[-20:]))
    return lines


_NUMBER = r"(-?[0-9.]+|nan|inf)"
STEP_LINE = re.compile(rf"^step (\d+) label (\d+)(?: predicted (-?\d+))? loss {_NUMBER} running loss {_NUMBER}"
                       rf"(?: running accuracy {_NUMBER}%)?$")
HELD_OUT_LINE = re.compile(r"^held-out accuracy ([0-9.]+)% \((\d+)/(\d+)\)$")
EPOCH_LINE = re.compile(rf"^epoch (\d+)/(\d+) loss {_NUMBER} \((\d+) ms\)$")
