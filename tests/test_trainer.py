"""The reference trainer: frozen bytes stay, trained ones move, loss falls, seeds reproduce,
the whole-graph gradient equals TensorFlow's autodiff of the straight-through real function."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tflm_train import reference
from tflm_train.graph import GraphError
from tflm_train.io.npz_reader import load_npz
from tflm_train.ops import backward as bw
from tflm_train.ops import quant
from tflm_train.training import (
    SparseScheme, TrainState, apply_to_graph, build_train_graph, evaluate, forward_logits, run_step, train_step,
)

from .paths import PERSON_DETECT, SCHEMES, seed_model


def images(n, size, seed=0, channels=3):
    """Smooth random int8 images (noise blurred a little, so activations look natural)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size // 4, size // 4, channels))
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2) + 0.3 * rng.normal(size=(n, size, size, channels))
    return np.clip(np.round(x * 50), -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def mcunet32():
    return load_npz(seed_model("mcunet-5fps"), input_size=32)


@pytest.fixture(scope="module")
def scheme_49kb():
    return SparseScheme.from_json(os.path.join(SCHEMES, "mcunet-5fps.json"), "49kb")


@pytest.mark.parametrize("head", ["float", "int8"])
def test_frozen_bytes_stay_trained_bytes_move(mcunet32, scheme_49kb, head):
    tg = build_train_graph(mcunet32, scheme_49kb, num_classes=10, head=head, lr=0.01)
    state = TrainState.from_train_graph(tg)
    before = {n: t.data.copy() for n, t in tg.tensors.items() if t.data is not None}
    xs = images(4, 32)
    for i in range(6):
        train_step(tg, state, xs[i % 4], i % 3)
    # constants (frozen weights/biases, shapes) are never written
    for n, t in tg.tensors.items():
        if t.kind == "constant":
            assert np.array_equal(t.data, before[n]), n
        if t.kind in ("parameter", "state"):
            assert np.array_equal(t.data, before[n]), f"{n}: graph data must stay the initial value"
    changed = [n for n, v in state.values.items() if not np.array_equal(v, before[n])]
    assert "head/weight" in changed and "head/bias" in changed and "rng/state" in changed
    assert len(changed) >= len(state.values) - 3  # nearly every trained tensor moved
    # within an updated weight, unselected channels keep their bytes
    for layer in tg.layers:
        if layer["channels"] and layer["weight"] != "head/weight":
            w0, w1 = before[layer["weight"]], state.values[layer["weight"]]
            axis = 3
            frozen = [c for c in range(w0.shape[axis]) if c not in layer["channels"]]
            assert np.array_equal(np.take(w0, frozen, axis), np.take(w1, frozen, axis))
            assert not np.array_equal(np.take(w0, layer["channels"], axis), np.take(w1, layer["channels"], axis))
    assert state.steps == 6


@pytest.mark.parametrize("head,lr", [("float", 0.002), ("int8", 0.002)])
def test_loss_decreases_on_a_repeated_batch(mcunet32, scheme_49kb, head, lr):
    tg = build_train_graph(mcunet32, scheme_49kb, num_classes=4, head=head, lr=lr)
    state = TrainState.from_train_graph(tg)
    xs, ys = images(4, 32, seed=3), [0, 1, 2, 3]
    losses = [[train_step(tg, state, x, y) for x, y in zip(xs, ys)] for _ in range(16)]  # 64 steps
    first, last = np.mean(losses[0]), np.mean(losses[-1])
    assert np.all(np.isfinite(losses))
    assert losses[0][0] == pytest.approx(np.log(4), rel=1e-5)  # the zero head starts at chance
    assert last < 0.5 * first and last < 0.25 * np.log(4), losses
    assert evaluate(tg, state, xs, ys) == 1.0


def test_same_seed_same_bytes(mcunet32, scheme_49kb):
    def run(seed):
        tg = build_train_graph(mcunet32, scheme_49kb, num_classes=10, seed=seed, lr=0.01)
        st = TrainState.from_train_graph(tg)
        xs = images(3, 32, seed=5)
        losses = [train_step(tg, st, xs[i % 3], i % 10) for i in range(4)]
        return st, losses

    a, la = run(7)
    b, lb = run(7)
    c, _ = run(8)
    assert la == lb
    for n in a.values:
        assert a.values[n].tobytes() == b.values[n].tobytes(), n
    # stochastic rounding depends on the seed
    int8_params = [n for n, v in a.values.items() if v.dtype == np.int8]
    assert any(a.values[n].tobytes() != c.values[n].tobytes() for n in int8_params)


def test_run_step_leaves_state_alone(mcunet32, scheme_49kb):
    tg = build_train_graph(mcunet32, scheme_49kb)
    st = TrainState.from_train_graph(tg)
    snap = st.copy()
    values = run_step(tg, st, images(1, 32)[0], 2)
    assert all(np.array_equal(st.values[n], snap.values[n]) for n in st.values)
    assert values["loss"].shape == (1,) and np.isfinite(values["loss"][0])


# --------------------------------------------------------------------------- whole-graph gradient vs TF
def _ste_network(tg, values, watch):
    """The training graph's forward as a TensorFlow function of real values with the
    straight-through estimator: every requantizing op outputs exactly the reference int8
    value (dequantized), and its derivative is 1 where that value is not at the clamp
    bound, 0 where it is. Returns (loss, {name: watched variable})."""
    import tensorflow as tf

    def deq(name):
        t = tg.tensors[name]
        v = values[name] if name in values else t.data
        return tf.constant(bw.dequantize(v, t.scale, t.zero_point, t.quantized_dim).astype(np.float64))

    real, variables = {}, {}

    def param(name, axis):
        t = tg.tensors[name]
        v = values[name] if name in values else t.data
        real_v = v.astype(np.float64) if t.scale is None else bw.dequantize(v, t.scale, t.zero_point, axis)
        if name not in watch:
            return tf.constant(np.asarray(real_v, np.float64))
        variables[name] = tf.Variable(np.asarray(real_v, np.float64))
        return variables[name]

    def ste(name, z, act):
        t = tg.tensors[name]
        q = values[name]
        lo, hi = quant.activation_range(act, float(t.scale[0]), int(t.zero_point[0]))
        mask = tf.constant(((q > lo) & (q < hi)).astype(np.float64))
        y = deq(name)
        return mask * z + tf.stop_gradient(y - mask * z)

    real[tg.inputs[0]] = deq(tg.inputs[0])
    with tf.GradientTape() as tape:
        for op in tg.ops:
            if op.phase != "forward":
                continue
            a = op.attrs
            x = real.get(op.inputs[0])
            out = op.outputs[0]
            if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = param(op.inputs[1], 0 if op.type == "CONV_2D" else 3)
                b = param(op.inputs[2], 0)
                st, dl = (1, a["stride_h"], a["stride_w"], 1), (a["dilation_h"], a["dilation_w"])
                if op.type == "CONV_2D":
                    z = tf.nn.conv2d(x, tf.transpose(w, (1, 2, 3, 0)), st, a["padding"], dilations=dl)
                else:
                    kh, kw, c = w.shape[1], w.shape[2], x.shape[-1]
                    z = tf.nn.depthwise_conv2d(x, tf.reshape(w, (kh, kw, c, -1)), st, a["padding"], dilations=dl)
                real[out] = ste(out, z + b, a.get("activation", "NONE"))
            elif op.type == "FULLY_CONNECTED":
                w, b = param(op.inputs[1], 0), param(op.inputs[2], 0)
                z = tf.matmul(tf.reshape(x, (-1, w.shape[1])), w, transpose_b=True) + b
                real[out] = ste(out, tf.reshape(z, tg.tensors[out].shape), a.get("activation", "NONE"))
            elif op.type == "ADD":
                real[out] = ste(out, x + real[op.inputs[1]], a.get("activation", "NONE"))
            elif op.type == "MEAN":
                axes = [int(v) for v in tg.tensors[op.inputs[1]].data]
                real[out] = ste(out, tf.reduce_mean(x, axis=axes, keepdims=a["keep_dims"]), "NONE")
            elif op.type == "AVERAGE_POOL_2D":
                z = tf.nn.avg_pool2d(x, (a["filter_h"], a["filter_w"]), (a["stride_h"], a["stride_w"]), a["padding"])
                real[out] = ste(out, z, a.get("activation", "NONE"))
            elif op.type == "PAD":
                real[out] = tf.pad(x, tg.tensors[op.inputs[1]].data.tolist())
            elif op.type == "RESHAPE":
                real[out] = tf.reshape(x, tg.tensors[out].shape)
            elif op.type == "FC_FLOAT_FORWARD":
                w, b = param(op.inputs[1], 0), param(op.inputs[2], 0)
                real[out] = tf.matmul(tf.reshape(x, (1, -1)), w, transpose_b=True) + b
            else:
                raise AssertionError(f"no TF emulation for {op.type}")
        logits = tf.reshape(real["logits"], (1, -1))
        label = int(values["label"][0])
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[label], logits=logits)[0]
    grads = tape.gradient(loss, list(variables.values()))
    return float(loss.numpy()), dict(zip(variables, [g.numpy() for g in grads]))


