"""The user-facing surface: scheme spellings, device budgets, learning-rate defaults, the public
API, the micro Interpreter's arguments, ``mcu-run``'s arguments and user data, TF log noise.

Everything runs for real (the CLI in process, the C++ runtime, QEMU for one short run); the
model is the bundled Fashion-MNIST backbone (17 ops, 32x32x1), cheap to export.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tflm_train
from tflm_train import cli
from tflm_train.budget import BudgetError, BudgetReport
from tflm_train.graph import GraphError
from tflm_train.training.autodiff import DEFAULT_LRS, default_lr
from tflm_train.training.scheme import SCHEME_FORMS, SparseScheme, scheme_of
from tests.paths import REPO, SCHEMES

MODEL = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
MODEL_SCHEME = os.path.join(REPO, "examples", "schemes", "fmnist_backbone.json")


@pytest.fixture(scope="module")
def graph():
    return tflm_train.load(MODEL)


@pytest.fixture(scope="module")
def train_file():
    """A small training file (last-2, new float head) and its inference-model size."""
    r = tflm_train.export(tflm_train.load(MODEL), "last-2")
    return r.data


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``tflm-train ARGV`` run in this process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("tflm-train: error:"), err
    return lines[0]


# --------------------------------------------------------------------------- scheme spellings
def test_every_scheme_spelling_parses_in_one_place(graph, tmp_path):
    same = [("bias-only", "bias_only"), ("last-2", "last_k(2)"), ("full", " full ")]
    for a, b in same:
        sa, sb = scheme_of(a, graph), scheme_of(b, graph)
        assert (sa.n_bias_update, sa.weight_update) == (sb.n_bias_update, sb.weight_update)
    n = len(graph.conv_op_indices())
    assert scheme_of("bias_only", graph).n_bias_update == n and not scheme_of("bias_only", graph).weight_update
    assert scheme_of("last_k(2)", graph).weight_update == {n - 2: 1.0}
    assert scheme_of(MODEL_SCHEME + ":sparse", graph).weight_update == {9: 0.5, 11: 0.5, 12: 1.0}
    single = tmp_path / "one.scheme"  # any file name: a file is a file
    single.write_text(json.dumps({"n_bias_update": 3, "weight_update": []}))
    assert scheme_of(str(single), graph).n_bias_update == 3
    # the same parser behind export, plan and SparseScheme.parse
    assert SparseScheme.parse("bias_only", graph).n_bias_update == n
    assert tflm_train.plan(graph, "last_k(2)").peak_bytes == tflm_train.plan(graph, "last-2").peak_bytes
    for bad in ("bias-onyl", "last-x", "last_k(0)", "nothere.json", "nothere.json:KEY", "last-"):
        with pytest.raises(GraphError) as e:
            scheme_of(bad, graph)
        if bad != "last_k(0)":
            assert all(form in str(e.value) for form in SCHEME_FORMS), str(e.value)
    with pytest.raises(GraphError, match="pick one of"):
        scheme_of(MODEL_SCHEME, graph)
    with pytest.raises(GraphError, match="no scheme 'nope'"):
        scheme_of(MODEL_SCHEME + ":nope", graph)


def test_scheme_file_for_another_model_is_refused_unless_forced(graph, capsys, tmp_path):
    other = os.path.join(SCHEMES, "mcunet-5fps.json") + ":49kb"
    with pytest.raises(GraphError, match="made for model 'mcunet-5fps', not 'fmnist_backbone'"):
        scheme_of(other, graph)
    with pytest.raises(GraphError, match="made for model"):
        tflm_train.export(graph, SparseScheme.from_json(os.path.join(SCHEMES, "mcunet-5fps.json"), "49kb"))
    out = tmp_path / "t.tflite"
    code, _, err = run_cli(capsys, "export", MODEL, "--scheme", other, "-o", out)
    assert code == 2 and "--force-scheme" in one_error_line(err) and not out.exists()
    # its indices happen to be in range of this 14-layer model? then forcing applies it
    forced = scheme_of(other, graph, force=True)
    assert forced.model == "mcunet-5fps"
    with pytest.raises(GraphError, match="conv index .* out of range"):
        tflm_train.export(graph, other, force_scheme=True)
    # this model's own file, and a file that names no model, pass
    assert scheme_of(MODEL_SCHEME + ":sparse", graph).model == "fmnist_backbone"


# --------------------------------------------------------------------------- budgets
def test_export_reports_budget_and_overhead(graph, tmp_path, capsys):
    r = tflm_train.export(graph, "bias-only")
    b = r.budget
    assert b.ram_bytes == r.plan.peak_bytes and b.file_bytes == r.nbytes and b.fits
    assert b.inference_bytes == len(r.infer_graph.to_tflite())
    assert b.overhead_bytes == r.nbytes - b.inference_bytes > 0
    assert b.overhead_percent == pytest.approx(100 * b.overhead_bytes / b.inference_bytes)
    out = tmp_path / "t.tflite"
    code, stdout, err = run_cli(capsys, "export", MODEL, "--scheme", "bias-only", "-o", out)
    assert code == 0 and err == "" and out.read_bytes() == r.data
    assert f"training file overhead over its inference model ({b.inference_bytes:,} bytes): " \
           f"+{b.overhead_bytes:,} bytes" in stdout
    assert "of 256 KB" in stdout and "of 1024 KB flash" in stdout


def test_over_budget_is_refused_with_one_line_and_nothing_written(graph, tmp_path, capsys):
    peak = tflm_train.export(graph, "full", budget_check=False).plan.peak_bytes
    ram_kb = peak // 1024 - 10  # 10+ KB short
    with pytest.raises(BudgetError, match=rf"RAM: planned peak {peak:,} bytes .* over the {ram_kb} KB budget by "
                                          rf"{peak - ram_kb * 1024:,} bytes"):
        tflm_train.export(graph, "full", str(tmp_path / "py.tflite"), ram_kb=ram_kb)
    assert not (tmp_path / "py.tflite").exists()
    out = tmp_path / "t.tflite"
    code, stdout, err = run_cli(capsys, "export", MODEL, "--scheme", "full", "-o", out, "--ram-kb", ram_kb,
                                "--flash-kb", 64)  # the file is 91 KB
    line = one_error_line(err)
    assert code == 2 and not out.exists() and stdout == ""
    assert f"over the {ram_kb} KB budget by {peak - ram_kb * 1024:,} bytes" in line
    assert "flash: the training file" in line
    code, stdout, err = run_cli(capsys, "export", MODEL, "--scheme", "full", "-o", out, "--ram-kb", ram_kb,
                                "--no-budget-check")
    assert code == 0 and out.exists() and "OVER" in stdout
    # plan: the same figures (the file exported to memory), refused the same way
    code, stdout, err = run_cli(capsys, "plan", MODEL, "--scheme", "full", "--json", "--ram-kb", ram_kb)
    budget = json.loads(stdout)["budget"]
    assert code == 2 and not budget["fits"] and budget["ram_bytes"] == peak
    assert budget["file_bytes"] == out.stat().st_size and budget["overhead_bytes"] > 0
    assert "over the device budget" in one_error_line(err)
    code, stdout, err = run_cli(capsys, "plan", MODEL, "--scheme", "full", "--ram-kb", peak // 1024 + 1)
    assert code == 0 and "fits" in stdout and "training file overhead" in stdout
    for bad in (["--ram-kb", "0"], ["--flash-kb", "-5"], ["--ram-kb", "x"]):
        code, _, err = run_cli(capsys, "plan", MODEL, *bad)
        assert code == 2 and one_error_line(err)
    with pytest.raises(GraphError, match="ram_kb"):
        tflm_train.export(graph, "full", ram_kb=0)


def test_budget_report_arithmetic():
    b = BudgetReport(ram_bytes=256 * 1024 + 1, ram_kb=256, file_bytes=1000, flash_kb=1, inference_bytes=800)
    assert b.over() == ["RAM: planned peak 262,145 bytes (256.0 KB) is over the 256 KB budget by 1 bytes (0.0 KB)"]
    assert (b.overhead_bytes, b.overhead_percent) == (200, 25.0)
    assert BudgetReport(256 * 1024, 256, 1024, 1).fits  # at the budget is inside it


# --------------------------------------------------------------------------- learning rate
def test_learning_rate_default_per_head_and_checks(graph, tmp_path, capsys):
    assert DEFAULT_LRS["keep"] < DEFAULT_LRS["float"] == DEFAULT_LRS["int8"]
    for head in ("float", "keep"):
        r = tflm_train.export(graph, "last-2", head=head)
        assert r.train_graph.lr == pytest.approx(default_lr(head))
        out = tmp_path / f"{head}.tflite"
        code, stdout, _ = run_cli(capsys, "export", MODEL, "--scheme", "last-2", "--head", head, "-o", out)
        assert code == 0 and f"learning rate {default_lr(head):g} (the default for --head {head}" in stdout
    code, stdout, _ = run_cli(capsys, "export", MODEL, "--scheme", "last-2", "--lr", "0.003", "-o", out)
    assert code == 0 and "learning rate 0.003\n" in stdout
    for bad in ("nan", "inf", "-inf", "0", "-0.1", "abc"):
        code, _, err = run_cli(capsys, "export", MODEL, "--scheme", "last-2", "--lr", bad, "-o", out)
        assert code == 2 and "--lr" in one_error_line(err)
    for bad in (float("nan"), float("inf"), 0.0, -1.0, "0.1", True):
        with pytest.raises(GraphError, match="learning rate"):
            tflm_train.export(graph, "last-2", lr=bad)


# --------------------------------------------------------------------------- public API
def test_import_is_light_and_submodules_are_reachable():
    code = ("import sys, tflm_train\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert tflm_train.SparseScheme.__name__ == 'SparseScheme'\n"
            "assert callable(tflm_train.reference.invoke) and callable(tflm_train.micro.Interpreter)\n"
            "assert 'tensorflow' not in sys.modules\n"
            "assert 'keras' in dir(tflm_train)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_keras_import_prints_no_tensorflow_startup_noise():
    """``tflm_train.keras`` (what the main job imports) leaves stderr empty: no absl / CUDA /
    oneDNN lines (tflm_train.tf_quiet); TFLM_TRAIN_VERBOSE=1 would let them through."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFLM_TRAIN_VERBOSE")}
    code = "import tflm_train\nm = tflm_train.keras\nimport keras\nprint(m.from_graph.__name__)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout == "from_graph\n", proc.stderr
    noise = [l for l in proc.stderr.splitlines() if any(w in l for w in ("absl", "cuda", "cuInit", "oneDNN"))]
    assert proc.stderr.strip() == "", noise or proc.stderr


