"""Run a model on an emulated Cortex-M4: firmware build and QEMU (mps2-an386) run.

``run_model(model_bytes, inputs)`` builds a firmware image with arm-none-eabi-g++
(Cortex-M4F, hard float, no exceptions/RTTI, newlib-nano, semihosting): the C++
micro runtime, the model bytes and the input samples as constant arrays in
flash, the arena as a static buffer in RAM. The linker script
(``micro_ops/port/cortex_m/linker.ld``) gives 1 MB of flash and 256 KB of RAM:
an image that does not fit fails to link (:class:`FirmwareTooLarge`).

QEMU's ``mps2-an386`` machine (Cortex-M4 with FPU) has 4 MB of SSRAM at 0x0,
where the image's "flash" lives, and SSRAM at 0x20000000, where its RAM is;
the linker regions, not the board, set the budget. The firmware prints its
results over semihosting. Instruction counts are exact: a small QEMU TCG plugin
(``micro_ops/tools/qemu_icount_plugin.c``, built here with the host compiler)
counts every executed guest instruction and records the count each time the
firmware calls its marker function ``tt_mark``; a built-in calibration (a loop
of exactly 2001 instructions between two markers) is checked on every run.

Memory figures: RAM = .data + .bss (which holds the static arena) + the stack
actually used (measured by painting the stack at reset); flash = everything
loaded into the flash region (code, constants, the model, the samples, the
initial values of .data), from the ELF section sizes.

    python -m tflm_train.micro.mcu model.tflite [--samples N]
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["McuError", "FirmwareTooLarge", "McuReport", "McuTrainReport", "check_tools", "run_model", "run_training",
           "synthetic_image", "FLASH_BYTES", "RAM_BYTES"]

MICRO_OPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "micro_ops")
PORT = os.path.join(MICRO_OPS, "port", "cortex_m")
PLUGIN_SOURCE = os.path.join(MICRO_OPS, "tools", "qemu_icount_plugin.c")

FLASH_BYTES = 1 << 20
RAM_BYTES = 256 << 10
DEFAULT_STACK_BYTES = 16 << 10
#: Argument bounds of a training run (``mcu_run`` / ``tflm-train mcu-run``): QEMU mps2-an386 has
#: 4 MB of RAM at 0x20000000; below 32 KB not even the stack and the runtime state fit.
MAX_STEPS = 1000
MIN_RAM_KB, MAX_RAM_KB = 32, 4096
#: QEMU's time limit scales with the work: at most this many guest instructions per MAC of the
#: inference graph for a training step (measured: 27-35 for the seed models' largest published
#: schemes, 6.5 for the bundled backbone's last-2) or an inference (13-16; 5.5), at no fewer than
#: QEMU_MIN_SPEED instructions per second (benchmarks/results/mcu_run.json: 80-215 M/s with the
#: counting plugin, builds included), plus a fixed allowance.
STEP_INSTRUCTIONS_PER_MAC, INFERENCE_INSTRUCTIONS_PER_MAC = 100, 40
QEMU_MIN_SPEED = 10_000_000
QEMU_BASE_SECONDS = 120.0
#: Bytes dropped beyond the linker's "FLASH overflowed by N bytes" when samples are removed to fit.
FLASH_OVERFLOW_MARGIN = 4096
CALIBRATION_INSTRUCTIONS = 2001  # the loop between markers 2 and 3 in firmware_main.cc

TOOLS = {"cxx": "arm-none-eabi-g++", "cc": "arm-none-eabi-gcc", "size": "arm-none-eabi-size",
         "nm": "arm-none-eabi-nm", "qemu": "qemu-system-arm", "host_cc": "gcc"}
ARCH_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
# -ffp-contract=off: no fused multiply-add (the float32 training arithmetic is specified op by op).
COMMON_FLAGS = ARCH_FLAGS + ["-ffunction-sections", "-fdata-sections", "-ffp-contract=off", "-Wall", "-Wextra", "-g"]
CXX_FLAGS = ["-std=c++17", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics", "-fno-use-cxa-atexit"]
C_FLAGS = ["-std=c11"]
LINK_FLAGS = ARCH_FLAGS + ["-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections"]


class McuError(RuntimeError):
    """The firmware could not be built or run (missing tool, compile error, QEMU failure)."""


class FirmwareTooLarge(McuError):
    """The image does not fit the device: ``region`` ("RAM" or "FLASH") overflowed by ``overflow`` bytes."""

    def __init__(self, region: str, overflow: int, budget: int, detail: str):
        self.region, self.overflow, self.budget = region, overflow, budget
        super().__init__(
            f"firmware does not fit: {region} ({budget // 1024} KB) overflowed by {overflow} bytes; {detail}")


@dataclass
class McuReport:
    """What one QEMU run of the firmware measured."""

    outputs: List[np.ndarray]
    host_outputs: List[np.ndarray]
    instructions_per_inference: List[int]
    init_instructions: int
    arena_used: int               # tt_arena_used on the device
    arena_buffer: int             # size of the static arena in .bss
    stack_high_water: int
    stack_reserved: int
    ram: Dict[str, int]
    flash: Dict[str, int]
    sections: Dict[str, int]
    elf: str
    console: str = field(repr=False, default="")

    @property
    def matches_host(self) -> bool:
        return len(self.outputs) == len(self.host_outputs) and all(
            a.tobytes() == b.tobytes() for a, b in zip(self.outputs, self.host_outputs))

    def summary(self) -> str:
        ins = self.instructions_per_inference
        return (
            f"outputs match host: {self.matches_host}; instructions per inference: "
            f"{', '.join(str(n) for n in ins)} (init {self.init_instructions}); arena {self.arena_used} B; "
            f"RAM used {self.ram['used']} B of {self.ram['region']} "
            f"(data {self.ram['data']}, bss {self.ram['bss']} incl. "
            f"arena {self.arena_buffer}, stack high-water {self.stack_high_water} of {self.stack_reserved} reserved); "
            f"flash {self.flash['total']} B of {FLASH_BYTES} (model {self.flash['model']}, "
            f"code+constants {self.flash['total'] - self.flash['model'] - self.flash['samples']})"
        )


# --------------------------------------------------------------------------- tools
def check_tools() -> Dict[str, str]:
    """First line of ``--version`` of each tool; McuError naming what is missing."""
    versions, missing = {}, []
    for key, tool in TOOLS.items():
        path = shutil.which(tool)
        if not path:
            missing.append(tool)
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True)
        versions[key] = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else tool
    if missing:
        raise McuError(
            "missing tools: " + ", ".join(missing)
            + " (Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
              "qemu-system-arm gcc)")
    return versions


def _run(cmd: Sequence[str], what: str, timeout: Optional[float] = None, cwd: Optional[str] = None):
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise McuError(f"{what}: timed out after {timeout} s") from None
    except FileNotFoundError as e:
        raise McuError(f"{what}: {e}") from None
    if proc.returncode != 0:
        raise McuError(f"{what} failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-4000:]}")
    return proc


def cache_dir() -> str:
    """Where compiled objects and the plugin are kept: $TFLM_TRAIN_CACHE or <repo>/.tflm_cache."""
    root = os.environ.get("TFLM_TRAIN_CACHE") or os.path.join(os.path.dirname(os.path.dirname(MICRO_OPS)),
                                                              ".tflm_cache")
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, ".write_test")
        open(probe, "w").close()
        os.remove(probe)
    except OSError:
        root = os.path.join(tempfile.gettempdir(), "tflm_train_cache")
        os.makedirs(root, exist_ok=True)
    return root


def library_sources() -> List[str]:
    """The runtime library's C++ sources (src/ and its subfolders: kernels, train), sorted."""
    src = os.path.join(MICRO_OPS, "src")
    files = []
    for d, _, names in os.walk(src):
        files += [os.path.join(d, f) for f in names if f.endswith(".cc")]
    return sorted(files)