def _our_parameter_grads(tg, values):
    """The real-valued gradients the update ops consume, recomputed from the step's tensors."""
    out = {}
    for op in tg.ops:
        if op.type == "BIAS_UPDATE":
            out[op.inputs[1]] = bw.bias_grad(values[op.inputs[0]])
        elif op.type == "FC_FLOAT_UPDATE":
            g = values[op.inputs[0]].reshape(-1)
            f = bw.dequantize(values[op.inputs[1]], op.attrs["in_scale"], op.attrs["in_zero_point"]).reshape(-1)
            out["head/weight"] = g[:, None] * f[None, :]
            out["head/bias"] = g
        elif op.type in ("CONV_2D_UPDATE", "DEPTHWISE_CONV_2D_UPDATE"):
            a = op.attrs
            x = bw.dequantize(values[op.inputs[1]], a["in_scale"], a["in_zero_point"])
            geo = ((a["stride_h"], a["stride_w"]), (a["dilation_h"], a["dilation_w"]), (a["pad_top"], a["pad_left"]))
            k = tg.tensors[op.inputs[2]].shape[1:3]
            if op.type == "CONV_2D_UPDATE":
                gw = bw.conv2d_weight_grad(values[op.inputs[0]], x, k, *geo, a["channels"])
            else:
                gw = bw.depthwise_weight_grad(values[op.inputs[0]], x, k, *geo, a["depth_multiplier"], a["channels"])
            out[op.inputs[2]] = (gw, a["channels"])
    return out


