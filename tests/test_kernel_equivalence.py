"""Optimized int8 compute cores == reference cores, byte for byte (src/kernels/conv_core.h).

micro_ops/tests/kernel_equivalence.cc draws random convolution, pointwise and depthwise
problems (odd and prime channel counts, kernels 1-7, strides 1-3, dilation, padding on every
edge, split trained channels, plane and interleaved inputs, depth multipliers, every
requantization table form) and compares tt::optimized with tt::reference. It runs on the
host (portable paths, with address and undefined-behaviour sanitizers) and on the emulated
Cortex-M4 in QEMU (the SXTB16 / SXTAB16 / SMLAD paths).

micro_ops/tests/quant_equivalence.cc checks the integer requantization arithmetic of
src/quant.cc (quantize_multiplier, quantize_scale_ratio: what every training step computes its
requantization tables with) against its specification in double arithmetic, likewise on the
host and in QEMU (where the specification runs in software doubles).
"""
import os
import subprocess

import numpy as np
import pytest

from tflm_train.micro import mcu

MICRO_OPS = mcu.MICRO_OPS
CORE = [os.path.join(MICRO_OPS, "src", "kernels", f) for f in ("conv_core_reference.cc", "conv_core_optimized.cc")]
DRIVER = os.path.join(MICRO_OPS, "tests", "kernel_equivalence.cc")
OK = "TT kernels cases="
QUANT = [os.path.join(MICRO_OPS, "tests", "quant_equivalence.cc"), os.path.join(MICRO_OPS, "src", "quant.cc")]
QUANT_OK = "TT quant cases ok"


def _host_run(tmp_path, name, sources, runs, ok):
    """Build `sources` for the host with ASan + UBSan and run it once per argument list in `runs`."""
    exe = str(tmp_path / name)
    build = subprocess.run(["g++", "-std=c++17", "-O2", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                            "-Wall", "-Wextra", "-Werror", f"-I{os.path.join(MICRO_OPS, 'include')}", *sources, "-o",
                            exe], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    for args in runs:
        run = subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and ok in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def _qemu_run(tmp_path, name, sources, ok, count_instructions=False):
    """Build `sources` for the Cortex-M4 (with the port's start-up code) and run them in QEMU."""
    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.fail(str(e))
    objs = []
    for src in [*sources] + [os.path.join(mcu.PORT, f) for f in ("startup.c", "semihosting.c", "markers.cc")]:
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        mcu._compile(src, obj, "-O2", [os.path.join(MICRO_OPS, "include"), mcu.PORT])
        objs.append(obj)
    elf = str(tmp_path / f"{name}.elf")
    link = subprocess.run(["arm-none-eabi-g++", *mcu.LINK_FLAGS, f"-T{os.path.join(mcu.PORT, 'linker.ld')}", *objs,
                           "-lm", "-o", elf], capture_output=True, text=True)
    assert link.returncode == 0, link.stderr[-4000:]
    console, _ = mcu.run_qemu(elf, timeout=600, count_instructions=count_instructions)
    assert ok in console, console[-2000:]


def test_optimized_cores_equal_reference_on_host(tmp_path):
    _host_run(tmp_path, "kernel_equivalence", [DRIVER, *CORE], [["4000", "0x2545F491"], ["4000", "0x1234567"]], OK)


def test_optimized_cores_equal_reference_on_cortex_m4(tmp_path):
    # the driver calls tt_calibrate (port/cortex_m/markers.cc), as a firmware does
    _qemu_run(tmp_path, "kernel_equivalence", [DRIVER, *CORE], OK, count_instructions=True)


def test_requantization_arithmetic_equals_double_spec_on_host(tmp_path):
    _host_run(tmp_path, "quant_equivalence", QUANT, [["1000000"]], QUANT_OK)


def test_requantization_arithmetic_equals_double_spec_on_cortex_m4(tmp_path):
    _qemu_run(tmp_path, "quant_equivalence", QUANT, QUANT_OK)


# --------------------------------------------------------------------------- float16 gradient storage
HALF = [os.path.join(MICRO_OPS, "tests", "half_conversion.cc")]


def _position_hash(values) -> int:
    """sum of v_i * (i * 2654435761 | 1) mod 2^32, as half_conversion.cc hashes."""
    v = np.asarray(values, np.uint64)
    m = ((np.arange(v.size, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) | np.uint64(1)
    return int(np.sum((v * m) & np.uint64(0xFFFFFFFF)) & np.uint64(0xFFFFFFFF))


def _narrowed(bits) -> np.ndarray:
    """NumPy's float32 -> float16 cast (round to nearest even) of float32 bit patterns; NaN canonical."""
    h = np.asarray(bits, np.uint32).view(np.float32).astype(np.float16)
    return np.where(np.isnan(h), np.uint16(0x7E00), h.view(np.uint16)).astype(np.uint32)


def half_hashes(randoms: int) -> str:
    """The line half_conversion.cc prints, computed with NumPy."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
        widen = np.where(np.isnan(f), np.uint32(0x7FC00000), f.view(np.uint32))
        base = np.arange(1 << 20, dtype=np.uint32) << np.uint32(12)
        ties = _narrowed(np.stack([base - np.uint32(1), base, base + np.uint32(1)], axis=1).reshape(-1))
        i = np.arange(randoms, dtype=np.uint32) * np.uint32(0x9E3779B9)
        for shift, mult in ((16, 0x85EBCA6B), (13, 0xC2B2AE35), (16, None)):
            i = i ^ (i >> np.uint32(shift))
            if mult is not None:
                i = i * np.uint32(mult)
        random = _narrowed(i)
    return (f"TT half widen={_position_hash(widen):08x} ties={_position_hash(ties):08x} "
            f"random={_position_hash(random):08x}")


def test_half_conversion_equals_numpy_on_host(tmp_path):
    """The host's software binary16 conversion == NumPy's casts: all 2^16 widenings, every
    rounding tie and its neighbours, 10^6 random floats (NaN, inf, subnormals included)."""
    _host_run(tmp_path, "half_conversion", HALF, [["1000000"]], half_hashes(1000000))


def test_half_conversion_equals_numpy_on_cortex_m4(tmp_path):
    """The Cortex-M4F's VCVTB (FPSCR out of reset: round to nearest even, IEEE half, no flush)
    == NumPy's casts on the same inputs (10^5 random floats)."""
    _qemu_run(tmp_path, "half_conversion", HALF, half_hashes(100000))
