"""NumPy reference of every backward op: float32 gradients computed from stored int8 values.

This is the executable specification the C++ kernels are tested against
(docs/training_graph.md, "Numeric specification"). Rules:
- the real value of an int8 tensor is ``f32(q - zp) * f32(scale)``; gradients are those
  of the real-valued function; CLAMP_GRAD stops the gradient where the int8 output sat
  at its clamp bound (straight-through through rounding);
- all arithmetic is float32; every product is rounded before it is added; every sum is a
  *sequential* accumulation from +0.0 in the documented order (``seq_sum``), so that a
  C++ loop in that order reproduces the bytes. Terms that fall into padding are added as
  zeros, which never changes a float32 accumulator that starts at +0.0.

Layouts are TFLite's: NHWC activations, OHWI conv weights, [1,kh,kw,C] depthwise
weights, [out,in] fully connected weights.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..graph import GraphError

F32 = np.float32

#: Largest number of float32 terms ``seq_sum`` materializes at once (bounds memory).
_CHUNK_ELEMS = 1 << 24


# --------------------------------------------------------------------------- basics
def seq_sum(terms: np.ndarray, axis: int = 0, acc: Optional[np.ndarray] = None) -> np.ndarray:
    """``((acc + t_0) + t_1) + ...`` along ``axis`` in float32, strictly left to right.

    ``acc`` defaults to +0.0. ``np.add.accumulate`` is sequential (unlike ``np.sum``,
    which sums pairwise along contiguous axes), so this is the order a C loop uses.
    """
    terms = np.moveaxis(np.asarray(terms, dtype=F32), axis, 0)
    if acc is None:
        acc = np.zeros(terms.shape[1:], F32)
    acc = np.asarray(acc, dtype=F32)
    n = terms.shape[0]
    per_term = max(1, int(np.prod(terms.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK_ELEMS // per_term)
    for start in range(0, n, step):
        block = np.concatenate([acc[None], terms[start:start + step]], axis=0)
        acc = np.add.accumulate(block, axis=0, dtype=F32)[-1]
    return acc


def dequantize(q: np.ndarray, scale, zero_point, axis: int = -1) -> np.ndarray:
    """``f32(q - zp) * f32(scale)``; per-channel scale/zero point along ``axis``."""
    q = np.asarray(q, dtype=np.int64)
    scale = np.asarray(scale, dtype=F32).reshape(-1)
    zp = np.asarray(zero_point, dtype=np.int64).reshape(-1)
    if scale.size > 1 or zp.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape)
    return (q - zp).astype(F32) * scale


def real_weight(w_q: np.ndarray, weight_scale, axis: int) -> np.ndarray:
    """Real weight ``f32(w_q) * weight_scale[channel]`` (one scale, or one per ``axis`` entry)."""
    return dequantize(w_q, weight_scale, 0, axis)


def same_padding(in_size: int, out_size: int, kernel: int, stride: int, dilation: int) -> int:
    """TFLite's SAME padding before the first element (the smaller half)."""
    effective = (kernel - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def conv_padding(padding: str, in_hw, out_hw, kernel_hw, stride_hw, dilation_hw=(1, 1)) -> Tuple[int, int]:
    """(pad_top, pad_left) of a TFLite SAME/VALID conv or pool."""
    if padding == "VALID":
        return 0, 0
    if padding != "SAME":
        raise GraphError(f"unsupported padding {padding!r}")
    return tuple(
        same_padding(i, o, k, s, d) for i, o, k, s, d in zip(in_hw, out_hw, kernel_hw, stride_hw, dilation_hw)
    )


def _taps(in_size: int, out_size: int, stride: int, pad: int, offset: int):
    """For one kernel tap at ``offset``: input index of every output position and whether it is inside."""
    idx = np.arange(out_size) * stride - pad + offset
    inside = (idx >= 0) & (idx < in_size)
    return np.clip(idx, 0, max(in_size - 1, 0)), inside


def _gather_input_tap(x: np.ndarray, out_hw, stride, pad, offset) -> np.ndarray:
    """``x`` sampled at the input positions one kernel tap reads for each output position (0 in padding)."""
    iy, vy = _taps(x.shape[1], out_hw[0], stride[0], pad[0], offset[0])
    ix, vx = _taps(x.shape[2], out_hw[1], stride[1], pad[1], offset[1])
    g = x[:, iy][:, :, ix]
    valid = (vy[:, None] & vx[None, :])[None, :, :, None]
    return np.where(valid, g, F32(0))


def _scatter_output_tap(g: np.ndarray, in_hw, stride, pad, offset) -> np.ndarray:
    """For one kernel tap: per input position, the output-gradient element that reads it through
    this tap (0 where none does). Shape ``[N, H, W, C_out]``."""
    out_h, out_w = g.shape[1], g.shape[2]

    def axis_map(in_size, out_size, s, p, off):
        num = np.arange(in_size) + p - off
        o = num // s
        ok = (num >= 0) & (num % s == 0) & (o < out_size)
        return np.clip(o, 0, max(out_size - 1, 0)), ok

    oy, vy = axis_map(in_hw[0], out_h, stride[0], pad[0], offset[0])
    ox, vx = axis_map(in_hw[1], out_w, stride[1], pad[1], offset[1])
    t = g[:, oy][:, :, ox]
    valid = (vy[:, None] & vx[None, :])[None, :, :, None]
    return np.where(valid, t, F32(0))


# --------------------------------------------------------------------------- gradient storage
def store_grad(x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """A computed float32 gradient as stored in a tensor of ``dtype``: float32 unchanged, or
    IEEE binary16 rounded once to nearest even (overflow to +-inf, subnormals kept; NumPy's
    float32 -> float16 cast)."""
    x = np.asarray(x, F32)
    return x if dtype == "float32" else x.astype(np.float16)


def load_grad(x: np.ndarray) -> np.ndarray:
    """A stored gradient as the float32 the kernels compute with (binary16 widens exactly)."""
    return np.asarray(x, F32)


# --------------------------------------------------------------------------- elementwise / shape ops
def clamp_grad(grad_y: np.ndarray, y_q: np.ndarray, act_min: int, act_max: int) -> np.ndarray:
    """Straight-through clamp: the gradient passes where ``act_min < y < act_max``."""
    y_q = np.asarray(y_q).reshape(np.shape(grad_y))
    keep = (y_q > act_min) & (y_q < act_max)
    return np.where(keep, np.asarray(grad_y, F32), F32(0))


def grad_scale(grad_y: np.ndarray, factor: float) -> np.ndarray:
    """``grad_y * f32(factor)``: the constant real slope of an op that passes int8 values on
    into another quantization (RELU6 copies its clamped input bytes, so its slope is s_out / s_in)."""
    return (np.asarray(grad_y, F32) * F32(factor)).astype(F32)


def leaky_relu_grad(grad_y: np.ndarray, x_q: np.ndarray, input_zero_point: int, alpha: float) -> np.ndarray:
    """Gradient of LEAKY_RELU w.r.t. its real input: ``grad_y`` where ``x_q >= zp_in`` (slope 1),
    ``grad_y * f32(alpha)`` elsewhere (``grad_y`` already through the output's clamp)."""
    g = np.asarray(grad_y, F32)
    x_q = np.asarray(x_q).reshape(g.shape).astype(np.int64)
    return np.where(x_q >= int(input_zero_point), g, g * F32(alpha)).astype(F32)


def grad_accumulate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, F32) + np.asarray(b, F32)).astype(F32)