def runtime_sources() -> List[str]:
    return library_sources() + [os.path.join(PORT, f) for f in ("startup.c", "semihosting.c", "markers.cc")]


def _digest(paths: Sequence[str], extra: Sequence[str]) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for p in paths:
        h.update(p.encode())
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def _compile(src: str, obj: str, opt: str, includes: Sequence[str]) -> None:
    is_c = src.endswith(".c")
    tool = TOOLS["cc"] if is_c else TOOLS["cxx"]
    flags = COMMON_FLAGS + [opt] + (C_FLAGS if is_c else CXX_FLAGS) + [f"-I{d}" for d in includes]
    _run([tool, *flags, "-c", src, "-o", obj], f"compiling {os.path.relpath(src, MICRO_OPS)}")


def build_runtime_objects(opt: str = "-O2", progress=None) -> List[str]:
    """The runtime and startup code compiled for the Cortex-M4 (cached by source content and flags).
    ``progress``: called with a line before a (slow) compilation, not for a cached build."""
    sources = runtime_sources()
    headers = []
    for d, _, files in os.walk(MICRO_OPS):
        headers += [os.path.join(d, f) for f in files if f.endswith(".h")]
    key = _digest(sources + sorted(headers), [opt] + COMMON_FLAGS + CXX_FLAGS + C_FLAGS)
    out = os.path.join(cache_dir(), "mcu", key)
    objs = [os.path.join(out, os.path.relpath(s, MICRO_OPS).replace(os.sep, "_") + ".o") for s in sources]
    if all(os.path.exists(o) for o in objs):
        return objs
    os.makedirs(out, exist_ok=True)
    if progress is not None:
        progress(f"compiling the runtime for the Cortex-M4 ({len(sources)} sources, {opt}; cached afterwards in "
                 f"{out})")
    includes = [os.path.join(MICRO_OPS, "include"), PORT]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        # a per-process temporary name: two runs building the same cache entry at once do not collide
        tmp = f".{os.getpid()}.tmp"
        for f in [pool.submit(_compile, s, o + tmp, opt, includes) for s, o in zip(sources, objs)]:
            f.result()
    for o in objs:
        os.replace(o + tmp, o)
    return objs


