"""Keras 3 front-end: the emulated forward equals the int8 reference bit for bit, QAS scales
gradients as DESIGN.md specifies, SparseUpdate leaves frozen parameters byte-identical,
to_graph writes back what was trained, and one Keras step matches the reference trainer's."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import keras

from tflm_train import reference
from tflm_train.graph import GraphError
from tflm_train.io.npz_reader import load_npz
from tflm_train.io.tflite_reader import read_tflite
from tflm_train.keras import QAS, SparseUpdate, emulated_activations, from_graph, qas_factor, to_graph
from tflm_train.keras.layers import QuantConv
from tflm_train.training import SparseScheme, TrainState, build_train_graph, train_step

from .model_factory import synthetic_graphs
from .paths import SCHEMES, seed_model

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def images(n, size, seed=0):
    """Smooth random int8 images (blurred noise, so activations look natural)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size // 4, size // 4, 3))
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2) + 0.3 * rng.normal(size=(n, size, size, 3))
    return np.clip(np.round(x * 50), -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def mcunet32():
    return load_npz(seed_model("mcunet-5fps"), input_size=32)


@pytest.fixture(scope="module")
def scheme_99kb():
    return SparseScheme.from_json(os.path.join(SCHEMES, "mcunet-5fps.json"), "99kb")


def mismatch(graph, model, xs):
    """(differing elements, compared elements) of every emulated tensor vs reference.invoke_all."""
    acts = emulated_activations(model, xs)
    bad = total = 0
    for b in range(len(xs)):
        ref = reference.invoke_all(graph, xs[b:b + 1])
        for name, value in acts.items():
            want = ref[name].reshape(value[b:b + 1].shape)
            bad += int(np.sum(want != value[b:b + 1]))
            total += want.size
    return bad, total


# --------------------------------------------------------------------------- emulated forward
def test_seed_model_forward_is_bit_exact(mcunet32):
    model = from_graph(mcunet32)
    xs = images(2, 32)
    bad, total = mismatch(mcunet32, model, xs)
    print(f"mcunet-5fps@32: {bad} of {total} activation elements differ from the reference")
    assert total > 190_000 and bad == 0
    logits = model.predict(xs, verbose=0)
    out_t = mcunet32.tensors[mcunet32.outputs[0]]
    for b in range(2):
        ref = reference.invoke(mcunet32, xs[b:b + 1])[0].astype(np.float64)
        np.testing.assert_allclose(logits[b], (ref[0] - out_t.zero_point[0]) * out_t.scale[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n, g in synthetic_graphs().items()
                                        if g.tensors[g.inputs[0]].shape[0] == 1))
def test_synthetic_graph_forward_is_bit_exact(name):
    graph = synthetic_graphs()[name]
    shape = graph.tensors[graph.inputs[0]].shape
    xs = np.random.default_rng(3).integers(-128, 128, size=(3,) + shape[1:]).astype(np.int8)
    bad, total = mismatch(graph, from_graph(graph), xs)
    assert total > 0 and bad == 0, f"{bad} of {total} elements differ"


def test_converter_models_forward_is_bit_exact(factory_models):
    """The .tflite models tfmot + the TFLite converter make (QUANTIZE input, SOFTMAX,
    DEQUANTIZE output, ADD, PAD, pools, MEAN, FC)."""
    for name, path in factory_models.items():
        graph = read_tflite(open(path, "rb").read(), name=name)
        model = from_graph(graph)
        in_name = graph.inputs[0]
        if graph.tensors[in_name].dtype == "float32":  # the model takes the QUANTIZE output
            in_name = graph.ops[0].outputs[0]
        shape = graph.tensors[in_name].shape
        xs = np.random.default_rng(5).integers(-128, 128, size=(2,) + shape[1:]).astype(np.int8)
        acts = emulated_activations(model, xs)
        bad = total = 0
        for b in range(2):
            x = xs[b:b + 1]
            if graph.tensors[graph.inputs[0]].dtype == "float32":
                t = graph.tensors[in_name]
                x = ((x.astype(np.float32) - t.zero_point[0]) * t.scale[0]).astype(np.float32)
            ref = reference.invoke_all(graph, x)
            for n, v in acts.items():
                bad += int(np.sum(ref[n].reshape(v[b:b + 1].shape) != v[b:b + 1]))
                total += v[b:b + 1].size
        assert total > 0 and bad == 0, f"{name}: {bad} of {total} elements differ"


def test_float_version_tracks_int8_version(mcunet32):
    """quantized=False is the same network without rounding: logits close to the int8 ones."""
    xs = images(4, 32, seed=1)
    z_int8 = from_graph(mcunet32).predict(xs, verbose=0)
    z_float = from_graph(mcunet32, quantized=False).predict(xs, verbose=0)
    for a, b in zip(z_int8, z_float):
        assert np.corrcoef(a, b)[0, 1] > 0.9


# --------------------------------------------------------------------------- to_graph
def test_round_trip_keeps_every_byte(mcunet32):
    g2 = to_graph(from_graph(mcunet32))
    assert [op.type for op in g2.ops] == [op.type for op in mcunet32.ops]
    for name, t in mcunet32.tensors.items():
        t2 = g2.tensors[name]
        assert t2.shape == t.shape and t2.dtype == t.dtype
        if t.data is not None:
            assert t2.data.tobytes() == t.data.tobytes(), name
    x = images(1, 32)
    assert np.array_equal(reference.invoke(g2, x)[0], reference.invoke(mcunet32, x)[0])


def test_new_int8_head_writes_back_exactly(mcunet32):
    model = from_graph(mcunet32, 10, head="int8")
    g2 = to_graph(model)
    assert g2.tensors[g2.outputs[0]].shape == (1, 10)
    xs = images(3, 32, seed=2)
    # frozen parts: every tensor before the head has the original bytes and the same values
    cls = mcunet32.ops[mcunet32.conv_op_indices()[-1]]
    for name, t in mcunet32.tensors.items():
        if t.data is not None and name not in cls.inputs and not name.startswith("classifier"):
            assert g2.tensors[name].data.tobytes() == t.data.tobytes(), name
    logits = model.predict(xs, verbose=0)
    out_t = g2.tensors[g2.outputs[0]]
    for b in range(3):
        r1 = reference.invoke_all(mcunet32, xs[b:b + 1])
        r2 = reference.invoke_all(g2, xs[b:b + 1])
        assert np.array_equal(r1[cls.inputs[0]], r2[cls.inputs[0]])
        z = (reference.invoke(g2, xs[b:b + 1])[0].astype(np.float64) - out_t.zero_point[0]) * out_t.scale[0]
        np.testing.assert_allclose(logits[b], z[0], rtol=1e-6, atol=1e-6)


def random_float_head(model, seed=0):
    """Random float head weights, uniform in +-1/sqrt(C) (the new head starts at zero: its logits
    would be all zero and it would send the layers below no gradient)."""
    kernel = model.get_layer("new_head").kernel
    a = 1.0 / np.sqrt(kernel.shape[0])
    kernel.assign(np.random.default_rng(seed).uniform(-a, a, size=kernel.shape).astype(np.float32))


def test_float_head_quantized_with_calibration(mcunet32):
    model = from_graph(mcunet32, 10, head="float")
    random_float_head(model, seed=3)
    xs = images(8, 32, seed=4)
    g2 = to_graph(model, calibration_data=xs)
    z_keras = model.predict(xs, verbose=0)
    out_t = g2.tensors[g2.outputs[0]]
    # logits scale 1.25 * max|logit| / 127 on the calibration data: nothing clips
    assert np.isclose(out_t.scale[0], 1.25 * np.abs(z_keras).max() / 127, rtol=1e-6)
    for b in range(8):
        z = (reference.invoke(g2, xs[b:b + 1])[0][0].astype(np.float64) - out_t.zero_point[0]) * out_t.scale[0]
        # int8 weights, int8 logits: within a few logit LSBs of the float head
        assert np.max(np.abs(z - z_keras[b])) < 4 * out_t.scale[0] + 0.02 * np.abs(z_keras[b]).max()


def test_head_matches_reference_trainer_init(mcunet32, scheme_99kb):
    """The same starting head as the training-graph compiler (one rule, head_init: zero weights
    and bias; the int8 head on the same weight grid), for fair comparisons."""
    for head in ("int8", "float"):
        model = from_graph(mcunet32, 10, head=head)
        tg = build_train_graph(mcunet32, scheme_99kb, num_classes=10, head=head)
        layer = model.get_layer("new_head")
        w = layer.kernel.numpy()
        want = tg.tensors["head/weight"].data
        assert not np.any(w) and not np.any(layer.bias.numpy()) and not np.any(tg.tensors["head/bias"].data)
        if head == "float":
            np.testing.assert_array_equal(w.T, want)
        else:
            np.testing.assert_array_equal(w.astype(np.int8), want)
            np.testing.assert_allclose(layer.w_scales, np.broadcast_to(tg.tensors["head/weight"].scale, (10,)))


# --------------------------------------------------------------------------- QAS
def test_qas_step_is_the_formula(mcunet32):
    """One QAS(SGD) step: delta = -lr * G_q * s_w^-2 per output channel (bias: (s_x s_w)^-2),
    G_q being the Keras gradient w.r.t. the int8-valued variable; the float head is unscaled."""
    import tensorflow as tf

    model = from_graph(mcunet32, 10, head="float")
    random_float_head(model)
    xs, ys = images(4, 32, seed=5), np.array([1, 4, 7, 2])
    with tf.GradientTape() as tape:
        loss = LOSS(ys, model(xs.astype(np.float32), training=True))
    variables = model.trainable_variables
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    before = [v.numpy().copy() for v in variables]
    lr = 0.01
    opt = QAS(keras.optimizers.SGD(lr), rounding="none")  # the bare formula, no rounding of the result
    opt.apply(grads, variables)
    checked = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "bias": 0, "float": 0}
    by_var = {id(v): layer for layer in model.layers for v in layer.weights}
    for v, g, b in zip(variables, grads, before):
        layer = by_var[id(v)]
        delta = v.numpy().astype(np.float64) - b
        if isinstance(layer, QuantConv) and v is layer.kernel:
            shape = layer.per_channel_shape()
            factor = layer.w_scales.reshape(shape) ** -2.0
            checked[layer.op_type] += 1
        elif isinstance(layer, QuantConv):
            factor = (layer.x_scale * layer.w_scales) ** -2.0
            checked["bias"] += 1
        else:
            factor = 1.0
            checked["float"] += 1
        expect = -lr * g.astype(np.float64) * factor
        if isinstance(layer, QuantConv) and v is layer.kernel:  # int8 values stay in [-127, 127]
            expect = np.clip(b + expect, -127, 127) - b
        scale = np.abs(expect).max() + 1e-30
        assert np.max(np.abs(delta - expect)) <= 1e-5 * scale + np.spacing(np.abs(b).max()), v.path
    assert min(checked.values()) > 0, checked
    # the factors are registered on the variables
    conv = next(l for l in model.layers if isinstance(l, QuantConv))
    np.testing.assert_allclose(qas_factor(conv.kernel).reshape(-1), conv.w_scales ** -2, rtol=1e-6)

    # the device's rounding: weights stochastically to a neighbouring integer (unbiased), biases to nearest
    stepped = [v.numpy().astype(np.float64) for v in variables]
    for v, b in zip(variables, before):
        v.assign(b)
    QAS(keras.optimizers.SGD(lr), seed=1).apply(grads, variables)
    for v, exact, b in zip(variables, stepped, before):
        layer = by_var[id(v)]
        if not isinstance(layer, QuantConv):
            np.testing.assert_array_equal(v.numpy(), exact.astype(v.dtype))  # a float head is not rounded
            continue
        got = v.numpy().astype(np.float64)
        assert np.array_equal(got, np.round(got)), v.path
        if v is layer.kernel:
            assert np.all((got == np.floor(exact)) | (got == np.ceil(exact))), v.path
        else:
            assert np.max(np.abs(got - exact)) <= 0.5, v.path
    kernels = [(v.numpy().astype(np.float64), e, b) for v, e, b in zip(variables, stepped, before)
               if isinstance(by_var[id(v)], QuantConv) and v is by_var[id(v)].kernel]
    frac = np.concatenate([(e - np.floor(e)).ravel() for _, e, _ in kernels])
    up = np.concatenate([(g == np.ceil(e)).ravel() & (e != np.floor(e)).ravel() for g, e, _ in kernels])
    moving = frac > 0
    assert abs(up[moving].mean() - frac[moving].mean()) < 0.01  # P(round up) = fractional part