def reshape_grad(grad_y: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    return np.asarray(grad_y, F32).reshape(tuple(input_shape))


def concatenation_grad(grad_y: np.ndarray, axis: int, begin: int, size: int) -> np.ndarray:
    """Gradient of CONCATENATION w.r.t. one input: the slice ``[begin, begin + size)`` of
    ``grad_y`` along ``axis`` (the input's place in the output)."""
    g = np.asarray(grad_y, F32)
    axis = int(axis) % g.ndim
    if not (0 <= begin and size > 0 and begin + size <= g.shape[axis]):
        raise GraphError(f"CONCATENATION_GRAD: slice [{begin}, {begin + size}) outside axis {axis} of {g.shape}")
    sl = [slice(None)] * g.ndim
    sl[axis] = slice(int(begin), int(begin) + int(size))
    return np.ascontiguousarray(g[tuple(sl)])


def pad_grad(grad_y: np.ndarray, paddings) -> np.ndarray:
    """Gradient of PAD: the un-padded slice (the padded border does not depend on the input)."""
    p = np.asarray(paddings, dtype=np.int64).reshape(-1, 2)
    if p.shape[0] != grad_y.ndim:
        raise GraphError(f"PAD_GRAD: paddings for {p.shape[0]} dims, gradient has {grad_y.ndim}")
    sl = tuple(slice(int(b), grad_y.shape[d] - int(a)) for d, (b, a) in enumerate(p))
    return np.ascontiguousarray(np.asarray(grad_y, F32)[sl])


def mean_grad(grad_y: np.ndarray, input_shape: Sequence[int], axes: Sequence[int]) -> np.ndarray:
    """Gradient of MEAN over ``axes``: each input element gets ``grad_y / count``."""
    input_shape = tuple(int(d) for d in input_shape)
    axes = sorted({int(a) % len(input_shape) for a in axes})
    count = int(np.prod([input_shape[a] for a in axes], dtype=np.int64))
    kept = [1 if d in axes else input_shape[d] for d in range(len(input_shape))]
    g = np.asarray(grad_y, F32).reshape(kept) / F32(count)
    return np.ascontiguousarray(np.broadcast_to(g, input_shape)).astype(F32)


def _pool_windows(in_hw, out_hw, filt, stride, pad):
    """Per output position: clipped window bounds [y0, y1) x [x0, x1)."""
    oy = np.arange(out_hw[0]) * stride[0] - pad[0]
    ox = np.arange(out_hw[1]) * stride[1] - pad[1]
    y0, y1 = np.clip(oy, 0, in_hw[0]), np.clip(oy + filt[0], 0, in_hw[0])
    x0, x1 = np.clip(ox, 0, in_hw[1]), np.clip(ox + filt[1], 0, in_hw[1])
    return y0, y1, x0, x1


def _pool_scatter(q: np.ndarray, in_shape, filt, stride, pad, route=None, grad_dtype: str = "float32") -> np.ndarray:
    """Add ``q[n,oy,ox,c]`` into every input of its clipped window (or only where ``route`` is
    true for that tap), summing per input over (oy, ox) in row-major order. The running sum
    lives in the output tensor, so each partial sum is stored (``grad_dtype``).

    For a fixed input element, ascending oy means descending window row dy (and likewise
    for columns), so visiting taps with dy descending, then dx descending, accumulates
    each input's contributions in row-major (oy, ox) order.
    """
    n, h, w, c = in_shape
    acc = np.zeros(in_shape, F32)
    out_h, out_w = q.shape[1], q.shape[2]
    for dy in range(filt[0] - 1, -1, -1):
        iy = np.arange(out_h) * stride[0] - pad[0] + dy
        vy = (iy >= 0) & (iy < h)
        for dx in range(filt[1] - 1, -1, -1):
            ix = np.arange(out_w) * stride[1] - pad[1] + dx
            vx = (ix >= 0) & (ix < w)
            oys, oxs = np.nonzero(vy)[0], np.nonzero(vx)[0]
            if oys.size == 0 or oxs.size == 0:
                continue
            term = q[:, oys][:, :, oxs]
            if route is not None:
                term = np.where(route[(dy, dx)][:, oys][:, :, oxs], term, F32(0))
            sel = (slice(None), iy[oys][:, None], ix[oxs][None, :])
            acc[sel] = load_grad(store_grad(acc[sel] + term, grad_dtype))
    return acc


def average_pool_grad(grad_y, input_shape, filter_hw, stride_hw, pad_tl, grad_dtype: str = "float32") -> np.ndarray:
    """Gradient of AVERAGE_POOL_2D (divisor = clipped window size, as TFLite counts it); every
    partial sum stored as ``grad_dtype``."""
    grad_y = np.asarray(grad_y, F32)
    in_hw = tuple(input_shape[1:3])
    y0, y1, x0, x1 = _pool_windows(in_hw, grad_y.shape[1:3], filter_hw, stride_hw, pad_tl)
    cnt = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).astype(F32)
    q = grad_y / np.maximum(cnt, F32(1))[None, :, :, None]
    return _pool_scatter(q, tuple(input_shape), filter_hw, stride_hw, pad_tl, grad_dtype=grad_dtype)


