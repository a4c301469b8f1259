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
