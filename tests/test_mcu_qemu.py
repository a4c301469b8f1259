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


# --------------------------------------------------------------------------- training on the device
@pytest.mark.parametrize("grad_dtype", ["float32", "float16"])
def test_mcunet_training_on_cortex_m4_matches_host(grad_dtype):
    """MCUNet-5FPS (48x48, published "99kb" scheme, float head) trains on the emulated
    Cortex-M4 inside 256 KB / 1 MB: every plan rule (in place, fused, virtual pad,
    bitmasks, split weights) runs on the device, and its losses and post-training logits
    equal the host runtime's, which equal the NumPy reference trainer's
    (tests/test_micro_train.py); float16 gradients convert with the FPU's VCVTB on the device
    and in software on the host."""
    _tools_or_skip()
    import tflm_train
    from tests.paths import SCHEMES, seed_model
    from tflm_train.io.train_export import export

    g = tflm_train.load(seed_model("mcunet-5fps"), input_size=48)
    r = export(g, os.path.join(SCHEMES, "mcunet-5fps.json") + ":99kb", lr=1e-3, grad_dtype=grad_dtype)
    rng = np.random.default_rng(1)
    xs = [rng.integers(-128, 128, (1, 48, 48, 3)).astype(np.int8) for _ in range(2)]
    report = mcu.run_training(r.data, xs, [4, 7], steps=3)
    print(report.summary())
    assert report.matches_host, (report.losses, report.host_losses)
    assert all(np.isfinite(report.losses)) and report.logits.shape == (10,)
    assert report.ram["region"] == 256 * 1024 and report.ram["reserved"] <= 256 * 1024
    assert report.flash["total"] <= 1024 * 1024 and report.flash["model"] == len(r.data)
    # the device's arena is the plan's arena plus a few hundred bytes of runtime state
    assert report.plan["arena_bytes"] < report.arena_used < report.plan["arena_bytes"] + 1024
    assert report.arena_buffer == report.arena_used
    # a training step costs more than an inference, and is nearly data independent
    steps = report.instructions_per_step
    assert min(steps) > report.instructions_per_inference > 1_000_000
    assert max(steps) - min(steps) < 0.01 * max(steps)


def test_full_size_seed_model_trains_on_cortex_m4():
    """A seed model at its full size (MobileNetV2-w0.35, 128x128, published "99kb" scheme) trains
    in the firmware: the shapes and the memory the kernels are trusted on, not only 48x48. Its
    losses and logits equal the host runtime's (which equal the NumPy reference trainer's at
    128x128: tests/test_seed_models_train.py), inside 256 KB of RAM and 1 MB of flash."""
    _tools_or_skip()
    import tflm_train
    from tests.paths import SCHEMES, seed_model
    from tflm_train.io.train_export import export

    g = tflm_train.load(seed_model("mbv2-w0.35"), input_size=128)
    r = export(g, os.path.join(SCHEMES, "mbv2-w0.35.json") + ":99kb", num_classes=10, lr=1e-3, seed=1)
    x = np.random.default_rng(2).integers(-128, 128, (1, 128, 128, 3)).astype(np.int8)
    report = mcu.run_training(r.data, [x], [6], steps=1)
    print(report.summary())
    assert report.matches_host, (report.losses, report.host_losses)
    assert report.ram["used"] <= 256 * 1024 and report.flash["total"] <= 1024 * 1024
    assert report.plan["arena_bytes"] < report.arena_used < report.plan["arena_bytes"] + 1024


def test_mcu_run_command(tmp_path):
    """`tflm-train mcu-run` on the default model's training file, with --json and images
    generated on the device."""
    _tools_or_skip()
    import json
    import subprocess
    import sys

    import tflm_train
    from tests.paths import REPO
    from tflm_train.io.train_export import export

    path = tmp_path / "train.tflite"
    export(tflm_train.load(os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")), "last-2", str(path),
           lr=1e-3)
    proc = subprocess.run([sys.executable, "-m", "tflm_train.cli", "mcu-run", str(path), "--steps", "2",
                           "--data", "synthetic", "--json", "--profile"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    # images generated on the device (zero-copy into the trainer's input) match the host's copies
    assert out["synthetic_samples"] and out["matches_host"]
    assert len(out["losses"]) == 2 and len(out["instructions_per_step"]) == 2
    assert out["ram"]["used"] < 256 * 1024 and out["flash"]["total"] < 1024 * 1024
    assert out["instructions_per_inference"] > 0
    # --profile: one row per executed op of the plan, in order, adding up to the step (less the
    # runtime's own work after the last op)
    from tflm_train.io.train_export import read_training_file

    steps = read_training_file(path.read_bytes())[2].steps
    rows = out["profile"]["train_step"]
    assert [(r["step"], r["name"], r["type"]) for r in rows] == [(k, s.name, s.type) for k, s in enumerate(steps)]
    total = sum(r["instructions"] for r in rows)
    assert 0.95 * out["instructions_per_step"][-1] <= total <= out["instructions_per_step"][-1]
    assert all(r["instructions"] > 0 for r in rows)
    assert 0 < len(out["profile"]["inference"]) < len(steps)
