"""User-style int8 models (tests/user_models.py: Keras 3 or tf_keras + tfmot through the TF
2.21 converter) end to end: each one loads, or is refused at load with one line naming the
model and the op; the reference forward equals TFLite Micro byte for byte; it exports with a
bias-only, a last-2 and a partial-channel scheme; the C++ runtime's training steps equal the
NumPy reference trainer's byte for byte; three of them train in the Cortex-M4 firmware (QEMU)
with the host's losses.

The corpus is built once per session (and cached, see ``tests.user_models.corpus``).
"""
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pytest

import tflm_train
from tflm_train import GraphError, reference
from tflm_train.io.train_export import export
from tflm_train.training.scheme import SparseScheme
from tests.paths import REPO
from tests.test_micro_train import train_both
from tests.test_micro_host import tflm_invoke
from tests.test_reference import assert_same_bytes, random_inputs
from tests.user_models import CORPUS, corpus


@dataclass(frozen=True)
class Expect:
    """What a corpus model must do. ``refused``: substrings of the one-line load error
    (None: it loads and trains). ``owner``: set while a case fails for a reason another
    area is fixing (the case is then a strict xfail naming it)."""

    refused: Optional[Tuple[str, ...]] = None
    owner: Optional[str] = None


EXPECT = {
    "flatten_dynamic": Expect(),
    "flatten_batch1": Expect(),
    "gap_softmax_float_io": Expect(),
    "residual_adds": Expect(),
    "separable_convs": Expect(),
    "mobilenet_a025_32": Expect(),
    "mobilenet_v2_a035_32": Expect(),
    "qat_convnet": Expect(),
    "qat_flatten_softmax_float_io": Expect(),
    "signal_conv1d": Expect(),
    "signal_1xn_batch1": Expect(),
    "flat_input_reshaped": Expect(),
    "fc_classifier": Expect(),
    "conv1x1_classifier_batch1": Expect(),
    "separate_relu": Expect(),
    "concat_branches": Expect(),
    # outside the contract: refused at load with one line
    "int16x8": Expect(refused=("int16x8", "CONV_2D", "16x8")),
    # its EXPAND_DIMS become RESHAPEs and its placeholder RESHAPE shape [1, 1, 16, 8] (signature [-1, -1, 16, 8])
    # is resolved to [1, 16, 16, 8]: the two TILEs are its only problems
    "upsample": Expect(refused=("upsample: 2 problem(s)", "op 2 TILE", "op 5 TILE", "unsupported op")),
}
TRAINABLE = sorted(n for n, e in EXPECT.items() if e.refused is None)
REFUSED = sorted(n for n, e in EXPECT.items() if e.refused is not None)
#: small models trained in the firmware
ON_DEVICE = ("flatten_batch1", "residual_adds", "signal_1xn_batch1")


def _cases(names):
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=EXPECT[n].owner)) if EXPECT[n].owner else n
            for n in names]


def test_expectations_cover_the_corpus():
    assert set(EXPECT) == {n for n, s in CORPUS.items() if not s.extra}


@pytest.fixture(scope="session")
def user_models():
    return corpus()


@pytest.fixture(scope="session")
def graphs(user_models):
    """{name: QuantGraph or the GraphError of its load}."""
    out = {}
    for name, path in user_models.items():
        try:
            out[name] = tflm_train.load(path)
        except GraphError as e:
            out[name] = e
    return out


def loaded(graphs, name):
    g = graphs[name]
    if isinstance(g, GraphError):
        raise g
    return g


# --------------------------------------------------------------------------- load
@pytest.mark.parametrize("name", _cases(TRAINABLE))
def test_loads(graphs, name):
    g = loaded(graphs, name)
    assert len(g.inputs) == 1 and len(g.outputs) == 1
    assert g.tensors[g.inputs[0]].shape[0] == 1