def max_pool_grad(grad_y, x_q, filter_hw, stride_hw, pad_tl, grad_dtype: str = "float32") -> np.ndarray:
    """Gradient of MAX_POOL_2D: each output's gradient goes to the first (row-major) maximum
    of its clipped window; every partial sum stored as ``grad_dtype``."""
    grad_y = np.asarray(grad_y, F32)
    x = np.asarray(x_q).astype(np.int64)
    n, h, w, c = x.shape
    out_h, out_w = grad_y.shape[1:3]
    best = np.full((n, out_h, out_w, c), np.iinfo(np.int64).min)
    arg = np.zeros((n, out_h, out_w, c), dtype=np.int64)
    for dy in range(filter_hw[0]):
        for dx in range(filter_hw[1]):
            iy = np.arange(out_h) * stride_hw[0] - pad_tl[0] + dy
            ix = np.arange(out_w) * stride_hw[1] - pad_tl[1] + dx
            valid = (((iy >= 0) & (iy < h))[:, None] & ((ix >= 0) & (ix < w))[None, :])[None, :, :, None]
            v = x[:, np.clip(iy, 0, h - 1)][:, :, np.clip(ix, 0, w - 1)]
            better = valid & (v > best)  # strict: the first maximum wins
            best = np.where(better, v, best)
            arg = np.where(better, dy * filter_hw[1] + dx, arg)
    route = {(dy, dx): arg == dy * filter_hw[1] + dx for dy in range(filter_hw[0]) for dx in range(filter_hw[1])}
    return _pool_scatter(grad_y, x.shape, filter_hw, stride_hw, pad_tl, route, grad_dtype)