@pytest.mark.parametrize("grad_dtype", ["float32", "float16"])
def test_keras_step_matches_reference_trainer(mcunet32, scheme_99kb, grad_dtype):
    """Batch 1, QAS + SGD: the Keras update and the NumPy reference trainer's agree (the
    reference rounds weights stochastically, biases to nearest), also when both store the
    gradients as float16 (Keras: GradientStore's simulation)."""
    x, label, lr = images(1, 32, seed=6), 3, 0.05
    tg = build_train_graph(mcunet32, scheme_99kb, num_classes=10, head="int8", lr=lr, grad_dtype=grad_dtype)
    state = TrainState.from_train_graph(tg)
    # the same random head on both sides (the zero head_init would send the backbone no gradient)
    head_w = np.random.default_rng(0).integers(-63, 64, size=state.values["head/weight"].shape).astype(np.int8)
    state.values["head/weight"] = head_w
    start = {n: v.copy() for n, v in state.values.items()}
    train_step(tg, state, x[0], label)

    model = from_graph(mcunet32, 10, head="int8", grad_dtype=grad_dtype)
    model.get_layer("new_head").kernel.assign(head_w.astype(np.float32))
    model.compile(optimizer=QAS(keras.optimizers.SGD(lr)), loss=LOSS)
    model.fit(x, np.array([label]), batch_size=1, epochs=1, verbose=0, shuffle=False,
              callbacks=[SparseUpdate(scheme_99kb)])
    keras_layers = {l.op_index: l for l in model.layers if isinstance(l, QuantConv)}
    conv_ops = mcunet32.conv_op_indices()
    compared = 0
    for layer in tg.layers:
        k = keras_layers[conv_ops[layer["conv_index"]]]
        if layer["channels"]:
            w_keras = k.kernel.numpy().astype(np.float64)
            w_ref = state.values[layer["weight"]].astype(np.float64)
            # both round the same real step stochastically: to the same pair of integers (float16:
            # or the next, where the two sides' steps differ by a binary16 ulp across an integer)
            assert np.max(np.abs(w_keras - w_ref)) <= (1 if grad_dtype == "float32" else 2), layer["weight"]
            moved_ref = w_ref != start[layer["weight"]]
            moved_keras = w_keras != start[layer["weight"]]
            assert abs(moved_ref.mean() - moved_keras.mean()) < 0.05 + 0.3 * moved_ref.mean(), layer["weight"]
            compared += 1
        if layer.get("bias"):
            b_keras = k.bias.numpy()
            b_ref = state.values[layer["bias"]].astype(np.float64)
            # both round the same real step to nearest: equal but where float noise meets a tie
            if grad_dtype == "float32":
                assert np.mean(b_keras == b_ref) > 0.95 and np.max(np.abs(b_keras - b_ref)) <= 1, layer["bias"]
            else:
                # float16: a stored gradient element sits one binary16 ulp (2^-11) apart where the
                # two sides' float32 noise straddles a rounding boundary (and the simulation rounds
                # the sum of a tensor's contributions, the device each part); a bias gradient sums
                # many elements with cancellation. Measured: >= 98 % of the biases within 1, at
                # most 3 apart, total difference <= 0.16 % of the total step
                d = np.abs(b_keras - b_ref)
                step = np.abs(b_ref - start[layer["bias"]]).sum()
                assert np.mean(d <= 1) > 0.95 and d.max() <= 4 and d.sum() <= 1 + 0.005 * step, layer["bias"]
            compared += 1
    assert compared >= 20