def random_head(tg, state, seed=0):
    """Give the head random weights (the new head starts at zero, which sends no gradient into
    the backbone): float uniform in +-1/sqrt(C), int8 integers in [-63, 63] on its grid 2a/127."""
    w = state.values["head/weight"]
    rng = np.random.default_rng(seed)
    if w.dtype == np.int8:
        state.values["head/weight"] = rng.integers(-63, 64, size=w.shape).astype(np.int8)
    else:
        a = 1.0 / np.sqrt(w.size // w.shape[0])
        state.values["head/weight"] = rng.uniform(-a, a, size=w.shape).astype(w.dtype)


def _check_whole_graph_gradient(tg, x, label, rtol=2e-4):
    state = TrainState.from_train_graph(tg)
    random_head(tg, state)
    values = run_step(tg, state, x, label)
    ours = _our_parameter_grads(tg, values)
    # forward values are those before the update: give TF the pre-step parameters
    pre = dict(values)
    pre.update({n: state.values[n] for n in state.values})
    watch = [n for n in ours if tg.tensors[n].kind == "parameter"]
    loss_tf, theirs = _ste_network(tg, pre, watch)
    assert abs(loss_tf - float(values["loss"][0])) < 1e-4 * max(1.0, loss_tf)
    checked = 0
    for name, g in ours.items():
        ref = theirs[name]
        if isinstance(g, tuple):
            g, channels = g
            ref = ref[..., channels]
        assert g.shape == ref.shape, name
        scale = np.abs(ref).max()
        if scale == 0:
            assert np.abs(g).max() == 0, name
            continue
        err = np.abs(g.astype(np.float64) - ref).max() / scale
        assert err < rtol, (name, err)
        checked += 1
    return checked


@pytest.mark.parametrize("head", ["float", "int8"])
def test_whole_graph_gradient_matches_tf_autodiff(mcunet32, scheme_49kb, head):
    tg = build_train_graph(mcunet32, scheme_49kb, num_classes=10, head=head)
    checked = _check_whole_graph_gradient(tg, images(1, 32, seed=11)[0], 4)
    assert checked >= 20  # every trained bias and weight of the scheme, plus the head


def test_whole_graph_gradient_full_scheme_mbv2():
    g = load_npz(seed_model("mbv2-w0.35"), input_size=32)
    tg = build_train_graph(g, SparseScheme.full(g), num_classes=5)
    assert _check_whole_graph_gradient(tg, images(1, 32, seed=12)[0], 1) > 40


def test_whole_graph_gradient_person_detect_avg_pool_relu6():
    import tflm_train

    g = tflm_train.load(PERSON_DETECT)
    tg = build_train_graph(g, SparseScheme.last_k(g, 4), num_classes=3, head="int8")
    x = images(1, 96, seed=13, channels=1)[0]
    assert _check_whole_graph_gradient(tg, x, 2) >= 6


# --------------------------------------------------------------------------- back to inference
def test_apply_to_graph_int8_head_is_byte_identical(mcunet32, scheme_49kb):
    tg = build_train_graph(mcunet32, scheme_49kb, num_classes=6, head="int8", lr=0.005)
    st = TrainState.from_train_graph(tg)
    xs = images(4, 32, seed=21)
    for i in range(4):
        train_step(tg, st, xs[i], i)
    g2 = apply_to_graph(mcunet32, tg, st)
    assert g2.tensors[g2.outputs[0]].shape == (1, 6)
    assert mcunet32.tensors["logits"].shape == (1, 1000)  # original untouched
    for x in xs:
        values = run_step(tg, st, x, 0)
        out = reference.invoke(g2, x[None])[0]
        assert np.array_equal(out.reshape(-1), values["logits"].reshape(-1))
    for layer in tg.layers:
        if not layer["is_classifier"] and layer["bias"]:
            assert np.array_equal(g2.tensors[layer["bias"]].data, st.values[layer["bias"]])


def test_apply_to_graph_float_head_quantizes_close(mcunet32, scheme_49kb):
    tg = build_train_graph(mcunet32, scheme_49kb, num_classes=4, head="float", lr=0.002)
    st = TrainState.from_train_graph(tg)
    xs = images(4, 32, seed=22)
    for _ in range(3):
        for i in range(4):
            train_step(tg, st, xs[i], i)
    g2 = apply_to_graph(mcunet32, tg, st, calibration=xs)
    out_t = g2.tensors[g2.ops[-1].outputs[0]]
    for x in xs:
        z = forward_logits(tg, st, x)
        q = reference.invoke(g2, x[None])[0].reshape(-1)
        deq = out_t.scale[0] * (q.astype(np.float64) - out_t.zero_point[0])
        assert np.abs(deq - z).max() < 0.05 * np.abs(z).max() + 3 * out_t.scale[0]
        assert np.argmax(deq) == np.argmax(z)


def test_bad_inputs_are_clear_errors(mcunet32, scheme_49kb):
    tg = build_train_graph(mcunet32, scheme_49kb)
    st = TrainState.from_train_graph(tg)
    x = images(1, 32)[0]
    with pytest.raises(GraphError, match="label"):
        train_step(tg, st, x, 10)
    with pytest.raises(GraphError, match="int8"):
        train_step(tg, st, x.astype(np.float32), 1)
    with pytest.raises(GraphError, match="shape"):
        train_step(tg, st, x[:16], 1)
    other = load_npz(seed_model("mbv2-w0.35"), input_size=32)
    with pytest.raises(GraphError):
        apply_to_graph(other, tg, st)


# --------------------------------------------------------------------------- a converter-made model (FC classifier)
BACKBONE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tflm_train", "data",
                        "fmnist_backbone.tflite")


@pytest.fixture(scope="module")
def backbone():
    import tflm_train

    if not os.path.exists(BACKBONE):
        pytest.skip("default model not built")
    return tflm_train.load(BACKBONE)


@pytest.mark.parametrize("head", ["float", "int8"])
def test_fully_connected_classifier_model(backbone, head):
    tg = build_train_graph(backbone, SparseScheme.full(backbone), num_classes=3, head=head, lr=0.002)
    x = images(1, 32, seed=40, channels=1)[0]
    assert _check_whole_graph_gradient(tg, x, 1) >= 2 * len(backbone.conv_op_indices()) - 1
    st = TrainState.from_train_graph(tg)
    xs = images(3, 32, seed=41, channels=1)
    for i in range(6):
        train_step(tg, st, xs[i % 3], i % 3)
    g2 = apply_to_graph(backbone, tg, st, calibration=xs)
    assert g2.tensors[g2.outputs[0]].shape == (1, 3)
    for x in xs:
        out = reference.invoke(g2, x[None])[0].reshape(-1)
        if head == "int8":
            assert np.array_equal(out, run_step(tg, st, x, 0)["logits"].reshape(-1))
        else:
            assert np.argmax(out) == np.argmax(forward_logits(tg, st, x))