@pytest.mark.parametrize("name", _cases(REFUSED))
def test_refused_at_load_with_one_line(user_models, graphs, name):
    e = graphs[name]
    assert isinstance(e, GraphError), f"{name} loaded; it is outside the contract"
    msg = str(e)
    assert "\n" not in msg and msg.startswith(name + ":"), msg
    for part in EXPECT[name].refused:
        assert part in msg, (part, msg)
    proc = subprocess.run([sys.executable, "-m", "tflm_train.cli", "inspect", user_models[name]], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"tflm-train: error: {msg}", proc.stderr[-2000:]


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", _cases(TRAINABLE))
def test_reference_equals_tflite_micro(user_models, graphs, name):
    g = loaded(graphs, name)
    data = open(user_models[name], "rb").read()
    inputs = random_inputs(g, 3, seed=11)
    file_shapes = getattr(g, "original_input_shapes", {})
    # a reshape folded into the input at load keeps the bytes: TFLite Micro gets the file's shape
    tflm_inputs = [[a.reshape(file_shapes.get(n, a.shape)) for n, a in zip(g.inputs, arrays)] for arrays in inputs]
    for k, (arrays, theirs) in enumerate(zip(inputs, tflm_invoke(data, tflm_inputs))):
        ours = reference.invoke(g, arrays)[0]
        assert_same_bytes(ours.reshape(theirs[0].shape), theirs[0], f"{name} input set {k}")


# --------------------------------------------------------------------------- training
def partial_scheme(graph) -> SparseScheme:
    """Biases of the last 3 conv layers, half the input channels of the third-last layer's
    weights and a quarter of the second-last's (at least one channel each)."""
    n = len(graph.conv_op_indices())
    return SparseScheme(min(3, n), {k: r for k, r in ((n - 3, 0.5), (n - 2, 0.25)) if k >= 0}, name="partial")


SCHEMES = {"bias-only": lambda g: "bias-only", "last-2": lambda g: "last-2", "partial": partial_scheme}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("name", _cases(TRAINABLE))
def test_export_trains_like_the_reference(graphs, name, scheme):
    g = loaded(graphs, name)
    # exactness at any size: the device budget (MobileNetV2's bias-only file is over 1 MB) is the benchmark's
    r = export(g, SCHEMES[scheme](g), num_classes=4, lr=0.01, budget_check=False)
    assert r.plan.peak_bytes > 0 and r.nbytes > 0
    _, tg, _, losses = train_both(r.data, steps=2, seed=7)
    assert all(np.isfinite(losses))


@pytest.mark.parametrize("name", ["gap_softmax_float_io", "qat_convnet"])
def test_keep_head_trains_like_the_reference(graphs, name):
    """The model's own classifier keeps training: a PTQ Dense whose zero bias the converter
    dropped (softmax after it), and a QAT Dense with a per-tensor bias, whose trained
    inference model must read back (regression: one scale but ten zero points)."""
    from tflm_train.io.tflite_reader import read_tflite

    g = loaded(graphs, name)
    r = export(g, "last-2", head="keep", lr=0.005)
    it, _, _, _ = train_both(r.data, steps=2, seed=8)
    trained = read_tflite(it.to_tflite())
    assert len(trained.ops) == len(g.ops)


# --------------------------------------------------------------------------- on the device
@pytest.mark.parametrize("name", _cases(ON_DEVICE))
def test_trains_on_cortex_m4(graphs, name):
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    g = loaded(graphs, name)
    r = export(g, partial_scheme(g), num_classes=4, lr=0.01)
    rng = np.random.default_rng(3)
    shape = r.train_graph.tensors[r.train_graph.inputs[0]].shape
    xs = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(2)]
    report = mcu.run_training(r.data, xs, [1, 3], steps=2)
    assert report.matches_host, (report.losses, report.host_losses)
    assert report.ram["reserved"] <= 256 * 1024 and report.flash["total"] <= 1024 * 1024


def test_trained_head_bias_reaches_the_inference_model(graphs):
    """The converter drops an all-zero Dense bias (an untrained or zero-initialized head); the
    trained head's bias must still reach the trained .tflite, for a new int8 head and a kept one
    (regression: it was dropped, and head='keep' refused such a classifier)."""
    from tflm_train.io.tflite_reader import read_tflite
    from tflm_train.ops.backward import dequantize
    from tflm_train.training.trainer import forward_logits

    g = loaded(graphs, "fc_classifier")
    cls = g.ops[g.conv_op_indices()[-1]]
    assert len(cls.inputs) < 3 or cls.inputs[2] is None, "the converter kept the zero bias"
    for head in ("int8", "keep"):
        r = export(g, "last-2", head=head, num_classes=6, lr=0.05)
        it, tg, state, _ = train_both(r.data, steps=3, seed=9)
        assert np.any(state.values["head/bias"] != 0)
        trained = read_tflite(it.to_tflite())
        t_cls = trained.ops[trained.conv_op_indices()[-1]]
        assert trained.tensors[t_cls.inputs[2]].data.tobytes() == state.values["head/bias"].tobytes()
        out = trained.tensors[trained.outputs[0]]
        for x in random_inputs(trained, 2, seed=10):
            logits = reference.invoke(trained, x)[0]
            real = dequantize(logits, float(out.scale[0]), int(out.zero_point[0])).reshape(-1)
            assert real.tobytes() == forward_logits(tg, state, x[0]).tobytes()