def build_plugin() -> str:
    """The instruction-count QEMU plugin as a host shared library (cached)."""
    key = _digest([PLUGIN_SOURCE], [TOOLS["host_cc"]])
    path = os.path.join(cache_dir(), f"qemu_icount_plugin_{key}.so")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        _run([TOOLS["host_cc"], "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, PLUGIN_SOURCE],
             "building the QEMU instruction-count plugin")
        os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- firmware
def _c_array(name: str, data: bytes, align: int = 16) -> str:
    rows = []
    for i in range(0, len(data), 24):
        rows.append("  " + ",".join(f"0x{b:02x}" for b in data[i:i + 24]) + ",")
    body = "\n".join(rows) if rows else "  0"
    return f"alignas({align}) extern const uint8_t {name}[] = {{\n{body}\n}};\n"


def write_firmware_data(model: bytes, samples: Sequence[np.ndarray], output_bytes: int, arena_bytes: int,
                        out_dir: str) -> str:
    """firmware_data.h/.cc: the model and input samples as flash arrays, and the build's sizes."""
    sample_bytes = [np.ascontiguousarray(s).tobytes() for s in samples]
    if not sample_bytes or len({len(b) for b in sample_bytes}) != 1:
        raise ValueError("give one or more input samples of the same size")
    header = (
        "// Generated by tflm_train.micro.mcu: the model and samples embedded in flash.\n"
        "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
        f"#define TT_FW_ARENA_BYTES {int(arena_bytes)}u\n"
        f"#define TT_FW_SAMPLES {len(sample_bytes)}u\n"
        f"#define TT_FW_INPUT_BYTES {len(sample_bytes[0])}u\n"
        f"#define TT_FW_OUTPUT_BYTES {int(output_bytes)}u\n"
        "extern const uint8_t tt_fw_model[];\nextern const size_t tt_fw_model_len;\n"
        "extern const uint8_t tt_fw_inputs[];\n"
    )
    with open(os.path.join(out_dir, "firmware_data.h"), "w") as f:
        f.write(header)
    source = os.path.join(out_dir, "firmware_data.cc")
    _write_if_changed(source, DATA_PREAMBLE + _c_array("tt_fw_model", model)
                      + f"extern const size_t tt_fw_model_len = {len(model)};\n\n"
                      + _c_array("tt_fw_inputs", b"".join(sample_bytes)))
    return source


#: The generated arrays' source includes no generated header: its object only changes with the
#: model and samples (not with the arena size or step count), and is compiled once for both
#: builds of a run (``_compile_cached``).
DATA_PREAMBLE = "// Generated by tflm_train.micro.mcu: arrays in flash.\n#include <stddef.h>\n#include <stdint.h>\n\n"


def _write_if_changed(path: str, text: str) -> None:
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return
    with open(path, "w") as f:
        f.write(text)


def _compile_cached(src: str, obj: str, opt: str, includes: Sequence[str]) -> None:
    """``_compile`` unless ``obj`` was compiled from the same source bytes and flags."""
    key = _digest([src], [opt] + COMMON_FLAGS + CXX_FLAGS + list(includes))
    stamp = obj + ".key"
    if os.path.exists(obj) and os.path.exists(stamp) and open(stamp).read() == key:
        return
    _compile(src, obj, opt, includes)
    with open(stamp, "w") as f:
        f.write(key)


_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def link_firmware(objs: Sequence[str], out_dir: str, opt: str, stack_bytes: int, ram_bytes: int = RAM_BYTES,
                  main_source: str = "firmware_main.cc") -> str:
    includes = [os.path.join(MICRO_OPS, "include"), PORT, out_dir]
    extra = []
    for src in (os.path.join(PORT, main_source), os.path.join(out_dir, "firmware_data.cc")):
        obj = os.path.join(out_dir, os.path.basename(src) + ".o")
        (_compile_cached if src.endswith("firmware_data.cc") else _compile)(src, obj, opt, includes)
        extra.append(obj)
    return link_elf([*objs, *extra], os.path.join(out_dir, "firmware.elf"), stack_bytes, ram_bytes)


def link_elf(objs: Sequence[str], elf: str, stack_bytes: int = DEFAULT_STACK_BYTES, ram_bytes: int = RAM_BYTES,
             arch_flags: Sequence[str] = ARCH_FLAGS) -> str:
    """Link objects into ``elf`` with the device's linker script (1 MB flash, ``ram_bytes`` RAM); a map file
    beside it. ``arch_flags``: those the objects were compiled with (they select the C library's variant).
    An image that does not fit raises :class:`FirmwareTooLarge`."""
    link_flags = list(arch_flags) + LINK_FLAGS[len(ARCH_FLAGS):]
    cmd = [TOOLS["cxx"], *link_flags, f"-T{os.path.join(PORT, 'linker.ld')}",
           f"-Wl,--defsym=TT_STACK_BYTES={int(stack_bytes)}", f"-Wl,-Map={os.path.splitext(elf)[0] + '.map'}",
           *([f"-Wl,--defsym=TT_RAM_BYTES={int(ram_bytes)}"] if ram_bytes != RAM_BYTES else []),
           *objs, "-lm", "-o", elf]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        overflows = _OVERFLOW.findall(proc.stderr)
        if overflows:
            region, n = max(overflows, key=lambda r: int(r[1]))
            detail = "linker: " + "; ".join(f"region {r} overflowed by {b} bytes" for r, b in overflows)
            raise FirmwareTooLarge(region, int(n), ram_bytes if region == "RAM" else FLASH_BYTES, detail)
        raise McuError(f"linking the firmware failed:\n{proc.stderr[-4000:]}")
    return elf


def section_sizes(elf: str) -> Dict[str, int]:
    out = _run([TOOLS["size"], "-A", elf], "arm-none-eabi-size").stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def symbol_address(elf: str, name: str) -> int:
    out = _run([TOOLS["nm"], elf], "arm-none-eabi-nm").stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise McuError(f"{elf}: symbol {name} not found")


def run_qemu(elf: str, timeout: float = 300.0, cwd: Optional[str] = None, count_instructions: bool = True):
    """Run the firmware; returns (console text, marker readings). ``cwd``: where the firmware's
    semihosting file operations happen; ``count_instructions=False``: no plugin, no readings."""
    with tempfile.TemporaryDirectory() as tmp:
        counts = os.path.join(tmp, "marks.txt")
        cmd = [TOOLS["qemu"], "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null",
               "-semihosting-config", "enable=on,target=native", "-kernel", elf]
        if count_instructions:
            cmd += ["-plugin", f"{build_plugin()},mark={symbol_address(elf, 'tt_mark'):#x},out={counts}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise McuError(f"QEMU did not finish within {timeout} s") from None
        console = proc.stdout + proc.stderr
        if proc.returncode != 0 or "TT end" not in console:
            raise McuError(f"firmware run failed (QEMU exit {proc.returncode}):\n{console[-3000:]}")
        readings = []
        if os.path.exists(counts):
            for line in open(counts):
                if line.strip().isdigit():
                    readings.append(int(line))
    return console, readings


# --------------------------------------------------------------------------- the whole run
_INIT_LINE = re.compile(r"^TT init (-?\d+) arena_used=(\d+) arena_size=(\d+) ?(.*)$")
_OUTPUT_LINE = re.compile(r"^TT output (\d+) ([0-9a-f]*)$")
_STACK_LINE = re.compile(r"^TT stack high_water=(\d+) reserved=(\d+)$")


def _parse_console(console: str) -> Dict:
    """The firmware's "TT ..." lines (see port/cortex_m/firmware_main.cc)."""
    facts = {"outputs": {}}
    for line in console.splitlines():
        line = line.rstrip("\r")
        if m := _INIT_LINE.match(line):
            facts.update(init_status=int(m[1]), arena_used=int(m[2]), init_message=m[4])
        elif m := _OUTPUT_LINE.match(line):
            facts["outputs"][int(m[1])] = bytes.fromhex(m[2])
        elif m := _STACK_LINE.match(line):
            facts.update(stack_high_water=int(m[1]), stack_reserved=int(m[2]))
        elif line.startswith("TT error ") or line.startswith("TT fault "):
            facts["error"] = line[3:]
    return facts


def _build_and_run(model: bytes, samples, output_bytes, arena_bytes, opt, stack_bytes, ram_bytes, work_dir,
                   timeout):
    objs = build_runtime_objects(opt)
    write_firmware_data(model, samples, output_bytes, arena_bytes, work_dir)
    elf = link_firmware(objs, work_dir, opt, stack_bytes, ram_bytes)
    sections = section_sizes(elf)
    if sections.get(".init_array", 0):
        raise McuError("the firmware has global constructors (.init_array is not empty); the runtime must not")
    console, readings = run_qemu(elf, timeout)
    return elf, sections, console, readings, _parse_console(console)


def run_model(model_bytes, inputs: Sequence[np.ndarray], *, arena_bytes: Optional[int] = None, opt: str = "-O2",
              stack_bytes: int = DEFAULT_STACK_BYTES, ram_bytes: int = RAM_BYTES, work_dir: Optional[str] = None,
              timeout: float = 300.0) -> McuReport:
    """Build the firmware for ``model_bytes`` with ``inputs`` (one array per sample, the model's
    single input) embedded, run it in QEMU and report outputs, instructions, RAM and flash.

    ``arena_bytes=None``: the static arena is sized exactly: a first run with the host
    runtime's figure (an upper bound: host pointers are wider), then a second with what the
    device reported it uses. ``ram_bytes``: the RAM region of the link (the device budget,
    256 KB; larger only to measure what a model that does not fit would need).
    """
    from . import Interpreter

    check_tools()
    model = bytes(model_bytes)
    host = Interpreter(model)
    if len(host.input_details) != 1 or len(host.output_details) != 1:
        raise ValueError("run_model supports single-input, single-output models")
    d_in, d_out = host.input_details[0], host.output_details[0]
    samples = []
    for x in inputs:
        x = np.ascontiguousarray(x)
        if x.dtype != d_in["dtype"] or x.nbytes != d_in["bytes"]:
            raise ValueError(f"input sample {x.dtype}{list(x.shape)} does not match the model input "
                             f"{d_in['dtype']}{list(d_in['shape'])}")
        samples.append(x)
    host_outputs = [host.infer(x) for x in samples]

    own_dir = work_dir is None
    work = tempfile.mkdtemp(prefix="tflm_fw_") if own_dir else work_dir
    os.makedirs(work, exist_ok=True)
    try:
        size = int(arena_bytes) if arena_bytes is not None else host.infer_arena_bytes
        elf, sections, console, readings, facts = _build_and_run(model, samples, d_out["bytes"], size, opt,
                                                                 stack_bytes, ram_bytes, work, timeout)
        if arena_bytes is None and facts.get("init_status") in (0, 3) and facts.get("arena_used", 0) \
                and facts["arena_used"] != size:
            size = facts["arena_used"]  # exact on the device (status 3: what it asked for)
            elf, sections, console, readings, facts = _build_and_run(model, samples, d_out["bytes"], size, opt,
                                                                     stack_bytes, ram_bytes, work, timeout)
        if facts.get("init_status") != 0:
            raise McuError(f"tt_init on the device failed: status {facts.get('init_status')}: "
                           f"{facts.get('init_message', '')}")
        if "error" in facts:
            raise McuError(f"firmware: {facts['error']}")
        n = len(samples)
        if len(readings) < 6 + 2 * n:
            raise McuError(f"expected {6 + 2 * n} marker readings from the QEMU plugin, got {len(readings)}")
        marker_cost = readings[1] - readings[0]
        calibration = readings[3] - readings[2] - marker_cost
        if calibration != CALIBRATION_INSTRUCTIONS:
            raise McuError(f"instruction counting is off: the calibration loop counted {calibration}, "
                           f"expected {CALIBRATION_INSTRUCTIONS}")
        per_inference = [readings[7 + 2 * s] - readings[6 + 2 * s] - marker_cost for s in range(n)]
        outputs = [np.frombuffer(facts["outputs"][s], dtype=d_out["dtype"]).reshape(d_out["shape"]).copy()
                   for s in range(n)]
        data = sections.get(".data", 0)
        bss = sections.get(".bss", 0)
        model_len, samples_len = len(model), sum(s.nbytes for s in samples)
        flash_sections = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".data")
        flash_total = sum(sections.get(s, 0) for s in flash_sections)
        ram = {"data": data, "bss": bss, "arena": size, "stack_reserved": facts["stack_reserved"],
               "stack_high_water": facts["stack_high_water"],
               "reserved": data + bss + facts["stack_reserved"], "region": int(ram_bytes),
               "used": data + bss + facts["stack_high_water"]}
        flash = {"total": flash_total, "model": model_len, "samples": samples_len,
                 "text": sections.get(".text", 0), "rodata": sections.get(".rodata", 0)}
        return McuReport(outputs=outputs, host_outputs=host_outputs, instructions_per_inference=per_inference,
                         init_instructions=readings[5] - readings[4] - marker_cost, arena_used=facts["arena_used"],
                         arena_buffer=size, stack_high_water=facts["stack_high_water"],
                         stack_reserved=facts["stack_reserved"], ram=ram, flash=flash, sections=sections,
                         elf=elf, console=console)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- training on the device
@dataclass
class McuTrainReport:
    """What one QEMU run of the training firmware measured (port/cortex_m/train_main.cc)."""

    losses: List[float]
    host_losses: List[float]
    logits: np.ndarray
    host_logits: np.ndarray
    labels: List[int]
    instructions_per_step: List[int]
    instructions_per_inference: int
    init_instructions: int
    arena_used: int               # tt_train_arena_used on the device
    arena_buffer: int             # size of the static arena in .bss
    stack_high_water: int
    stack_reserved: int
    ram: Dict[str, int]
    flash: Dict[str, int]
    sections: Dict[str, int]
    plan: Dict[str, int]          # the file's plan: arena, persistent region, modelled peak
    synthetic: bool               # images generated on the device (xorshift32) instead of embedded
    elf: str
    console: str = field(repr=False, default="")
    # --profile: instructions per executed step of the last training step and of the inference
    profile: Optional[Dict[str, List[Dict]]] = None

    @property
    def matches_host(self) -> bool:
        """Losses (bit patterns) and the post-training logits equal the host runtime's."""
        same_losses = len(self.losses) == len(self.host_losses) and all(
            np.float32(a).tobytes() == np.float32(b).tobytes() for a, b in zip(self.losses, self.host_losses))
        return same_losses and self.logits.tobytes() == self.host_logits.tobytes()

    def to_dict(self) -> dict:
        return dict(
            losses=[float(v) for v in self.losses], host_losses=[float(v) for v in self.host_losses],
            matches_host=self.matches_host, labels=list(self.labels),
            instructions_per_step=list(self.instructions_per_step),
            instructions_per_inference=self.instructions_per_inference, init_instructions=self.init_instructions,
            arena_used=self.arena_used, stack_high_water=self.stack_high_water, stack_reserved=self.stack_reserved,
            ram=dict(self.ram), flash=dict(self.flash), plan=dict(self.plan), synthetic_samples=self.synthetic,
            **({"profile": self.profile} if self.profile is not None else {}))

    def profile_table(self) -> str:
        """The per-op profile as a text table (like TFLite Micro's MicroProfiler log)."""
        from . import profile_table

        return "" if self.profile is None else profile_table(self.profile, "instructions")

    def summary(self) -> str:
        return (
            f"losses {', '.join(f'{v:.6g}' for v in self.losses)} (equal to the host runtime's: {self.matches_host}); "
            f"instructions per training step {', '.join(str(n) for n in self.instructions_per_step)}, per inference "
            f"{self.instructions_per_inference}; RAM used {self.ram['used']} B of {self.ram['region']} "
            f"(data {self.ram['data']}, bss {self.ram['bss']} incl. arena {self.arena_buffer}, stack high-water "
            f"{self.stack_high_water}); flash {self.flash['total']} B of {FLASH_BYTES} (model {self.flash['model']}, "
            f"samples {self.flash['samples']})"
        )


def synthetic_image(s: int, nbytes: int) -> np.ndarray:
    """Sample ``s`` as the training firmware generates it with TT_FW_SYNTHETIC: byte ``i``
    is the top byte of the ``i``-th xorshift32 state after seed ``0x9E3779B9 * (s + 1)``."""
    from ..ops.update import xorshift32_states

    seed = (0x9E3779B9 * (s + 1)) & 0xFFFFFFFF or 1
    states, _ = xorshift32_states(seed, nbytes)
    return (states >> np.uint32(24)).astype(np.uint8).view(np.int8)


def write_train_firmware_data(model: bytes, samples: Sequence[np.ndarray], labels: Sequence[int], steps: int,
                              num_classes: int, input_bytes: int, arena_bytes: int, out_dir: str,
                              profile: bool = False) -> str:
    """firmware_data.h/.cc of the training firmware: model, samples (none: synthetic) and labels."""
    sample_bytes = b"".join(np.ascontiguousarray(x).tobytes() for x in samples)
    n = max(len(labels), 1)
    header = (
        "// Generated by tflm_train.micro.mcu: the training model, samples and labels in flash.\n"
        "#pragma once\n#include <stddef.h>\n#include <stdint.h>\n"
        f"#define TT_FW_ARENA_BYTES {int(arena_bytes)}u\n"
        f"#define TT_FW_SAMPLES {n}u\n"
        f"#define TT_FW_STEPS {int(steps)}u\n"
        f"#define TT_FW_CLASSES {int(num_classes)}u\n"
        f"#define TT_FW_INPUT_BYTES {int(input_bytes)}u\n"
        + ("" if samples else "#define TT_FW_SYNTHETIC 1\n")
        + ("#define TT_FW_PROFILE 1\n" if profile else "")
        + "extern const uint8_t tt_fw_model[];\nextern const size_t tt_fw_model_len;\n"
        "extern const uint8_t tt_fw_inputs[];\nextern const int32_t tt_fw_labels[];\n"
    )
    with open(os.path.join(out_dir, "firmware_data.h"), "w") as f:
        f.write(header)
    source = os.path.join(out_dir, "firmware_data.cc")
    _write_if_changed(source, DATA_PREAMBLE + _c_array("tt_fw_model", model)
                      + f"extern const size_t tt_fw_model_len = {len(model)};\n\n"
                      + _c_array("tt_fw_inputs", sample_bytes)
                      + "extern const int32_t tt_fw_labels[] = {" + ", ".join(str(int(v)) for v in labels) + "};\n")
    return source


_TRAIN_INIT_LINE = re.compile(r"^TT init (-?\d+) arena_used=(\d+) arena_size=(\d+) ?(.*)$")
_LOSS_LINE = re.compile(r"^TT loss (\d+) ([0-9a-f]{8})$")
_LOGITS_LINE = re.compile(r"^TT logits ([0-9a-f]*)$")


def _parse_train_console(console: str) -> Dict:
    facts = {"losses": {}}
    for line in console.splitlines():
        line = line.rstrip("\r")
        if m := _TRAIN_INIT_LINE.match(line):
            facts.update(init_status=int(m[1]), arena_used=int(m[2]), init_message=m[4])
        elif m := _LOSS_LINE.match(line):
            facts["losses"][int(m[1])] = float(np.frombuffer(bytes.fromhex(m[2]), np.float32)[0])
        elif m := _LOGITS_LINE.match(line):
            facts["logits"] = np.frombuffer(bytes.fromhex(m[1]), np.float32).copy()
        elif m := _STACK_LINE.match(line):
            facts.update(stack_high_water=int(m[1]), stack_reserved=int(m[2]))
        elif line.startswith("TT error ") or line.startswith("TT fault "):
            facts["error"] = line[3:]
    return facts


def run_training(model_bytes, samples: Optional[Sequence[np.ndarray]], labels: Sequence[int], steps: int = 3, *,
                 arena_bytes: Optional[int] = None, opt: str = "-O2", stack_bytes: int = DEFAULT_STACK_BYTES,
                 ram_bytes: int = RAM_BYTES, work_dir: Optional[str] = None, timeout: Optional[float] = None,
                 profile: bool = False, progress=None) -> McuTrainReport:
    """Build the training firmware for a training .tflite, run ``steps`` training steps and
    one inference (``tt_train_predict`` on sample 0 with the trained parameters) in QEMU,
    and compare with the host runtime on the same samples.

    ``profile``: the firmware also reads the instruction count after every executed step of
    the runtime (one marker per op); the report's ``profile`` holds the per-op counts of the
    last training step and of the inference.

    ``samples``: int8 images embedded in flash (step s trains on sample ``s % len``, label
    ``labels[s % len]``), or None for images generated on the device (``synthetic_image``;
    no flash cost, for models whose file leaves no room). ``arena_bytes=None``: the static
    arena is sized exactly: a short probe run (one training step) with the host figure reports
    the device's, then the run itself (the arrays are compiled once for both).
    ``timeout=None``: QEMU's limit scales with the work (``qemu_timeout``); a run past it fails
    with McuError. ``progress``: called with a line at each phase (build, link, run).
    """
    from . import Interpreter

    _check_run_arguments(steps, 1, ram_bytes)
    say = progress or (lambda line: None)
    check_tools()
    model = bytes(model_bytes)
    host = Interpreter(model)
    if not host.is_training_model:
        raise ValueError("run_training needs a training .tflite (tflm_train.export)")
    info = host.train_info
    nbytes = int(np.prod(info["image_shape"]))
    labels = [int(v) for v in labels]
    if not labels or any(not 0 <= v < info["num_classes"] for v in labels):
        raise ValueError(f"give one or more labels in [0, {info['num_classes']})")
    synthetic = samples is None
    if synthetic:
        images = [synthetic_image(s, nbytes).reshape(info["image_shape"]) for s in range(max(steps, 1))]
        embedded = []
    else:
        images = [np.ascontiguousarray(x) for x in samples]
        if len(images) != len(labels) or any(x.dtype != np.int8 or x.nbytes != nbytes for x in images):
            raise ValueError(f"give one int8 image of {info['image_shape']} per label")
        embedded = images
    if timeout is None:
        timeout = qemu_timeout(model, steps)
    say(f"host runtime: {steps} training steps (the losses the device must reproduce)")
    host_losses = [host.train_step(images[s % len(images)], labels[s % len(labels)]) for s in range(steps)]
    host_logits = host.predict(images[0])

    own_dir = work_dir is None
    work = tempfile.mkdtemp(prefix="tflm_train_fw_") if own_dir else work_dir
    os.makedirs(work, exist_ok=True)

    def build_and_run(size: int, run_steps: int, probe: bool = False):
        objs = build_runtime_objects(opt, say)
        write_train_firmware_data(model, embedded, labels, run_steps, info["num_classes"], nbytes, size, work,
                                  profile and not probe)
        say(f"building the firmware: model {len(model):,} bytes, {len(embedded) or 'no'} embedded samples"
            f"{' (images generated on the device)' if synthetic else ''}, arena {size:,} bytes")
        elf = link_firmware(objs, work, opt, stack_bytes, ram_bytes, main_source="train_main.cc")
        sections = section_sizes(elf)
        if sections.get(".init_array", 0):
            raise McuError("the firmware has global constructors (.init_array is not empty); the runtime must not")
        what = ("the arena probe (one training step)" if probe else
                f"{run_steps} training step{'s' if run_steps > 1 else ''} and an inference")
        say(f"running {what} in QEMU mps2-an386 (limit {timeout:.0f} s)")
        console, readings = run_qemu(elf, timeout)
        return elf, sections, console, readings, _parse_train_console(console)

    try:
        size = int(arena_bytes) if arena_bytes is not None else info["arena_bytes"]
        if arena_bytes is None:
            # the probe runs one training step: it links the same code as the run (with none, the
            # training kernels would be dropped and the flash figures would differ)
            facts = build_and_run(size, 1, probe=True)[-1]
            if facts.get("init_status") in (0, 3) and facts.get("arena_used", 0):
                size = facts["arena_used"]  # exact on the device (32-bit pointers: a smaller runtime state)
        elf, sections, console, readings, facts = build_and_run(size, steps)
        if facts.get("init_status") != 0:
            raise McuError(f"tt_train_init on the device failed: status {facts.get('init_status')}: "
                           f"{facts.get('init_message', '')}")
        if "error" in facts:
            raise McuError(f"firmware: {facts['error']}")
        op_profile = None
        if profile:
            readings, op_profile = _split_profile(model, readings, steps)
        if len(readings) < 8 + 2 * steps:
            raise McuError(f"expected {8 + 2 * steps} marker readings from the QEMU plugin, got {len(readings)}")
        marker_cost = readings[1] - readings[0]
        calibration = readings[3] - readings[2] - marker_cost
        if calibration != CALIBRATION_INSTRUCTIONS:
            raise McuError(f"instruction counting is off: the calibration loop counted {calibration}, "
                           f"expected {CALIBRATION_INSTRUCTIONS}")
        per_step = [readings[7 + 2 * s] - readings[6 + 2 * s] - marker_cost for s in range(steps)]
        per_inference = readings[7 + 2 * steps] - readings[6 + 2 * steps] - marker_cost
        data, bss = sections.get(".data", 0), sections.get(".bss", 0)
        flash_sections = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".data")
        flash_total = sum(sections.get(s, 0) for s in flash_sections)
        samples_len = sum(x.nbytes for x in embedded) + 4 * len(labels)
        ram = {"data": data, "bss": bss, "arena": size, "stack_reserved": facts["stack_reserved"],
               "stack_high_water": facts["stack_high_water"], "reserved": data + bss + facts["stack_reserved"],
               "region": int(ram_bytes), "used": data + bss + facts["stack_high_water"]}
        flash = {"total": flash_total, "model": len(model), "samples": samples_len,
                 "code_and_constants": flash_total - len(model) - samples_len,
                 "text": sections.get(".text", 0), "rodata": sections.get(".rodata", 0)}
        plan = {"arena_bytes": info["plan_arena_bytes"], "persistent_bytes": info["persistent_bytes"]}
        return McuTrainReport(
            losses=[facts["losses"].get(s, float("nan")) for s in range(steps)], host_losses=host_losses,
            logits=facts.get("logits", np.zeros(0, np.float32)), host_logits=host_logits, labels=labels,
            instructions_per_step=per_step, instructions_per_inference=per_inference,
            init_instructions=readings[5] - readings[4] - marker_cost, arena_used=facts["arena_used"],
            arena_buffer=size, stack_high_water=facts["stack_high_water"], stack_reserved=facts["stack_reserved"],
            ram=ram, flash=flash, sections=sections, plan=plan, synthetic=synthetic, elf=elf, console=console,
            profile=op_profile)
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def _split_profile(model: bytes, readings: List[int], steps: int):
    """Separate the per-op readings of a profile firmware from its fixed markers.

    Readings: 6 fixed (calibration, init), then per training step its start, one per executed
    runtime step (all S of them), its end; then the inference's start, one per step up to the
    logits, its end. Returns (the fixed markers as a plain run has them, {"train_step": rows of
    the last training step, "inference": rows}); each interval is net of one marker's cost."""
    from ..io.train_export import read_training_file
    from . import with_shares

    _, _, plan = read_training_file(model)
    n_steps = len(plan.steps)
    n_infer = len(readings) - 6 - steps * (n_steps + 2) - 2
    if len(readings) < 6 or n_infer < 1 or n_infer > n_steps:
        raise McuError(f"profile: {len(readings)} marker readings do not fit {steps} training steps of "
                       f"{n_steps} ops and one inference")
    marker_cost = readings[1] - readings[0]
    plain = list(readings[:6])
    sections = {}
    i = 6
    for s in range(steps + 1):
        count = n_steps if s < steps else n_infer
        start, marks, end = readings[i], readings[i + 1:i + 1 + count], readings[i + 1 + count]
        plain += [start, end - count * marker_cost]
        rows, prev = [], start
        for k, r in enumerate(marks):
            sp = plan.steps[k]
            rows.append(dict(step=k, name=sp.name, type=sp.type, phase=sp.phase, mode=sp.mode,
                             instructions=int(r - prev - marker_cost)))
            prev = r
        sections["inference" if s == steps else "train_step"] = with_shares(rows, "instructions")
        i += count + 2
    return plain, sections