# --------------------------------------------------------------------------- conv-like grad-input
def conv2d_grad_input(grad_y, w_q, weight_scale, input_shape, stride_hw, dilation_hw, pad_tl) -> np.ndarray:
    """Gradient of CONV_2D w.r.t. its (real) input.

    ``grad_x[n,iy,ix,c] = sum_{ky} sum_{kx} sum_{o} grad_y[n,oy,ox,o] * W[o,ky,kx,c]``,
    taps in ascending (ky, kx), then o ascending.
    """
    grad_y = np.asarray(grad_y, F32)
    w = real_weight(w_q, weight_scale, 0)  # [O, KH, KW, C]
    o_ch, kh, kw, c_in = w.shape
    n, h, wd = int(input_shape[0]), int(input_shape[1]), int(input_shape[2])
    acc = np.zeros((n, h, wd, c_in), F32)
    for ky in range(kh):
        for kx in range(kw):
            off = (ky * dilation_hw[0], kx * dilation_hw[1])
            g = _scatter_output_tap(grad_y, (h, wd), stride_hw, pad_tl, off)  # [N,H,W,O]
            terms = g[..., :, None] * w[:, ky, kx, :][None, None, None]  # [N,H,W,O,C]
            acc = seq_sum(terms, axis=3, acc=acc)
    return acc


def _output_tap_index(in_size: int, out_size: int, kernel: int, stride: int, dilation: int, pad: int):
    """Per kernel tap and input position: the output position reading it through that tap
    (clipped) and whether one does. Shapes ``[kernel, in_size]``."""
    num = np.arange(in_size)[None, :] + pad - (np.arange(kernel) * dilation)[:, None]
    o = num // stride
    ok = (num >= 0) & (num % stride == 0) & (o < out_size)
    return np.clip(o, 0, max(out_size - 1, 0)), ok