# --------------------------------------------------------------------------- SparseUpdate
def _snapshot(model):
    return {v.path: v.numpy().copy() for v in model.weights}


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_sparse_update_freezes_bytes(mcunet32, scheme_99kb, optimizer):
    inner = {"sgd": lambda: keras.optimizers.SGD(0.02),
             "momentum": lambda: keras.optimizers.SGD(0.02, momentum=0.9),
             # weight decay moves every variable it is applied to: the frozen channels must not move
             "adamw": lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1)}[optimizer]()
    model = from_graph(mcunet32, 10, head="int8")
    # Adam steps are ~lr in the variables' own units whatever the gradient scale: rounded to
    # integers they vanish, so Adam runs keep fractional values (rounding="none")
    model.compile(optimizer=QAS(inner, rounding="none" if optimizer == "adamw" else "stochastic"), loss=LOSS)
    xs, ys = images(8, 32, seed=8), np.arange(8) % 10
    if optimizer != "sgd":
        # optimizer state for every variable first: momentum / moments that would move frozen elements
        model.fit(xs, ys, batch_size=4, epochs=1, verbose=0)
    before = _snapshot(model)
    sparse = SparseUpdate(scheme_99kb)
    model.fit(xs, ys, batch_size=4, epochs=2, verbose=0, callbacks=[sparse])
    after = _snapshot(model)
    plan = sparse.plan(model)
    n_partial = n_frozen = n_trained = 0
    for layer in model.layers:
        if not isinstance(layer, QuantConv):
            continue
        k, b = layer.kernel.path, layer.bias.path
        if layer.is_new_head:
            assert not np.array_equal(before[k], after[k]) and not np.array_equal(before[b], after[b])
            continue
        update = plan.get(layer.op_index)
        if update is None or not update.update_bias:
            assert after[b].tobytes() == before[b].tobytes(), b
        else:
            assert not np.array_equal(before[b], after[b]), b
            n_trained += 1
        channels = update.weight_channels if update is not None else ()
        if not channels:
            assert after[k].tobytes() == before[k].tobytes(), k
            n_frozen += 1
            continue
        axis = 3  # CONV_2D OHWI input channels; depthwise channels
        frozen = [c for c in range(layer.kernel_shape[axis]) if c not in channels]
        assert np.take(after[k], frozen, axis=axis).tobytes() == np.take(before[k], frozen, axis=axis).tobytes(), k
        moved = np.take(after[k], list(channels), axis=axis) != np.take(before[k], list(channels), axis=axis)
        assert moved.mean() > 0.25, k  # some output channels get no gradient (clamped everywhere)
        n_partial += len(frozen) > 0
    assert n_partial == 2 and n_frozen > 10 and n_trained == 21
    # the callback hands the model back as it was: every variable trainable again
    assert all(v.trainable for v in model.weights)