def qemu_timeout(model_bytes: bytes, steps: int) -> float:
    """Seconds QEMU may take for ``steps`` training steps and an inference of a training file:
    a bound from its inference MACs (see STEP_INSTRUCTIONS_PER_MAC, QEMU_MIN_SPEED)."""
    from ..io.train_export import read_training_file

    macs = read_training_file(bytes(model_bytes))[0].macs()
    instructions = (int(steps) * STEP_INSTRUCTIONS_PER_MAC + 2 * INFERENCE_INSTRUCTIONS_PER_MAC) * macs
    return QEMU_BASE_SECONDS + instructions / QEMU_MIN_SPEED


def _check_run_arguments(steps, samples, ram_bytes) -> None:
    """ValueError (one line) for a step count, sample count or RAM region outside the bounds."""
    for name, v in (("steps", steps), ("samples", samples), ("ram_bytes", ram_bytes)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, not {v!r}")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be in [1, {MAX_STEPS}], not {steps}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, not {samples}")
    if not MIN_RAM_KB * 1024 <= ram_bytes <= MAX_RAM_KB * 1024:
        raise ValueError(f"the RAM region must be in [{MIN_RAM_KB}, {MAX_RAM_KB}] KB, not {ram_bytes / 1024:g} KB")


def user_samples(path: str, image_shape, quantization, num_classes: int, n: int):
    """The first ``n`` samples of the user's ``.npz`` (arrays ``x``: images, ``y``: labels) as
    int8 model inputs: ``x`` is [N,H,W] or [N,H,W,C]; uint8 pixels, or float pixels in [0, 1],
    are resized (bilinear) and channel-replicated to the model input, mapped onto the real range
    its int8 input covers (``datasets.input_range``: 0..1 for a [0, 1] model, -1..1 for the seed
    models, as ``tflm-train search`` reads data) and quantized with its (scale, zero point); int8 is taken as
    already quantized and must have the input's shape. ``y``: integers in [0, num_classes)."""
    import zipfile
    import zlib

    from ..datasets import input_range, prepare_images, to_int8_input

    shape = tuple(int(d) for d in image_shape)
    try:
        with np.load(path, allow_pickle=False) as f:
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise ValueError("a single array")
            missing = [k for k in ("x", "y") if k not in f.files]
            if missing:
                raise KeyError(f"no array {' or '.join(map(repr, missing))} (it has {sorted(f.files)})")
            x, y = f["x"], f["y"]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{path}: not an .npz with arrays x (images) and y (labels): {msg}") from None
    if x.ndim not in (3, 4) or x.shape[0] < 1 or 0 in x.shape:
        raise ValueError(f"{path}: x must be images [N,H,W] or [N,H,W,C] with N >= 1, not shape {list(x.shape)}")
    if x.ndim == 4 and x.shape[-1] not in (1, shape[3]):
        raise ValueError(f"{path}: x has {x.shape[-1]} channels, the model input {list(shape)} takes {shape[3]} "
                         f"(or 1, replicated)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: y must hold one label per image ({x.shape[0]}), not shape {list(y.shape)}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels y must be integers, not {y.dtype}")
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise ValueError(f"{path}: label y[{bad[0]}] = {y[bad[0]]} is outside the model's {num_classes} classes "
                         f"[0, {num_classes})")
    x, labels = x[:n], [int(v) for v in y[:n]]
    if x.dtype == np.int8:
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != shape[1:]:
            raise ValueError(f"{path}: int8 images are taken as quantized model inputs and must have the input's "
                             f"shape {list(shape[1:])}, not {list(x.shape[1:])} (give uint8 or float pixels to "
                             f"resize them)")
        return [np.ascontiguousarray(x[k]).reshape(shape) for k in range(len(x))], labels
    if x.dtype.kind == "f":
        finite = bool(np.all(np.isfinite(x)))
        if not finite or x.min() < 0 or x.max() > 1:
            raise ValueError(f"{path}: float images must be pixels in [0, 1], found "
                             + ("non-finite values" if not finite else f"[{x.min():g}, {x.max():g}]"))
        x = np.rint(x * 255.0).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"{path}: images x must be uint8 pixels, float pixels in [0, 1] or int8 model inputs, "
                         f"not {x.dtype}")
    images = prepare_images(x, (shape[1], shape[2]), shape[3])
    scale, zp = quantization
    return [to_int8_input(images[k:k + 1], scale, zp, input_range(scale, zp)).reshape(shape)
            for k in range(len(images))], labels


