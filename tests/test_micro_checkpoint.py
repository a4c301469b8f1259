"""Checkpoints (tt_checkpoint_save / tt_checkpoint_restore) and atomic training steps through
the host binding (tflm_train.micro.Interpreter).

The exhaustive power-cut simulation and the atomic-step checks under AddressSanitizer /
UndefinedBehaviorSanitizer are in tests/test_micro_sanitizers.py (runtime_check powercut /
atomic); here: a checkpoint written by one interpreter restores byte for byte in another
(file and memory), training continues identically, the trained model still exports as a
.tflite, another model's checkpoint and corrupted storage are refused, and failed steps
leave every parameter byte as it was.
"""
import numpy as np
import pytest

from tests.test_micro_train import ZOO_SCHEME, zoo_graph
from tflm_train.io.train_export import export
from tflm_train.micro import Interpreter, MicroRuntimeError


@pytest.fixture(scope="module")
def models():
    return {
        "float": export(zoo_graph(), ZOO_SCHEME, num_classes=3, lr=0.01).data,
        "int8": export(zoo_graph(), ZOO_SCHEME, head="int8", num_classes=3, lr=0.01).data,
        "huge_lr": export(zoo_graph(), ZOO_SCHEME, num_classes=3, lr=1e37).data,
    }


def _images(it, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, it.train_info["image_shape"], dtype=np.int8) for _ in range(n)]


def _same_parameters(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("head", ["float", "int8"])
def test_checkpoint_file_round_trip(models, head, tmp_path):
    it = Interpreter(models[head])
    images = _images(it, 6)
    for k, x in enumerate(images[:3]):
        it.train_step(x, k % 3)
    path = tmp_path / "weights.ckpt"
    info = it.save_checkpoint(path)
    assert info == {"sequence": 1, "slot": "A", "payload_bytes": info["payload_bytes"], "steps_done": 3}
    assert path.stat().st_size == it.checkpoint_storage_bytes()

    restarted = Interpreter(models[head])
    assert not _same_parameters(restarted.parameters(), it.parameters())
    assert restarted.restore_checkpoint(path) == info
    assert _same_parameters(restarted.parameters(), it.parameters())
    for key in ("steps_done", "rng_state", "logit_absmax"):
        assert restarted.train_info[key] == it.train_info[key]
    # The trained model still exports as an inference .tflite, the same bytes.
    assert restarted.to_tflite() == it.to_tflite()
    # Training continues identically.
    for k, x in enumerate(images[3:]):
        assert restarted.train_step(x, k % 3) == it.train_step(x, k % 3)
    assert _same_parameters(restarted.parameters(), it.parameters())


def test_checkpoint_memory_slots_alternate(models):
    it = Interpreter(models["float"])
    storage = bytearray(b"\xff" * it.checkpoint_storage_bytes(page_size=256, write_size=8))
    states = []
    for save in range(1, 5):
        it.train_step(_images(it, 1, save)[0], save % 3)
        info = it.save_checkpoint(storage, page_size=256, write_size=8)
        assert (info["sequence"], info["slot"]) == (save, "AB"[(save - 1) % 2])
        states.append(it.parameters())
    restarted = Interpreter(models["float"])
    assert restarted.restore_checkpoint(bytes(storage), page_size=256, write_size=8)["sequence"] == 4
    assert _same_parameters(restarted.parameters(), states[-1])
    # The newest slot damaged: the previous checkpoint (sequence 3, slot A) is restored.
    half = len(storage) // 2
    damaged = bytearray(storage)
    damaged[half + 40] ^= 0x01
    restarted = Interpreter(models["float"])
    assert restarted.restore_checkpoint(damaged, page_size=256, write_size=8)["sequence"] == 3
    assert _same_parameters(restarted.parameters(), states[-2])


def test_checkpoint_refusals_leave_the_trainer_unchanged(models, tmp_path):
    other = Interpreter(models["int8"])
    other.train_step(_images(other, 1)[0], 1)
    path = tmp_path / "int8.ckpt"
    other.save_checkpoint(path)

    it = Interpreter(models["float"])
    before = it.parameters()
    with pytest.raises(MicroRuntimeError, match="TT_NO_CHECKPOINT: .*slot A: a checkpoint of another model"):
        it.restore_checkpoint(path)
    with pytest.raises(MicroRuntimeError, match="slot A: empty; slot B: empty"):
        it.restore_checkpoint(b"\xff" * it.checkpoint_storage_bytes())
    corrupt = bytearray(Interpreter(models["float"]).checkpoint_storage_bytes())
    with pytest.raises(MicroRuntimeError, match="no checkpoint header"):
        it.restore_checkpoint(corrupt)
    with pytest.raises(MicroRuntimeError, match="TT_INVALID_ARGUMENT: storage: .* needs"):
        it.restore_checkpoint(b"\xff" * 64)
    with pytest.raises(ValueError, match="powers of two"):
        it.checkpoint_storage_bytes(page_size=1000)
    assert _same_parameters(it.parameters(), before)
    assert it.train_info["steps_done"] == 0


def test_failed_steps_change_nothing(models):
    it = Interpreter(models["float"])
    x = _images(it, 1)[0]
    it.train_step(x, 0)
    before, info = it.parameters(), it.train_info
    for label in (-1, 3, 2**31 - 1, 2**31):
        with pytest.raises((MicroRuntimeError, ValueError), match="label"):
            it.train_step(x, label)
    for label in (1.5, np.float32(1.0), True, "1", np.array([0.5])):  # not an integer: refused, not converted
        with pytest.raises(TypeError, match="label must be an integer"):
            it.train_step(x, label)
    with pytest.raises(ValueError):
        it.train_step(x[..., :2], 0)
    with pytest.raises(ValueError):
        it.train_step(x.astype(np.float32), 0)
    assert _same_parameters(it.parameters(), before) and it.train_info == info


def test_non_finite_step_is_abandoned(models):
    """lr 1e37: the first step (the head starts at zero, loss ln 3) makes the float head huge
    (|w| about 4e37, finite), the second step's loss is not finite: TT_NUMERIC_ERROR, and that
    step changed no parameter, nor RNG or step count. (At lr 1e36 a zero head's losses stay
    finite, just under float32's maximum.)"""
    it = Interpreter(models["huge_lr"])
    failed = None
    for k, x in enumerate(_images(it, 10)):
        before, info = it.parameters(), it.train_info
        try:
            it.train_step(x, k % 3)
        except MicroRuntimeError as e:
            failed = e
            break
    assert failed is not None and failed.status == "TT_NUMERIC_ERROR", failed
    assert "step abandoned" in failed.message
    assert _same_parameters(it.parameters(), before) and it.train_info == info