def test_sparse_update_with_float_head_and_plain_optimizer(mcunet32):
    """Without QAS, with a float head, bias-only: frozen kernels stay, biases and head train."""
    model = from_graph(mcunet32, 10, head="float")
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=LOSS)
    before = _snapshot(model)
    model.fit(images(4, 32, seed=9), np.arange(4), batch_size=2, epochs=1, verbose=0,
              callbacks=[SparseUpdate(SparseScheme.bias_only(mcunet32))])
    after = _snapshot(model)
    for path in before:
        if path.endswith("kernel") and not path.startswith("new_head"):
            assert after[path].tobytes() == before[path].tobytes(), path
    assert not np.array_equal(before["new_head/kernel"], after["new_head/kernel"])


# --------------------------------------------------------------------------- configs and errors
def test_configs_round_trip(scheme_99kb, mcunet32):
    q = QAS(keras.optimizers.SGD(0.03, momentum=0.8, nesterov=True), rounding="none", seed=4, name="qas_sgd")
    q2 = QAS.from_config(q.get_config())
    assert q2.get_config() == q.get_config() and q2.rounding == "none" and q2.seed == 4
    assert isinstance(q2.inner_optimizer, keras.optimizers.SGD) and q2.inner_optimizer.momentum == 0.8
    q3 = keras.optimizers.deserialize(keras.optimizers.serialize(QAS(keras.optimizers.Adam(1e-3))))
    assert isinstance(q3, QAS) and isinstance(q3.inner_optimizer, keras.optimizers.Adam)
    assert float(q3.learning_rate) == pytest.approx(1e-3)

    s = SparseUpdate(scheme_99kb)
    s2 = SparseUpdate.from_config(s.get_config())
    assert s2.scheme == scheme_99kb and s2.get_config() == s.get_config()

    model = from_graph(mcunet32, 10, head="int8")
    for layer in model.layers:
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_sparse_update_takes_every_scheme_spelling(mcunet32):
    """Built-in spellings resolve against the model's graph when fit starts (the one parser,
    tflm_train.training.scheme.scheme_of); a scheme file for another model is refused there."""
    model = from_graph(mcunet32, 10)
    n = len(mcunet32.conv_op_indices())
    for spec, trained in (("bias_only", n), ("bias-only", n), ("last_k(2)", 2), ("last-2", 2)):
        cb = SparseUpdate(spec)
        assert len(cb.plan(model)) == trained and SparseUpdate.from_config(cb.get_config()).scheme == cb.scheme
    with pytest.raises(GraphError, match="accepted forms"):
        SparseUpdate("bias-onyl")
    with pytest.raises(GraphError, match="made for model 'mbv2-w0.35'"):
        SparseUpdate(os.path.join(SCHEMES, "mbv2-w0.35.json") + ":49kb").plan(model)