def depthwise_grad_input(grad_y, w_q, weight_scale, input_shape, stride_hw, dilation_hw, pad_tl,
                         depth_multiplier: int) -> np.ndarray:
    """Gradient of DEPTHWISE_CONV_2D w.r.t. its input.

    ``grad_x[n,iy,ix,ci] = sum_{ky} sum_{kx} sum_{j<M} grad_y[n,oy,ox,ci*M+j] * W[0,ky,kx,ci*M+j]``
    (taps ascending, then the M outputs of the channel). All taps are gathered at once and
    summed with one sequential accumulation over the (ky, kx, j) axis.
    """
    grad_y = np.asarray(grad_y, F32)
    w = real_weight(w_q, weight_scale, 3)  # [1, KH, KW, C*M]
    _, kh, kw, c_out = w.shape
    m = int(depth_multiplier)
    n, h, wd, c_in = (int(d) for d in input_shape)
    if c_in * m != c_out:
        raise GraphError(f"DEPTHWISE_CONV_2D_GRAD_INPUT: {c_in} channels x multiplier {m} != {c_out} outputs")
    oh, ow = grad_y.shape[1:3]
    oy, vy = _output_tap_index(h, oh, kh, stride_hw[0], dilation_hw[0], pad_tl[0])  # [KH, H]
    ox, vx = _output_tap_index(wd, ow, kw, stride_hw[1], dilation_hw[1], pad_tl[1])  # [KW, W]
    g = grad_y[:, oy[:, None, :, None], ox[None, :, None, :], :]  # [N, KH, KW, H, W, C*M]
    valid = (vy[:, None, :, None] & vx[None, :, None, :])[None, :, :, :, :, None]
    terms = np.where(valid, g, F32(0)) * w[0][None, :, :, None, None, :]
    # sequence axis (ky, kx, j): [N, H, W, C, KH, KW, M] -> [N, H, W, C, KH*KW*M]
    terms = terms.reshape(n, kh, kw, h, wd, c_in, m).transpose(0, 3, 4, 5, 1, 2, 6).reshape(n, h, wd, c_in, -1)
    return seq_sum(terms, axis=4)


def fully_connected_grad_input(grad_y, w_q, weight_scale, input_shape) -> np.ndarray:
    """Gradient of FULLY_CONNECTED w.r.t. its input viewed as [rows, in]; o ascending."""
    w = real_weight(w_q, weight_scale, 0)  # [O, I]
    g = np.asarray(grad_y, F32).reshape(-1, w.shape[0])
    terms = g[:, :, None] * w[None]  # [R, O, I]
    return seq_sum(terms, axis=1).reshape(tuple(input_shape))


def fc_float_grad_input(grad_logits, weight, features_shape) -> np.ndarray:
    """Gradient of the float head w.r.t. its (dequantized) features; j ascending."""
    w = np.asarray(weight, F32)
    g = np.asarray(grad_logits, F32).reshape(-1, w.shape[0])
    return seq_sum(g[:, :, None] * w[None], axis=1).reshape(tuple(features_shape))


# --------------------------------------------------------------------------- weight / bias gradients
def conv2d_weight_grad(grad_y, x_real, kernel_hw, stride_hw, dilation_hw, pad_tl, channels) -> np.ndarray:
    """Weight gradient of CONV_2D for the selected input ``channels``: ``[O, KH, KW, len(channels)]``.

    ``G[o,ky,kx,c] = sum_{n, oy, ox} grad_y[n,oy,ox,o] * X[n,iy,ix,c]`` (positions row-major).
    """
    grad_y = np.asarray(grad_y, F32)
    x = np.asarray(x_real, F32)[..., list(channels)]
    n, oh, ow, o_ch = grad_y.shape
    kh, kw = kernel_hw
    g = grad_y.reshape(-1, o_ch)  # [P, O]
    out = np.zeros((o_ch, kh, kw, x.shape[-1]), F32)
    for ky in range(kh):
        for kx in range(kw):
            xt = _gather_input_tap(x, (oh, ow), stride_hw, pad_tl, (ky * dilation_hw[0], kx * dilation_hw[1]))
            terms = g[:, :, None] * xt.reshape(-1, x.shape[-1])[:, None, :]  # [P, O, Csel]
            out[:, ky, kx, :] = seq_sum(terms, axis=0)
    return out