def test_interpreter_takes_a_path_or_bytes_and_reports_the_training_arena(train_file, tmp_path):
    from tflm_train.micro import Interpreter

    path = tmp_path / "t.tflite"
    path.write_bytes(train_file)
    a, b, c = Interpreter(str(path)), Interpreter(path), Interpreter(train_file)
    assert a.arena_bytes == b.arena_bytes == c.arena_bytes == a.train_info["arena_bytes"]
    assert a.arena_bytes != a.infer_arena_bytes  # the training arena, not subgraph 0's
    infer = Interpreter(tflm_train.load(MODEL).to_tflite())
    assert infer.arena_bytes == infer.infer_arena_bytes
    with pytest.raises(TypeError, match="path or its bytes"):
        Interpreter(12345)
    with pytest.raises(FileNotFoundError):
        Interpreter(str(tmp_path / "missing.tflite"))


def test_train_step_labels_must_be_integer_classes(train_file):
    from tflm_train.micro import Interpreter

    it = Interpreter(train_file)
    x = np.zeros(it.train_info["image_shape"], np.int8)
    before = it.parameters()
    for bad in ("3", 1.5, 3.0, True, np.float32(2), None, [1, 2]):
        with pytest.raises(TypeError, match="label must be an integer"):
            it.train_step(x, bad)
    for bad in (10, -1, np.int64(10), 1 << 40):
        with pytest.raises(ValueError, match=rf"label {int(bad)} (is )?outside"):
            it.train_step(x, bad)
    after = it.parameters()
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)  # refused steps changed nothing
    assert np.isfinite(it.train_step(x, np.int64(3))) and np.isfinite(it.train_step(x, np.array([4])))


