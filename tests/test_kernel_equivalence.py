"""Optimized int8 compute cores == reference cores, byte for byte (src/kernels/conv_core.h).

micro_ops/tests/kernel_equivalence.cc draws random convolution, pointwise and depthwise
problems (odd and prime channel counts, kernels 1-7, strides 1-3, dilation, padding on every
edge, split trained channels, plane and interleaved inputs, depth multipliers, every
requantization table form) and compares tt::optimized with tt::reference. It runs on the
host (portable paths, with address and undefined-behaviour sanitizers) and on the emulated
Cortex-M4 in QEMU (the SXTB16 / SXTAB16 / SMLAD paths).
"""
import os
import subprocess

import pytest

from tflm_train.micro import mcu

MICRO_OPS = mcu.MICRO_OPS
CORE = [os.path.join(MICRO_OPS, "src", "kernels", f) for f in ("conv_core_reference.cc", "conv_core_optimized.cc")]
DRIVER = os.path.join(MICRO_OPS, "tests", "kernel_equivalence.cc")
OK = "TT kernels cases="


def test_optimized_cores_equal_reference_on_host(tmp_path):
    exe = str(tmp_path / "kernel_equivalence")
    build = subprocess.run(["g++", "-std=c++17", "-O2", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                            "-Wall", "-Wextra", "-Werror", DRIVER, *CORE, "-o", exe], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    for seed in ("0x2545F491", "0x1234567"):
        run = subprocess.run([exe, "4000", seed], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and OK in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def test_optimized_cores_equal_reference_on_cortex_m4(tmp_path):
    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.fail(str(e))
    objs = []
    sources = [DRIVER, *CORE] + [os.path.join(mcu.PORT, f) for f in ("startup.c", "semihosting.c", "markers.cc")]
    for src in sources:
        obj = str(tmp_path / (os.path.basename(src) + ".o"))
        mcu._compile(src, obj, "-O2", [os.path.join(MICRO_OPS, "include"), mcu.PORT])
        objs.append(obj)
    elf = str(tmp_path / "kernel_equivalence.elf")
    link = subprocess.run(["arm-none-eabi-g++", *mcu.LINK_FLAGS, f"-T{os.path.join(mcu.PORT, 'linker.ld')}", *objs,
                           "-lm", "-o", elf], capture_output=True, text=True)
    assert link.returncode == 0, link.stderr[-4000:]
    console, _ = mcu.run_qemu(elf, timeout=600)
    assert OK in console and " ok" in console, console[-2000:]