def depthwise_weight_grad(grad_y, x_real, kernel_hw, stride_hw, dilation_hw, pad_tl, depth_multiplier,
                          channels) -> np.ndarray:
    """Weight gradient of DEPTHWISE_CONV_2D for the selected (output) ``channels``: ``[1, KH, KW, len]``."""
    grad_y = np.asarray(grad_y, F32)
    x = np.asarray(x_real, F32)
    channels = np.asarray(list(channels), dtype=np.int64)
    m = int(depth_multiplier)
    n, oh, ow, _ = grad_y.shape
    kh, kw = kernel_hw
    g = grad_y[..., channels].reshape(-1, channels.size)
    xs = x[..., channels // m]
    out = np.zeros((1, kh, kw, channels.size), F32)
    for ky in range(kh):
        for kx in range(kw):
            xt = _gather_input_tap(xs, (oh, ow), stride_hw, pad_tl, (ky * dilation_hw[0], kx * dilation_hw[1]))
            out[0, ky, kx] = seq_sum(g * xt.reshape(-1, channels.size), axis=0)
    return out


def fully_connected_weight_grad(grad_y, x_real, channels) -> np.ndarray:
    """Weight gradient of FULLY_CONNECTED for the selected input ``channels``: ``[O, len]``; rows ascending."""
    x = np.asarray(x_real, F32)
    g = np.asarray(grad_y, F32)
    o_ch = g.shape[-1]
    g = g.reshape(-1, o_ch)
    x = x.reshape(g.shape[0], -1)[:, list(channels)]
    return seq_sum(g[:, :, None] * x[:, None, :], axis=0)


def bias_grad(grad_y) -> np.ndarray:
    """``G_b[c] = sum over all positions (row-major) of grad_y[..., c]``."""
    g = np.asarray(grad_y, F32)
    return seq_sum(g.reshape(-1, g.shape[-1]), axis=0)


# --------------------------------------------------------------------------- loss
def _exp_f32(x: np.ndarray) -> np.ndarray:
    """``f32(exp(double(x)))``: the exp a C port computes as ``(float)exp((double)x)``."""
    return np.exp(np.asarray(x, F32).astype(np.float64)).astype(F32)


def softmax_cross_entropy(logits_real, label: int) -> Tuple[np.float32, np.ndarray]:
    """Softmax cross-entropy of real logits (flattened) and its gradient (logits' shape).

    ``m = max z; d = z - m; e = f32(exp(d)); S = sum e (sequential); p = e / S;
    loss = f32(log(S)) - d[label]; grad = p - onehot(label)``.
    """
    z = np.asarray(logits_real, F32)
    flat = z.reshape(-1)
    label = int(np.asarray(label).reshape(-1)[0])
    if not 0 <= label < flat.size:
        raise GraphError(f"label {label} outside [0, {flat.size})")
    d = flat - flat.max()
    e = _exp_f32(d)
    s = seq_sum(e, axis=0)
    p = e / s
    loss = F32(np.log(np.float64(s))) - d[label]
    grad = p.copy()
    grad[label] = grad[label] - F32(1)
    return F32(loss), grad.reshape(z.shape)


def fc_float_forward(features_real, weight, bias) -> np.ndarray:
    """Float head: ``logits_j = (sum_i W[j,i] * f_i) + b_j`` (i ascending), shape [1, N]."""
    f = np.asarray(features_real, F32).reshape(1, -1)
    w = np.asarray(weight, F32)
    if f.shape[1] != w.shape[1]:
        raise GraphError(f"FC_FLOAT_FORWARD: {f.shape[1]} features, weight expects {w.shape[1]}")
    acc = seq_sum(w[None] * f[:, None, :], axis=2)  # [1, N]
    return (acc + np.asarray(bias, F32)[None]).astype(F32)