# --------------------------------------------------------------------------- mcu-run
@pytest.mark.parametrize("argv, what", [
    (["--steps", "-1"], "--steps"), (["--steps", "0"], "--steps"), (["--steps", "1000001"], "--steps"),
    (["--samples", "0"], "--samples"), (["--ram-kb", "1"], "--ram-kb"), (["--ram-kb", "100000"], "--ram-kb"),
    (["--steps", "two"], "--steps"),
])
def test_mcu_run_rejects_bad_arguments_at_once(capsys, tmp_path, argv, what):
    code, _, err = run_cli(capsys, "mcu-run", MODEL, *argv)
    assert code == 2 and what in one_error_line(err)


def test_mcu_run_python_checks_arguments_before_any_build(train_file):
    from tflm_train.micro import mcu

    for kwargs in (dict(steps=-1), dict(steps=0), dict(steps=mcu.MAX_STEPS + 1), dict(samples=0),
                   dict(steps=1.5), dict(ram_bytes=1024)):
        with pytest.raises(ValueError):
            mcu.mcu_run(train_file, **kwargs)
    with pytest.raises(ValueError, match="training .tflite"):
        mcu.mcu_run(tflm_train.load(MODEL).to_tflite())
    # the QEMU limit grows with the work, and a run past it fails loudly (McuError)
    assert mcu.qemu_timeout(train_file, 100) > mcu.qemu_timeout(train_file, 1) > mcu.QEMU_BASE_SECONDS