def dataset_samples(image_shape, quantization, num_classes: int, n: int, data: str = "fmnist"):
    """``n`` int8 images of ``image_shape`` and labels in ``[0, num_classes)``.

    ``data``: "fmnist" (Fashion-MNIST test images, resized and channel-replicated, quantized
    with the input's (scale, zero point); labels modulo ``num_classes``), "random" (uniform
    int8, seed 0), "synthetic" (None: generated on the device, see ``synthetic_image``) or
    the path of the user's own ``.npz`` (``user_samples``)."""
    if data not in ("fmnist", "random", "synthetic"):
        if not str(data).endswith(".npz") and not os.path.isfile(str(data)):
            raise ValueError(f"unknown sample data {data!r} (fmnist, random, synthetic or FILE.npz)")
        if not os.path.isfile(str(data)):
            raise ValueError(f"{data}: no such file")
        return user_samples(str(data), image_shape, quantization, num_classes, n)
    if data == "synthetic":
        return None, [int(k % num_classes) for k in range(n)]
    shape = tuple(image_shape)
    if data == "random":
        rng = np.random.default_rng(0)
        return ([rng.integers(-128, 128, shape).astype(np.int8) for _ in range(n)],
                [int(v) for v in rng.integers(0, num_classes, n)])
    if data != "fmnist":
        raise ValueError(f"unknown sample data {data!r} (fmnist, random or synthetic)")
    from ..datasets import fashion_mnist, prepare_images, to_int8_input

    images, labels = fashion_mnist("test")
    images = prepare_images(images[:n], (shape[1], shape[2]), shape[3])
    scale, zp = quantization
    xs = [to_int8_input(images[k:k + 1], scale, zp).reshape(shape) for k in range(n)]
    return xs, [int(v) % num_classes for v in labels[:n]]


