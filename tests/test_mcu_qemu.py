"""person_detect on an emulated Cortex-M4F (QEMU mps2-an386) inside 256 KB of RAM and 1 MB of flash.

The firmware (runtime + model + samples in flash, static arena in RAM) must give
the same output bytes as the host runtime and tflite-micro, count instructions
exactly (tflm_train.micro.mcu checks a calibration loop of known length on
every run), and an image that exceeds the RAM budget must fail to link with a
clear message.
"""
import os

import numpy as np
import pytest

from tflm_train.micro import mcu
from tests.paths import MODELS, PERSON_DETECT
from tests.test_micro_host import tflm_invoke
from tests.test_reference import read_bmp_gray8


def _tools_or_skip():
    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))


def test_person_detect_on_cortex_m4_in_256kb():
    _tools_or_skip()
    data = open(PERSON_DETECT, "rb").read()
    images = [read_bmp_gray8(os.path.join(MODELS, f)).view(np.int8).reshape(1, 96, 96, 1)
              for f in ("person.bmp", "no_person.bmp")]
    images.append(np.random.default_rng(0).integers(-128, 128, (1, 96, 96, 1), dtype=np.int8))
    report = mcu.run_model(data, images)
    print(report.summary())
    assert report.matches_host
    expected = tflm_invoke(data, [[x] for x in images])
    for got, want in zip(report.outputs, expected):
        assert got.tobytes() == want[0].tobytes()
    assert np.argmax(report.outputs[0]) == 1 and np.argmax(report.outputs[1]) == 0  # person, no person
    # inside the budget, with what was measured on the device
    assert report.ram["region"] == 256 * 1024
    assert report.ram["reserved"] <= 256 * 1024 and report.flash["total"] <= 1024 * 1024
    assert report.arena_buffer == report.arena_used  # the static arena sized exactly
    assert 0 < report.stack_high_water < report.stack_reserved
    assert report.flash["model"] == len(data) and report.flash["total"] > len(data)
    # deterministic, data-dependent only through clamps: within 0.1% across samples
    counts = report.instructions_per_inference
    assert min(counts) > 10_000_000 and (max(counts) - min(counts)) < 0.001 * max(counts)


def test_ram_overflow_fails_the_link():
    _tools_or_skip()
    data = open(PERSON_DETECT, "rb").read()
    with pytest.raises(mcu.FirmwareTooLarge, match=r"RAM \(256 KB\) overflowed by \d+ bytes") as e:
        mcu.run_model(data, [np.zeros((1, 96, 96, 1), np.int8)], arena_bytes=300 * 1024)
    assert e.value.region == "RAM" and e.value.overflow > 300 * 1024 - 256 * 1024