def digit_like(n=5):
    """Images as a user has them: uint8 8x8x1 (like scikit-learn's digits), integer labels."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8), rng.integers(0, 10, n)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_user_samples_are_checked_resized_and_quantized(tmp_path):
    from tflm_train.datasets import prepare_images, to_int8_input
    from tflm_train.micro.mcu import user_samples

    shape, q = (1, 32, 32, 1), (1 / 255, -128)
    x, y = digit_like()
    good = _npz(tmp_path / "digits.npz", x=x[:5], y=y[:5])
    xs, labels = user_samples(good, shape, q, 10, 3)
    want = to_int8_input(prepare_images(x[:3], 32, 1), *q)
    assert labels == [int(v) for v in y[:3]] and len(xs) == 3
    assert all(a.shape == shape and a.tobytes() == b.tobytes() for a, b in zip(xs, want))
    f, _ = user_samples(_npz(tmp_path / "f.npz", x=x[:2, ..., 0].astype(np.float32) / 255, y=y[:2]), shape, q, 10, 2)
    assert [a.tobytes() for a in f] == [b.tobytes() for b in to_int8_input(prepare_images(x[:2], 32, 1), *q)]
    rgb, _ = user_samples(good, (1, 16, 16, 3), q, 10, 1)  # one channel replicated to three
    assert rgb[0].shape == (1, 16, 16, 3)
    q8 = np.arange(2 * 32 * 32).astype(np.int8).reshape(2, 32, 32, 1)
    got, _ = user_samples(_npz(tmp_path / "q.npz", x=q8, y=np.array([1, 2])), shape, q, 10, 2)
    assert got[1].tobytes() == q8[1].tobytes()  # int8: already quantized, taken as is
    bad = {
        "no array 'y'": dict(x=x[:2]),
        "labels y must be integers": dict(x=x[:2], y=np.array([1.0, 2.0])),
        r"label y\[1\] = 12 is outside the model's 10 classes": dict(x=x[:2], y=np.array([1, 12])),
        "one label per image": dict(x=x[:2], y=np.array([1, 2, 3])),
        "2 channels": dict(x=np.zeros((2, 8, 8, 2), np.uint8), y=np.array([1, 2])),
        r"pixels in \[0, 1\], found \[2, 2\]": dict(x=np.full((1, 8, 8), 2.0), y=np.array([1])),
        "non-finite": dict(x=np.full((1, 8, 8), np.nan, np.float32), y=np.array([1])),
        "must have the input's shape": dict(x=np.zeros((1, 8, 8, 1), np.int8), y=np.array([1])),
        "not int32": dict(x=np.zeros((1, 8, 8), np.int32), y=np.array([1])),
        "with N >= 1": dict(x=np.zeros((0, 8, 8), np.uint8), y=np.zeros(0, np.int64)),
    }
    for message, arrays in bad.items():
        with pytest.raises(ValueError, match=message):
            user_samples(_npz(tmp_path / "bad.npz", **arrays), shape, q, 10, 2)
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not an .npz with arrays x"):
        user_samples(str(tmp_path / "junk.npz"), shape, q, 10, 1)


def test_firmware_arrays_do_not_depend_on_arena_or_steps(tmp_path):
    """The generated arrays' source is the same for the probe and the real build (only the
    header changes), so a run compiles the model array once."""
    from tflm_train.micro.mcu import write_train_firmware_data

    model, xs = b"\x01" * 100, [np.zeros(16, np.int8)]
    a = write_train_firmware_data(model, xs, [1], 0, 10, 16, 4096, str(tmp_path))
    first = open(a).read()
    header = open(tmp_path / "firmware_data.h").read()
    write_train_firmware_data(model, xs, [1], 5, 10, 16, 8192, str(tmp_path))
    assert open(a).read() == first and open(tmp_path / "firmware_data.h").read() != header
    assert "firmware_data.h" not in first


def test_mcu_run_trains_on_the_users_npz(train_file, tmp_path, capsys):
    """One short QEMU run: the user's images (uint8 8x8, resized to 32x32) are the samples;
    progress lines go to stderr while it builds; the device's losses equal the host's."""
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    x, y = digit_like(4)
    data = _npz(tmp_path / "digits.npz", x=x, y=y)
    model = tmp_path / "t.tflite"
    model.write_bytes(train_file)
    code, stdout, err = run_cli(capsys, "mcu-run", model, "--steps", 2, "--samples", 2, "--data", data, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["matches_host"] and report["labels"] == [int(v) for v in y[:2]]
    assert report["flash"]["samples"] == 2 * 32 * 32 + 4 * 2
    progress = err.splitlines()
    assert any("building the firmware" in l for l in progress) and any("QEMU" in l for l in progress)
    assert all(l.startswith("tflm-train: ") for l in progress)
    code, _, err = run_cli(capsys, "mcu-run", model, "--data", str(tmp_path / "none.npz"))
    assert code == 2 and "no such file" in one_error_line(err)


def test_a_run_past_its_time_limit_fails_loudly(train_file):
    """QEMU is never left running: past the limit, the run stops with McuError (the CLI: one line, exit 2)."""
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    x = np.zeros((1, 32, 32, 1), np.int8)
    with pytest.raises(mcu.McuError, match=r"QEMU did not finish within 0.01 s"):
        mcu.run_training(train_file, [x], [1], 1, arena_bytes=64 * 1024, timeout=0.01)


def test_stream_input_exports_or_refuses_in_one_line(tmp_path, capsys):
    """``--stream-input``: the file's plan takes the image in rows; where a trained layer reads
    the image, one error line, exit 2, nothing written."""
    from tests.paths import seed_model
    from tflm_train.io.train_export import read_training_file

    out = tmp_path / "rows.tflite"
    code, stdout, err = run_cli(capsys, "export", seed_model("mcunet-5fps"), "--input-size", 48, "--scheme",
                                os.path.join(SCHEMES, "mcunet-5fps.json") + ":99kb", "--stream-input", "-o", out)
    assert code == 0 and err == "", err
    _, _, plan = read_training_file(out.read_bytes())
    assert plan.stream_input and plan.tensors["input"].storage == "band"
    refused = tmp_path / "full.tflite"
    code, _, err = run_cli(capsys, "export", seed_model("mcunet-5fps"), "--input-size", 48, "--scheme", "full",
                           "--stream-input", "-o", refused)
    assert code == 2 and not refused.exists()
    assert "cannot arrive in rows: step" in one_error_line(err) and "first_conv/update" in err