def test_bad_inputs_raise_clear_errors(mcunet32):
    with pytest.raises(GraphError, match="QuantGraph"):
        from_graph("model.tflite")
    with pytest.raises(GraphError, match="head"):
        from_graph(mcunet32, 10, head="fp16")
    with pytest.raises(GraphError, match="num_classes"):
        from_graph(mcunet32, 1)
    with pytest.raises(GraphError, match="float head"):
        from_graph(mcunet32, 10, head="int8", quantized=False)
    with pytest.raises(GraphError, match="float version"):
        to_graph(from_graph(mcunet32, quantized=False))
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(GraphError, match="from_graph"):
        to_graph(plain)
    with pytest.raises(GraphError, match="source graph"):
        SparseUpdate(SparseScheme(1)).plan(plain)
    with pytest.raises(ValueError, match="inner_optimizer"):
        QAS(42)
    with pytest.raises(ValueError, match="rounding"):
        QAS(keras.optimizers.SGD(), rounding="up")


def test_gradient_store_rounds_like_the_device():
    """GradientStore: identity forward; the backward rounds the per-sample real gradient to
    binary16 once (nearest even, subnormals kept, overflow to inf) and maps it back."""
    import tensorflow as tf

    from tflm_train.keras.layers import GradientStore

    c = np.array([[1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 3e-8, 7e4, -0.1, 0.0]], np.float32)  # ties, subnormal, overflow
    x = tf.Variable(np.ones((1, 6), np.float32))
    for dtype, expect in (("float16", (c * np.float32(4)).astype(np.float16).astype(np.float32) * np.float32(0.25)),
                          ("float32", c)):
        with tf.GradientTape() as tape:
            y = GradientStore(0.25, dtype)(x)
            loss = tf.reduce_sum(y * c)
        assert np.array_equal(y.numpy(), x.numpy())
        g = tape.gradient(loss, x).numpy()
        assert np.array_equal(g, expect), (dtype, g, expect)
    assert not np.array_equal((c * 4).astype(np.float16).astype(np.float32) / 4, c)  # the case rounds