def mcu_run(model_bytes, steps: int = 3, samples: int = 3, data: str = "fmnist", *, progress=None,
            **kwargs) -> McuTrainReport:
    """``run_training`` with ``samples`` images of ``data`` (see ``dataset_samples``; the user's
    own with a ``.npz`` path) embedded. When the flash region overflows, the samples that do not
    fit (the linker says by how many bytes) are dropped at once, down to images generated on
    the device. Arguments are checked first (ValueError, one line); ``progress`` gets a line
    per phase."""
    from . import Interpreter

    _check_run_arguments(steps, samples, kwargs.get("ram_bytes", RAM_BYTES))
    say = progress or (lambda line: None)
    host = Interpreter(bytes(model_bytes))
    if not host.is_training_model:
        raise ValueError("mcu-run needs a training .tflite (tflm-train export / tflm_train.export), "
                         "not an inference-only model")
    info = host.train_info
    count = int(samples)
    xs, labels = dataset_samples(info["image_shape"], info["image_quantization"], info["num_classes"], count, data)
    while True:
        try:
            return run_training(model_bytes, xs, labels, steps, progress=progress, **kwargs)
        except FirmwareTooLarge as e:
            if e.region != "FLASH" or xs is None:
                raise
            # the linker reports the overflow where the region first overflows: the sections
            # placed after it (.data's initial values, unwind tables) need a little more
            per_sample = xs[0].nbytes + 4
            keep = len(xs) - -(-(e.overflow + FLASH_OVERFLOW_MARGIN) // per_sample)
            if keep >= 1:
                say(f"flash overflowed by {e.overflow:,} bytes with {len(xs)} samples: keeping {keep}")
                xs, labels = xs[:keep], labels[:keep]
            else:
                say(f"flash overflowed by {e.overflow:,} bytes with {len(xs)} samples: images generated on the "
                    f"device instead")
                xs, labels = None, [labels[k % len(labels)] for k in range(max(steps, 1))]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Run a .tflite model on an emulated Cortex-M4 (QEMU mps2-an386).")
    p.add_argument("model")
    p.add_argument("--samples", type=int, default=2, help="random input samples to run (default 2)")
    p.add_argument("--opt", default="-O2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ram-kb", type=int, default=RAM_BYTES // 1024,
                   help="RAM region of the link in KB (default 256, the budget; larger only to measure)")
    args = p.parse_args(argv)
    from . import Interpreter

    model = open(args.model, "rb").read()
    d = Interpreter(model).input_details[0]
    rng = np.random.default_rng(args.seed)
    if d["dtype"] == np.float32:
        xs = [rng.uniform(-1, 1, d["shape"]).astype(np.float32) for _ in range(args.samples)]
    else:
        info = np.iinfo(d["dtype"])
        xs = [rng.integers(info.min, info.max + 1, d["shape"]).astype(d["dtype"]) for _ in range(args.samples)]
    try:
        report = run_model(model, xs, opt=args.opt, ram_bytes=args.ram_kb * 1024)
    except McuError as e:
        print(f"error: {e}")
        return 1
    print(report.summary())
    return 0 if report.matches_host else 1


if __name__ == "__main__":
    raise SystemExit(main())
