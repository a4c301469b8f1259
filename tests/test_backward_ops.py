"""Every backward op against TensorFlow's autodiff of the same real-valued function, plus the
update ops (xorshift32, stochastic rounding, QAS) against their specification."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from tflm_train.graph import GraphError
from tflm_train.ops import backward as bw
from tflm_train.ops import update as up

tf = pytest.importorskip("tensorflow")

RTOL = 1e-4


def rel_err(ours, ref, mask=None):
    ours = np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    if mask is not None:
        ours, ref = ours[mask], ref[mask]
    scale = max(np.abs(ref).max(), 1e-30)
    return np.abs(ours - ref).max() / scale


def int8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def tf_grads(fn, inputs, upstream):
    """d(sum(fn(*inputs) * upstream)) / d(inputs), in float64."""
    vs = [tf.constant(np.asarray(a, np.float64)) for a in inputs]
    with tf.GradientTape() as tape:
        for v in vs:
            tape.watch(v)
        y = fn(*vs)
    return [g.numpy() for g in tape.gradient(y, vs, output_gradients=tf.constant(np.asarray(upstream, np.float64)))]


def dilate_kernel(w_hw, d):
    """A [kh, kw, ...] kernel with d-1 zeros between taps (TF's CPU conv has no dilated backprop)."""
    if d == 1:
        return w_hw
    kh, kw = w_hw.shape[0], w_hw.shape[1]
    idx = [[ky * d, kx * d] for ky in range(kh) for kx in range(kw)]
    updates = tf.reshape(w_hw, (kh * kw,) + tuple(w_hw.shape[2:]))
    return tf.scatter_nd(idx, updates, ((kh - 1) * d + 1, (kw - 1) * d + 1) + tuple(w_hw.shape[2:]))


# --------------------------------------------------------------------------- sums and basics
def test_seq_sum_is_left_to_right_float32():
    rng = np.random.default_rng(0)
    terms = (rng.normal(size=(300, 7)) * np.exp(rng.normal(size=(300, 7)) * 4)).astype(np.float32)
    acc = np.zeros(7, np.float32)
    for t in terms:
        acc = acc + t
    assert np.array_equal(bw.seq_sum(terms, axis=0), acc)
    # chunked accumulation carries the accumulator: same bytes
    old = bw._CHUNK_ELEMS
    bw._CHUNK_ELEMS = 16
    try:
        assert np.array_equal(bw.seq_sum(terms, axis=0), acc)
    finally:
        bw._CHUNK_ELEMS = old


def test_dequantize_is_one_float32_product():
    q = np.array([-128, -1, 0, 5, 127], np.int8)
    got = bw.dequantize(q, 0.0235, -3)
    want = (q.astype(np.int64) + 3).astype(np.float32) * np.float32(0.0235)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_clamp_grad_passes_only_unclamped():
    g = np.arange(1, 7, dtype=np.float32)
    y = np.array([-128, -127, 0, 126, 127, 50], np.int8)
    out = bw.clamp_grad(g, y, -128, 127)
    assert np.array_equal(out, [0, 2, 3, 4, 0, 6])
    out = bw.clamp_grad(g, y, -128, 50)  # RELU6-like upper bound at 50
    assert np.array_equal(out, [0, 2, 3, 0, 0, 0])


# --------------------------------------------------------------------------- conv family
CONV_CASES = [
    # (H, W, C, O, kh, kw, stride, dilation, padding)
    (7, 7, 3, 4, 3, 3, 1, 1, "SAME"),
    (8, 8, 4, 5, 3, 3, 2, 1, "SAME"),
    (9, 8, 3, 2, 3, 3, 2, 1, "VALID"),
    (6, 6, 5, 6, 1, 1, 1, 1, "SAME"),
    (10, 9, 2, 3, 5, 3, 2, 1, "SAME"),
    (9, 9, 3, 4, 3, 3, 1, 2, "SAME"),
    (8, 8, 3, 3, 2, 2, 2, 1, "VALID"),
]


def _conv_setup(rng, h, w, c, o, kh, kw):
    xq = int8(rng, (1, h, w, c))
    wq = int8(rng, (o, kh, kw, c), -127, 127)
    s_x, zp_x = 0.05, 3
    s_w = rng.uniform(0.005, 0.02, size=o)
    x = bw.dequantize(xq, s_x, zp_x)
    wr = bw.real_weight(wq, s_w, 0)
    return xq, wq, s_w, x, wr, s_x, zp_x


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_grads_match_tf(case):
    h, w, c, o, kh, kw, stride, dil, padding = case
    rng = np.random.default_rng(sum(case[:8]))
    xq, wq, s_w, x, wr, _, _ = _conv_setup(rng, h, w, c, o, kh, kw)

    def fn(x_, w_):
        return tf.nn.conv2d(x_, dilate_kernel(tf.transpose(w_, (1, 2, 3, 0)), dil), strides=stride, padding=padding)

    out_shape = fn(tf.constant(x, tf.float64), tf.constant(wr, tf.float64)).shape
    g = rng.normal(size=out_shape).astype(np.float32)
    gx_tf, gw_tf = tf_grads(fn, [x, wr], g)
    pad = bw.conv_padding(padding, (h, w), out_shape[1:3], (kh, kw), (stride, stride), (dil, dil))
    gx = bw.conv2d_grad_input(g, wq, s_w.astype(np.float32), x.shape, (stride, stride), (dil, dil), pad)
    assert gx.dtype == np.float32 and gx.shape == x.shape
    assert rel_err(gx, gx_tf) < RTOL
    channels = sorted(rng.choice(c, size=max(1, c // 2), replace=False).tolist())
    gw = bw.conv2d_weight_grad(g, x, (kh, kw), (stride, stride), (dil, dil), pad, channels)
    assert gw.shape == (o, kh, kw, len(channels))
    assert rel_err(gw, gw_tf[..., channels]) < RTOL
    assert rel_err(bw.bias_grad(g), g.astype(np.float64).sum(axis=(0, 1, 2))) < RTOL


@pytest.mark.parametrize("case", [
    # (H, W, C, M, k, stride, dilation, padding)
    (7, 7, 4, 1, 3, 1, 1, "SAME"),
    (8, 8, 3, 1, 3, 2, 1, "SAME"),
    (10, 10, 3, 1, 3, 2, 1, "VALID"),
    (6, 7, 2, 2, 3, 1, 1, "SAME"),
    (11, 11, 3, 1, 5, 2, 1, "SAME"),
    (9, 9, 2, 1, 3, 1, 2, "SAME"),
])
def test_depthwise_grads_match_tf(case):
    h, w, c, m, k, stride, dil, padding = case
    rng = np.random.default_rng(sum(case[:7]) + 100)
    xq = int8(rng, (1, h, w, c))
    wq = int8(rng, (1, k, k, c * m), -127, 127)
    s_w = rng.uniform(0.005, 0.02, size=c * m)
    x = bw.dequantize(xq, 0.04, -5)
    wr = bw.real_weight(wq, s_w, 3)

    def fn(x_, w_):
        return tf.nn.depthwise_conv2d(x_, dilate_kernel(tf.reshape(w_, (k, k, c, m)), dil),
                                      strides=(1, stride, stride, 1), padding=padding)

    out_shape = fn(tf.constant(x, tf.float64), tf.constant(wr, tf.float64)).shape
    g = rng.normal(size=out_shape).astype(np.float32)
    gx_tf, gw_tf = tf_grads(fn, [x, wr], g)
    pad = bw.conv_padding(padding, (h, w), out_shape[1:3], (k, k), (stride, stride), (dil, dil))
    gx = bw.depthwise_grad_input(g, wq, s_w.astype(np.float32), x.shape, (stride, stride), (dil, dil), pad, m)
    assert rel_err(gx, gx_tf) < RTOL
    channels = sorted(rng.choice(c * m, size=max(1, (c * m) // 2), replace=False).tolist())
    gw = bw.depthwise_weight_grad(g, x, (k, k), (stride, stride), (dil, dil), pad, m, channels)
    assert rel_err(gw, gw_tf[..., channels]) < RTOL


def test_fully_connected_grads_match_tf():
    rng = np.random.default_rng(5)
    xq, wq = int8(rng, (2, 12)), int8(rng, (7, 12), -127, 127)
    s_w = rng.uniform(0.005, 0.02, size=7)
    x = bw.dequantize(xq, 0.1, 2)
    wr = bw.real_weight(wq, s_w, 0)
    g = rng.normal(size=(2, 7)).astype(np.float32)
    gx_tf, gw_tf = tf_grads(lambda a, b: tf.matmul(a, b, transpose_b=True), [x, wr], g)
    assert rel_err(bw.fully_connected_grad_input(g, wq, s_w.astype(np.float32), x.shape), gx_tf) < RTOL
    assert rel_err(bw.fully_connected_weight_grad(g, x, [1, 4, 5, 11]), gw_tf[:, [1, 4, 5, 11]]) < RTOL
    # per-tensor weight scale broadcasts
    gx1 = bw.fully_connected_grad_input(g, wq, [np.float32(0.01)], x.shape)
    gx1_tf, = tf_grads(lambda a: tf.matmul(a, tf.constant(wq.astype(np.float64) * float(np.float32(0.01))),
                                           transpose_b=True), [x], g)
    assert rel_err(gx1, gx1_tf) < RTOL


def test_float_head_matches_tf():
    rng = np.random.default_rng(6)
    f = rng.normal(size=(1, 16)).astype(np.float32)
    w = rng.normal(size=(5, 16)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    logits = bw.fc_float_forward(f, w, b)
    assert rel_err(logits, f.astype(np.float64) @ w.T.astype(np.float64) + b) < RTOL
    g = rng.normal(size=(1, 5)).astype(np.float32)
    gf_tf, = tf_grads(lambda a: tf.matmul(a, tf.constant(w, tf.float64), transpose_b=True), [f], g)
    assert rel_err(bw.fc_float_grad_input(g, w, f.shape), gf_tf) < RTOL


# --------------------------------------------------------------------------- shape and pooling ops
def test_add_gradient_is_identity_for_both_inputs():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(1, 3, 3, 2)), rng.normal(size=(1, 3, 3, 2))
    g = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    ga, gb = tf_grads(lambda x, y: x + y, [a, b], g)
    # the compiler hands the clamped output gradient itself to both ADD inputs
    assert rel_err(g, ga) == 0 and rel_err(g, gb) == 0
    ga2, = tf_grads(lambda x: x + x, [a], g)
    assert rel_err(bw.grad_accumulate(g, g), ga2) < RTOL


@pytest.mark.parametrize("axes,keep", [([1, 2], True), ([1, 2], False), ([2], True), ([1], False)])
def test_mean_grad_matches_tf(axes, keep):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(1, 5, 6, 3))
    fn = lambda v: tf.reduce_mean(v, axis=axes, keepdims=keep)  # noqa: E731
    g = rng.normal(size=fn(tf.constant(x)).shape).astype(np.float32)
    gx_tf, = tf_grads(fn, [x], g)
    assert rel_err(bw.mean_grad(g, x.shape, axes), gx_tf) < RTOL


POOL_CASES = [
    # (H, W, filter, stride, padding)
    (6, 6, 2, 2, "VALID"),
    (7, 7, 3, 2, "SAME"),
    (8, 8, 3, 1, "SAME"),
    (5, 7, 3, 2, "VALID"),
    (7, 7, 7, 1, "VALID"),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_average_pool_grad_matches_tf(case):
    h, w, f, s, padding = case
    rng = np.random.default_rng(sum(case[:4]))
    x = rng.normal(size=(1, h, w, 3))
    fn = lambda v: tf.nn.avg_pool2d(v, f, s, padding)  # noqa: E731
    out_shape = fn(tf.constant(x)).shape
    g = rng.normal(size=out_shape).astype(np.float32)
    gx_tf, = tf_grads(fn, [x], g)
    pad = bw.conv_padding(padding, (h, w), out_shape[1:3], (f, f), (s, s))
    assert rel_err(bw.average_pool_grad(g, x.shape, (f, f), (s, s), pad), gx_tf) < RTOL


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_grad_matches_tf(case):
    h, w, f, s, padding = case
    rng = np.random.default_rng(sum(case[:4]) + 1)
    c = 2
    # distinct int8 values per channel: no ties, so the routed gradient is unambiguous
    xq = np.stack([rng.permutation(np.arange(-128, 128))[: h * w].reshape(h, w) for _ in range(c)], -1)[None]
    xq = xq.astype(np.int8)
    x = bw.dequantize(xq, 0.1, -4)
    fn = lambda v: tf.nn.max_pool2d(v, f, s, padding)  # noqa: E731
    out_shape = fn(tf.constant(x, tf.float64)).shape
    g = rng.normal(size=out_shape).astype(np.float32)
    gx_tf, = tf_grads(fn, [x], g)
    pad = bw.conv_padding(padding, (h, w), out_shape[1:3], (f, f), (s, s))
    assert rel_err(bw.max_pool_grad(g, xq, (f, f), (s, s), pad), gx_tf) < RTOL


def test_max_pool_grad_ties_go_to_first_maximum():
    xq = np.full((1, 2, 2, 1), 7, np.int8)
    g = np.array([[[[2.5]]]], np.float32)
    gx = bw.max_pool_grad(g, xq, (2, 2), (2, 2), (0, 0))
    assert gx.reshape(-1).tolist() == [2.5, 0, 0, 0]


def test_pad_and_reshape_grads_match_tf():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(1, 4, 5, 3))
    pads = [[0, 0], [1, 2], [2, 1], [0, 0]]
    fn = lambda v: tf.pad(v, pads)  # noqa: E731
    g = rng.normal(size=fn(tf.constant(x)).shape).astype(np.float32)
    gx_tf, = tf_grads(fn, [x], g)
    assert rel_err(bw.pad_grad(g, pads), gx_tf) < RTOL
    g2 = rng.normal(size=(1, 60)).astype(np.float32)
    gx2_tf, = tf_grads(lambda v: tf.reshape(v, (1, 60)), [x], g2)
    assert rel_err(bw.reshape_grad(g2, x.shape), gx2_tf) < RTOL
    with pytest.raises(GraphError):
        bw.pad_grad(g, [[0, 0], [1, 1]])


def test_softmax_cross_entropy_matches_tf():
    rng = np.random.default_rng(10)
    for label in (0, 3, 9):
        z = (rng.normal(size=(1, 10)) * 4).astype(np.float32)
        zt = tf.constant(z.astype(np.float64))
        with tf.GradientTape() as tape:
            tape.watch(zt)
            loss_tf = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[label], logits=zt)
        g_tf = tape.gradient(loss_tf, zt).numpy()
        loss, g = bw.softmax_cross_entropy(z, label)
        assert abs(float(loss) - float(loss_tf.numpy()[0])) < 1e-5 * max(1.0, abs(float(loss)))
        assert g.shape == z.shape and rel_err(g, g_tf) < RTOL
    with pytest.raises(GraphError, match="label"):
        bw.softmax_cross_entropy(z, 10)


# --------------------------------------------------------------------------- updates
def test_xorshift32_recurrence_and_seed():
    # x=1: x ^= x<<13 -> 8193; x ^= x>>17 -> 8193; x ^= x<<5 -> 270369
    assert up.xorshift32(1) == 270369
    assert up.seed_state(0) == up.ZERO_SEED_REPLACEMENT and up.seed_state(2 ** 32 + 5) == 5
    x, ref = up.seed_state(12345), []
    for _ in range(2500):  # longer than one jump-table block
        x = up.xorshift32(x)
        ref.append(x)
    states, last = up.xorshift32_states(12345, 2500)
    assert states.tolist() == ref and last == ref[-1]
    u, _ = up.uniforms(12345, 2500)
    assert u.dtype == np.float32 and np.all((u >= 0) & (u < 1))
    assert np.array_equal(u, (np.array(ref, np.uint64) >> 8).astype(np.float32) / np.float32(2 ** 24))
    with pytest.raises(GraphError):
        up.xorshift32(0)


def test_stochastic_rounding_is_unbiased_and_integer_stable():
    u, _ = up.uniforms(7, 200000)
    for v in (3.25, -2.75, 0.5, -0.125, 100.9):
        r = up.stochastic_round(np.full(u.size, v, np.float32), u)
        assert set(np.unique(r).tolist()) <= {np.floor(v), np.floor(v) + 1}
        assert abs(r.mean() - v) < 5e-3
    ints = np.arange(-127, 128, dtype=np.float32)
    uu, _ = up.uniforms(9, ints.size)
    assert np.array_equal(up.stochastic_round(ints, np.maximum(uu, np.float32(1 - 2 ** -24))), ints)


def test_qas_weight_update_is_sgd_in_real_units_on_selected_channels():
    rng = np.random.default_rng(11)
    w = int8(rng, (4, 3, 3, 6), -100, 100)
    s_w = rng.uniform(0.01, 0.02, size=4).astype(np.float32)
    channels = [1, 4]
    grad = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    lr = 0.01
    new, state = up.qas_weight_update(w, grad, s_w, lr, channels, 3, 0, 99)
    frozen = [c for c in range(6) if c not in channels]
    assert np.array_equal(new[..., frozen], w[..., frozen])
    # exact spec: v = w - (lr*G)/s, floor(v + u) with one draw per element in OHWI order
    v = w[..., channels].astype(np.float32) - (np.float32(lr) * grad) / s_w[:, None, None, None]
    u, state_ref = up.uniforms(99, v.size)
    assert state == state_ref
    assert np.array_equal(new[..., channels], np.clip(up.stochastic_round(v, u.reshape(v.shape)), -127, 127))
    # in expectation the real weight moves by -lr * G
    steps = []
    st = 5
    for _ in range(400):
        n2, st = up.qas_weight_update(w, grad, s_w, lr, channels, 3, 0, st)
        steps.append((n2[..., channels].astype(np.float64) - w[..., channels]) * s_w[:, None, None, None])
    assert np.abs(np.mean(steps, axis=0) - (-lr * grad)).max() < 0.15 * np.abs(lr * grad).max() + 2e-3
    # clamp to [-127, 127]
    big, _ = up.qas_weight_update(np.full((1, 1, 1, 1), 120, np.int8), np.full((1, 1, 1, 1), -1e3, np.float32),
                                  [0.01], 1.0, [0], 3, 0, 3)
    assert big.item() == 127


def test_qas_bias_update_rounds_half_away_and_saturates():
    b = np.array([10, -10, 0, 2 ** 31 - 5], np.int32)
    g = np.array([2.5, 2.5, -1.49, -1e9], np.float32)
    new = up.qas_bias_update(b, g, np.ones(4, np.float32), 1.0)
    assert new.tolist() == [10 - 3, -10 - 3, 0 + 1, 2 ** 31 - 1]
    assert new.dtype == np.int32


def test_float_sgd_order():
    w = np.array([[1.0, 2.0]], np.float32)
    b = np.array([0.5], np.float32)
    nw, nb = up.float_head_update(w, b, np.array([0.3], np.float32), np.array([1.5, -2.0], np.float32), 0.1)
    g = (np.float32(0.3) * np.array([1.5, -2.0], np.float32))
    assert np.array_equal(nw[0], w[0] - np.float32(0.1) * g)
    assert np.array_equal(nb, b - np.float32(0.1) * np.float32(0.3))
