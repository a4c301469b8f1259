"""CONCATENATION, standalone RELU / RELU6 and LEAKY_RELU, end to end, on models Keras 3 + the TF converter make.

Each op: the reference forward is byte-exact with the tflite-micro interpreter (20 random
inputs per model), the C++ inference runtime too, the Keras front-end equals the reference,
the backward equals TensorFlow's autodiff, and the C++ training step equals the NumPy
reference trainer byte for byte on a model joining two branches with CONCATENATION and on
one with separate ReLU / ReLU6 layers (exported with the planner's rules on).
"""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tests.new_ops_models import EXPECTED_OPS
from tests.paths import REPO
from tests.test_micro_train import train_both
from tests.test_reference import tflm_invoke
from tflm_train import reference
from tflm_train.contract import check
from tflm_train.graph import GraphError, Op, QuantGraph, Tensor
from tflm_train.io.tflite_reader import read_tflite
from tflm_train.io.train_export import export
from tflm_train.ops import backward as bw
from tflm_train.ops import forward as fw
from tflm_train.training.autodiff import build_train_graph
from tflm_train.training.scheme import SparseScheme

N_INPUTS = 20


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (bytes, QuantGraph)} of tests/new_ops_models.py, converted once in a subprocess."""
    out = tmp_path_factory.mktemp("new_ops_models")
    proc = subprocess.run([sys.executable, "-m", "tests.new_ops_models", str(out)], cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tests.new_ops_models failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = {}
    for name in EXPECTED_OPS:
        data = open(os.path.join(out, f"{name}.tflite"), "rb").read()
        result[name] = (data, read_tflite(data, name=name))
    return result


def file_inputs(graph, n, seed):
    """n int8 inputs over the full range."""
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(n)]


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", list(EXPECTED_OPS))
def test_converter_emits_the_ops(models, name):
    _, g = models[name]
    assert set(EXPECTED_OPS[name]) <= {op.type for op in g.ops}


@pytest.mark.parametrize("name", list(EXPECTED_OPS))
def test_reference_and_cpp_match_tflite_micro(models, name):
    from tflm_train.micro import Interpreter

    data, g = models[name]
    xs = file_inputs(g, N_INPUTS, seed=7)
    theirs = tflm_invoke(data, [[x] for x in xs])
    ours = Interpreter(data)
    for k, (x, (t,)) in enumerate(zip(xs, theirs)):
        ref = reference.invoke(g, x)[0]
        assert np.array_equal(ref.reshape(-1), np.asarray(t).reshape(-1)), f"{name} input {k}: reference != TFLM"
        got = ours.invoke([x])[0]
        assert np.array_equal(np.asarray(got).reshape(-1), np.asarray(t).reshape(-1)), f"{name} input {k}: C++ != TFLM"


def test_relu_multiplier_is_the_float32_quotient():
    # TFLite Micro divides the float32 scales in float32 before widening to double
    s_in, s_out = 0.012955483, 0.006931742
    want = np.float32(s_in) / np.float32(s_out)
    assert fw.relu_multiplier(s_in, s_out) == tuple(int(v) for v in fw.quant.quantize_multiplier(float(want)))
    x = np.arange(-128, 128, dtype=np.int8)
    y = fw.relu(x, input_scale=s_in, input_zero_point=-9, output_scale=s_out, output_zero_point=-128)
    assert y.min() == -128 and np.all(np.diff(y.astype(int)) >= 0)
    assert y[-1] == -128 + round((127 + 9) * s_in / s_out)  # 126: requantized, not copied
    y6 = fw.relu6(x, input_scale=0.02, input_zero_point=-10)
    assert (y6.min(), y6.max()) == (-10, 127)  # zp + round(6 / 0.02) = 290 saturates


def _concat_graph(scale_b):
    t = {
        "a": Tensor("a", (1, 2, 2, 3), "int8", [0.05], [1]),
        "b": Tensor("b", (1, 2, 2, 2), "int8", [scale_b], [1]),
        "y": Tensor("y", (1, 2, 2, 5), "int8", [0.05], [1]),
    }
    return QuantGraph(t, [Op("CONCATENATION", ["a", "b"], ["y"], dict(axis=-1, activation="NONE"), "cat")],
                      ["a", "b"], ["y"], name="cat")


def test_concatenation_with_differing_quantization_is_refused():
    g = _concat_graph(0.05)
    a = np.arange(12, dtype=np.int8).reshape(1, 2, 2, 3)
    b = -np.arange(8, dtype=np.int8).reshape(1, 2, 2, 2)
    assert np.array_equal(reference.invoke(g, [a, b])[0], np.concatenate([a, b], axis=3))
    check(g, training=False)
    bad = _concat_graph(0.07)
    with pytest.raises(GraphError, match=r"op 0 CONCATENATION 'cat': input 'b' and output 'y' are quantized differently"):
        check(bad, training=False)
    with pytest.raises(GraphError, match="share the output's scale and zero point"):
        reference.invoke(bad, [a, b])


def test_negative_leaky_relu_slope_is_refused():
    t = {"x": Tensor("x", (1, 4), "int8", [0.05], [0]), "y": Tensor("y", (1, 4), "int8", [0.05], [0])}
    g = QuantGraph(t, [Op("LEAKY_RELU", ["x"], ["y"], dict(alpha=-0.5), "leaky")], ["x"], ["y"], name="leaky")
    with pytest.raises(GraphError, match=r"op 0 LEAKY_RELU 'leaky': negative slope \(alpha\) -0.5 is unsupported"):
        check(g, training=False)
    with pytest.raises(GraphError, match="negative slope"):
        reference.invoke(g, np.zeros((1, 4), np.int8))


# --------------------------------------------------------------------------- Keras front-end
@pytest.mark.parametrize("name", list(EXPECTED_OPS))
def test_keras_forward_equals_reference(models, name):
    from tests.test_keras import mismatch
    from tflm_train.keras import from_graph

    _, g = models[name]
    xs = np.random.default_rng(3).integers(-128, 128, (4,) + g.tensors[g.inputs[0]].shape[1:]).astype(np.int8)
    bad, total = mismatch(g, from_graph(g), xs)
    assert total > 0 and bad == 0, f"{bad} of {total} emulated elements differ from the reference"


# --------------------------------------------------------------------------- backward vs TensorFlow
def test_concatenation_grad_matches_tf():
    tf = pytest.importorskip("tensorflow")
    from tests.test_backward_ops import tf_grads

    rng = np.random.default_rng(0)
    for axis, sizes in ((3, (3, 5, 2)), (1, (2, 4)), (2, (1, 3))):
        shapes = [[1, 4, 5, 6] for _ in sizes]
        for s, n in zip(shapes, sizes):
            s[axis] = n
        xs = [rng.normal(size=s) for s in shapes]
        out = np.concatenate(xs, axis=axis)
        g = rng.normal(size=out.shape).astype(np.float32)
        want = tf_grads(lambda *v: tf.concat(list(v), axis=axis), xs, g)
        begin = 0
        for x, w in zip(xs, want):
            got = bw.concatenation_grad(g, axis, begin, x.shape[axis])
            assert got.dtype == np.float32 and np.array_equal(got, w.astype(np.float32))
            begin += x.shape[axis]


@pytest.mark.parametrize("kind", ["RELU", "RELU6"])
def test_relu_backward_matches_tf(kind):
    """RELU / RELU6 backward is the straight-through CLAMP_GRAD on the op's int8 output: equal
    to TensorFlow's gradient of relu / relu6 of the real input wherever the input is not
    within rounding of a clamp bound."""
    tf = pytest.importorskip("tensorflow")
    from tests.test_backward_ops import tf_grads

    rng = np.random.default_rng(1)
    xq = rng.integers(-128, 128, (1, 6, 6, 4)).astype(np.int8)
    s_in, z_in = 0.05, -20
    if kind == "RELU":
        s_out, z_out = 0.03, -128
        y = fw.relu(xq, input_scale=s_in, input_zero_point=z_in, output_scale=s_out, output_zero_point=z_out)
        lo, hi = fw.quant.activation_range("RELU", s_out, z_out)
        fn = tf.nn.relu
    else:
        y = fw.relu6(xq, input_scale=s_in, input_zero_point=z_in)
        lo, hi = fw.relu6_range(s_in, z_in)
        fn = tf.nn.relu6
    x = bw.dequantize(xq, s_in, z_in)
    g = rng.normal(size=xq.shape).astype(np.float32)
    (want,) = tf_grads(fn, [x], g)
    got = bw.clamp_grad(g, y, lo, hi)
    away = (np.abs(x) > 0.04) & (np.abs(x - 6.0) > 0.04)  # not within rounding of 0 or 6
    assert away.sum() > 100 and np.array_equal(got[away], want.astype(np.float32)[away])


def test_leaky_relu_backward_matches_tf():
    tf = pytest.importorskip("tensorflow")
    from tests.test_backward_ops import tf_grads

    rng = np.random.default_rng(4)
    xq = rng.integers(-128, 128, (1, 6, 6, 4)).astype(np.int8)
    s_in, z_in, s_out, z_out, alpha = 0.05, 10, 0.02, -40, 0.2  # large inputs saturate the output
    y = fw.leaky_relu(xq, input_scale=s_in, input_zero_point=z_in, output_scale=s_out, output_zero_point=z_out,
                      alpha=alpha)
    x = bw.dequantize(xq, s_in, z_in)
    g = rng.normal(size=xq.shape).astype(np.float32)
    (want,) = tf_grads(lambda v: tf.nn.leaky_relu(v, alpha=np.float32(alpha)), [x], g)
    got = bw.leaky_relu_grad(bw.clamp_grad(g, y, -128, 127), xq, z_in, np.float32(alpha))
    inside = (y > -128) & (y < 127)
    assert inside.sum() > 100 and (~inside).sum() > 5  # the output's int8 clamp is exercised
    assert np.allclose(got[inside], want[inside], rtol=1e-6, atol=0)
    assert np.all(got[~inside] == 0)


# --------------------------------------------------------------------------- training: C++ == reference
def _scheme(g, kind):
    n = len(g.conv_op_indices())
    if kind == "bias-only":
        return SparseScheme(n - 1, {}, name="bias-only")
    return SparseScheme(n - 1, {k: 1.0 for k in range(n - 1)}, name="all")


@pytest.mark.parametrize("name,head,scheme", [
    ("concat_branches", "float", "all"), ("concat_branches", "int8", "bias-only"),
    ("relu_layers", "float", "all"), ("relu_layers", "int8", "bias-only"),
    ("leaky_relu", "float", "all"), ("leaky_relu", "int8", "bias-only"),
])
def test_cpp_train_step_equals_reference(models, name, head, scheme):
    _, g = models[name]
    r = export(g, _scheme(g, scheme), head=head, num_classes=4, lr=0.02)
    types = {op.type for op in r.train_graph.ops}
    assert set(EXPECTED_OPS[name]) - {"FULLY_CONNECTED", "CONV_2D", "MEAN", "MAX_POOL_2D"} <= types
    if name == "concat_branches" and scheme == "all":
        assert types >= {"CONCATENATION_GRAD", "CLAMP_GRAD"}
    if name == "leaky_relu" and scheme == "all":
        assert "LEAKY_RELU_GRAD" in types
    _, _, _, losses = train_both(r.data, steps=4, seed=5)
    assert all(np.isfinite(losses))


def test_rescaling_relu6_trains_with_its_slope(models):
    """The converter may give a RELU6 after a join another output scale; TFLite Micro's RELU6
    copies the clamped bytes regardless, so its real slope is s_out / s_in: the backward
    scales by it (GRAD_SCALE), and the C++ step still equals the reference. The model also
    concatenates one tensor twice and a tensor with a function of itself (gradient sums)."""
    _, g = models["concat_axes"]
    relu6 = next(op for op in g.ops if op.type == "RELU6")
    x, y = g.tensors[relu6.inputs[0]], g.tensors[relu6.outputs[0]]
    assert np.float32(x.scale[0]) != np.float32(y.scale[0])
    r = export(g, _scheme(g, "all"), head="float", num_classes=3, lr=0.02)
    ops = r.train_graph.ops
    scale = next(op for op in ops if op.type == "GRAD_SCALE")
    assert scale.attrs["factor"] == np.float32(np.float32(y.scale[0]) / np.float32(x.scale[0]))
    assert sum(op.type == "CONCATENATION_GRAD" for op in ops) >= 5 and any(op.type == "GRAD_ACCUMULATE" for op in ops)
    _, _, _, losses = train_both(r.data, steps=3, seed=6)
    assert all(np.isfinite(losses))


def test_rescaling_relu6_backward_matches_tf():
    tf = pytest.importorskip("tensorflow")
    from tests.test_backward_ops import tf_grads

    rng = np.random.default_rng(2)
    xq = rng.integers(-128, 128, (1, 5, 5, 3)).astype(np.int8)
    s_in, z_in, s_out, z_out = 0.011, 0, 0.0099, -14
    y = fw.relu6(xq, input_scale=s_in, input_zero_point=z_in)
    lo, hi = fw.relu6_range(s_in, z_in)
    x = bw.dequantize(xq, s_in, z_in)

    def real_relu6(v):  # what the int8 op computes, read in the output's quantization (unrounded)
        return s_out * (tf.clip_by_value(v / s_in + z_in, lo, hi) - z_out)

    g = rng.normal(size=xq.shape).astype(np.float32)
    (want,) = tf_grads(real_relu6, [x], g)
    got = bw.grad_scale(bw.clamp_grad(g, y, lo, hi), np.float32(s_out) / np.float32(s_in))
    inside = (y > lo) & (y < hi)
    assert inside.sum() > 10 and (~inside).sum() > 10
    away = (xq != lo) & (xq != hi)  # the straight-through rule and TF differ exactly at a bound
    assert np.allclose(got[away], want[away], rtol=1e-6, atol=0)


def test_new_ops_train_on_cortex_m4(models):
    """The firmware (Cortex-M4 in QEMU) trains both models to the host runtime's losses and
    logits (which equal the reference's, above): CONCATENATION, RELU, RELU6, GRAD_SCALE and
    CONCATENATION_GRAD kernels on the device."""
    from tests.test_mcu_qemu import _tools_or_skip
    from tflm_train.micro import mcu

    _tools_or_skip()
    expected = {"concat_axes": {"CONCATENATION", "RELU6", "CONCATENATION_GRAD", "GRAD_SCALE"},
                "relu_layers": {"RELU", "RELU6", "CLAMP_GRAD"},
                "leaky_relu": {"LEAKY_RELU", "LEAKY_RELU_GRAD"}}
    for name, ops in expected.items():
        _, g = models[name]
        r = export(g, _scheme(g, "all"), head="float", num_classes=3, lr=0.02)
        assert ops <= {op.type for op in r.train_graph.ops}
        rng = np.random.default_rng(1)
        xs = [rng.integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8) for _ in range(2)]
        report = mcu.run_training(r.data, xs, [1, 2], steps=3)
        assert report.matches_host, (name, report.losses, report.host_losses)
        assert all(np.isfinite(report.losses))


def test_keras_fit_and_write_back_through_the_new_ops(models):
    """from_graph + QAS + SparseUpdate train through CONCATENATION / RELU6 (rescaling) and the
    trained model writes back (to_graph) with the same op sequence, its forward still the
    reference's."""
    import keras

    from tests.test_keras import mismatch
    from tflm_train.keras import QAS, SparseUpdate, from_graph, to_graph

    _, g = models["concat_axes"]
    model = from_graph(g, num_classes=3, head="int8")
    model.compile(optimizer=QAS(keras.optimizers.SGD(0.01)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    xs = rng.integers(-128, 128, (8,) + g.tensors[g.inputs[0]].shape[1:]).astype(np.float32)
    ys = rng.integers(0, 3, 8)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(xs, ys, epochs=1, batch_size=1, verbose=0, callbacks=[SparseUpdate(_scheme(g, "all"))])
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    g2 = to_graph(model)
    assert [op.type for op in g2.ops] == [op.type for op in g.ops]
    bad, total = mismatch(g2, from_graph(g2), xs[:2].astype(np.int8))
    assert total > 0 and bad == 0
