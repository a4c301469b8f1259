"""Int8 forward of every supported op, bit-exact with TensorFlow Lite Micro's reference kernels.

One pure function per op takes NumPy arrays, quantization parameters and attributes
and returns the output array; ``run_op`` maps a ``graph.Op`` onto them. The
arithmetic follows what TFLite Micro's Prepare and Eval compute (multipliers from
float32 scales in double, int32 accumulation, double-rounding requantization, the
fused activation as the output clamp) and is tested byte for byte against the
tflite-micro interpreter.

Speed: convolutions accumulate in float64 with BLAS. That is exact, not an
approximation: every product (int8 weight) * (int8 input - zero point) is an integer
of magnitude <= 128 * 255, so every partial sum is an integer far below 2^53 and no
float rounding ever happens, whatever the summation order (``_check_exact_accumulation``
guards the bound).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..graph import GraphError, Op, QuantGraph
from . import quant
from .quant import f32

_EXACT_FLOAT64_LIMIT = 1 << 53


# --------------------------------------------------------------------------- shared helpers
def _check_exact_accumulation(depth: int) -> None:
    if depth * 128 * 255 >= _EXACT_FLOAT64_LIMIT:
        raise GraphError(f"accumulation depth {depth} too large for exact float64 accumulation")


def _requantize_to_int8(acc: np.ndarray, multiplier, shift, output_zero_point: int, act_min: int, act_max: int):
    """int32 accumulator -> int8: the fixed-point rescale, output offset, activation clamp."""
    acc = quant.wrap_int32(acc)
    out = quant.multiply_by_quantized_multiplier(acc, multiplier, shift) + int(output_zero_point)
    return np.clip(out, act_min, act_max).astype(np.int8)


def conv_output_size(in_size: int, filter_size: int, stride: int, dilation: int, padding: str) -> Tuple[int, int, int]:
    """(output size, padding before, padding after) for one spatial dim, TFLite's SAME / VALID rules.

    SAME puts the odd padding element after (bottom / right).
    """
    if stride < 1 or dilation < 1 or filter_size < 1:
        raise GraphError(f"bad window: filter {filter_size}, stride {stride}, dilation {dilation}")
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
        total = max((out - 1) * stride + effective - in_size, 0)
        return out, total // 2, total - total // 2
    if padding == "VALID":
        out = (in_size - effective + stride) // stride
        if out < 1:
            raise GraphError(f"VALID window of {effective} does not fit an input of {in_size}")
        return out, 0, 0
    raise GraphError(f"unsupported padding {padding!r}")


def _padded_windows(x, fh, fw, stride, dilation, padding, pad_value):
    """Pad an NHWC array for a window op; return (out_h, out_w, taps).

    ``taps()`` yields, per filter tap (i, j), the strided view of the padded input that
    the tap sees at every output position.
    """
    _, h, w, _ = x.shape
    sh, sw = stride
    dh, dw = dilation
    oh, pt, pb = conv_output_size(h, fh, sh, dh, padding)
    ow, pl, pr = conv_output_size(w, fw, sw, dw, padding)
    if pt or pb or pl or pr:
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    else:
        xp = x

    def taps():
        for i in range(fh):
            for j in range(fw):
                y0, x0 = i * dh, j * dw
                yield i, j, xp[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw, :]

    return oh, ow, taps


def _effective_multipliers(input_scale, weight_scales, output_scale):
    """Per-channel (or broadcast per-tensor) requantization, TFLite Micro's conv Prepare:
    double(s_in) * double(s_w[c]) / double(s_out) from the float32 scales."""
    real = f32(input_scale) * f32(weight_scales) / f32(output_scale)
    return quant.quantize_multiplier(np.atleast_1d(real))


def _bias_and_requantize(acc, bias, input_scale, weight_scales, output_scale, output_zero_point, activation):
    """The common end of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: add the int32 bias,
    rescale by s_in * s_w[c] / s_out, add the output zero point and clamp to the activation."""
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    mult, shift = _effective_multipliers(input_scale, weight_scales, output_scale)
    lo, hi = quant.activation_range(activation, output_scale, output_zero_point)
    return _requantize_to_int8(acc, mult, shift, output_zero_point, lo, hi)


# --------------------------------------------------------------------------- conv-like ops
def conv_2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    *,
    input_scale: float,
    input_zero_point: int,
    weight_scales,
    output_scale: float,
    output_zero_point: int,
    padding: str = "VALID",
    stride: Tuple[int, int] = (1, 1),
    dilation: Tuple[int, int] = (1, 1),
    activation: str = "NONE",
) -> np.ndarray:
    """CONV_2D, int8 NHWC input, OHWI int8 weights (per-channel or per-tensor scales), int32 bias."""
    n, h, w, c_in = x.shape
    c_out, kh, kw, wc_in = weight.shape
    if wc_in != c_in:
        raise GraphError(f"CONV_2D: weight expects {wc_in} input channels, input has {c_in}")
    _check_exact_accumulation(kh * kw * c_in)
    xs = x.astype(np.float64) - int(input_zero_point)
    oh, ow, taps = _padded_windows(xs, kh, kw, stride, dilation, padding, 0.0)
    # per tap a C-contiguous [c_in, c_out] matrix: numpy's matmul is several times slower
    # with a transposed (Fortran-ordered) right operand
    w_taps = np.ascontiguousarray(weight.transpose(1, 2, 3, 0), dtype=np.float64)
    acc = None
    for i, j, view in taps():
        part = view.reshape(-1, c_in) @ w_taps[i, j]
        acc = part if acc is None else acc + part
    acc = acc.astype(np.int64).reshape(n, oh, ow, c_out)
    return _bias_and_requantize(acc, bias, input_scale, weight_scales, output_scale, output_zero_point, activation)


def depthwise_conv_2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    *,
    input_scale: float,
    input_zero_point: int,
    weight_scales,
    output_scale: float,
    output_zero_point: int,
    depth_multiplier: int = 1,
    padding: str = "VALID",
    stride: Tuple[int, int] = (1, 1),
    dilation: Tuple[int, int] = (1, 1),
    activation: str = "NONE",
) -> np.ndarray:
    """DEPTHWISE_CONV_2D: weights [1, kh, kw, C*m]; output channel c*m + k reads input channel c."""
    n, h, w, c_in = x.shape
    one, kh, kw, c_out = weight.shape
    if one != 1 or c_out != c_in * depth_multiplier:
        raise GraphError(
            f"DEPTHWISE_CONV_2D: weight shape {weight.shape} does not match {c_in} input channels "
            f"x depth multiplier {depth_multiplier}"
        )
    xs = x.astype(np.int64) - int(input_zero_point)
    if depth_multiplier > 1:
        xs = np.repeat(xs, depth_multiplier, axis=3)
    oh, ow, taps = _padded_windows(xs, kh, kw, stride, dilation, padding, 0)
    w64 = weight.astype(np.int64)
    acc = np.zeros((n, oh, ow, c_out), dtype=np.int64)
    for i, j, view in taps():
        acc += view * w64[0, i, j, :]
    return _bias_and_requantize(acc, bias, input_scale, weight_scales, output_scale, output_zero_point, activation)


def fully_connected(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    *,
    input_scale: float,
    input_zero_point: int,
    weight_scales,
    output_scale: float,
    output_zero_point: int,
    activation: str = "NONE",
    output_shape: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """FULLY_CONNECTED: weights [out, in] (per-tensor or per-channel); the input is flattened
    to [-1, in].

    The multiplier is double(s_in) * double(s_w) / double(s_out), as for convolutions (some
    TFLite versions round the product s_in * s_w to float32 first; the TFLite Micro we test
    against does not, and tests/test_reference.py tells the two apart). ``output_shape``
    (keep_num_dims or not) reshapes the [batch, out] result.
    """
    units, depth = weight.shape
    if x.size % depth:
        raise GraphError(f"FULLY_CONNECTED: input of {x.size} elements is not a multiple of the weight depth {depth}")
    _check_exact_accumulation(depth)
    xs = x.reshape(-1, depth).astype(np.float64) - int(input_zero_point)
    acc = (xs @ np.ascontiguousarray(weight.T, dtype=np.float64)).astype(np.int64)
    out = _bias_and_requantize(acc, bias, input_scale, weight_scales, output_scale, output_zero_point, activation)
    return out.reshape(output_shape) if output_shape is not None else out


# --------------------------------------------------------------------------- elementwise / reductions
def add(
    x1: np.ndarray,
    x2: np.ndarray,
    *,
    input1_scale: float,
    input1_zero_point: int,
    input2_scale: float,
    input2_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    activation: str = "NONE",
) -> np.ndarray:
    """ADD of two int8 tensors (NumPy broadcasting), TFLite's two-input rescale scheme.

    Both inputs are shifted left by 20 bits and scaled by s_i / (2 max(s1, s2)) (multipliers
    below one), summed, and the sum scaled by 2 max(s1, s2) / (2^20 s_out).
    """
    left_shift = 20
    s1, s2, so = f32(input1_scale), f32(input2_scale), f32(output_scale)
    twice_max = 2.0 * max(float(s1), float(s2))
    m1, e1 = quant.quantize_multiplier_smaller_than_one_exp(float(s1) / twice_max)
    m2, e2 = quant.quantize_multiplier_smaller_than_one_exp(float(s2) / twice_max)
    mo, eo = quant.quantize_multiplier_smaller_than_one_exp(twice_max / (float(1 << left_shift) * float(so)))
    a = quant.wrap_int32((x1.astype(np.int64) - int(input1_zero_point)) << left_shift)
    b = quant.wrap_int32((x2.astype(np.int64) - int(input2_zero_point)) << left_shift)
    a = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1, e1)
    b = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2, e2)
    raw = quant.multiply_by_quantized_multiplier_smaller_than_one_exp(quant.wrap_int32(a + b), mo, eo)
    lo, hi = quant.activation_range(activation, output_scale, output_zero_point)
    return np.clip(raw + int(output_zero_point), lo, hi).astype(np.int8)


def _resolve_axes(axes, ndim: int) -> Tuple[int, ...]:
    resolved = []
    for a in np.atleast_1d(np.asarray(axes, dtype=np.int64)).tolist():
        if not -ndim <= a < ndim:
            raise GraphError(f"MEAN: axis {a} out of range for a {ndim}-D input")
        a = a % ndim
        if a not in resolved:
            resolved.append(a)
    return tuple(resolved)


def mean(
    x: np.ndarray,
    axes,
    *,
    keep_dims: bool,
    input_scale: float,
    input_zero_point: int,
    output_scale: float,
    output_zero_point: int,
) -> np.ndarray:
    """MEAN of an int8 tensor over ``axes``, TFLite Micro's integer algorithm.

    The TFLite Micro we test against takes this one path for every int8 MEAN (any axes,
    keep_dims or not); older releases had a separate 4-D {1, 2} path and a float path,
    which round differently (e.g. a 4x4 mean of 7/16 fractions comes out 1 LSB apart).

    The multiplier of s_in / s_out gets 1/count folded in: with k = floor(log2(count))
    (at most 32 and at most 31 + shift), multiplier' = (multiplier << k) // count
    (integer division) and shift' = shift - k; the output is
    (sum(q) - zp_in * count) rescaled with (multiplier', shift') plus zp_out. An empty
    axis list copies the input.
    """
    axes_list = np.atleast_1d(np.asarray(axes, dtype=np.int64)).tolist()
    if not axes_list:
        return x.copy()
    resolved = _resolve_axes(axes_list, x.ndim)
    count = int(np.prod([x.shape[a] for a in resolved], dtype=np.int64))
    if count == 0:
        raise GraphError("MEAN over an empty axis")
    mult, shift = quant.quantize_multiplier(float(f32(input_scale)) / float(f32(output_scale)))
    k = min(count.bit_length() - 1, 32, 31 + shift)
    mult = (mult << k) // count
    shift = shift - k
    total = x.astype(np.int64).sum(axis=resolved, keepdims=keep_dims)
    shifted_sum = quant.wrap_int32(total - int(input_zero_point) * count)
    out = quant.multiply_by_quantized_multiplier(shifted_sum, mult, shift) + int(output_zero_point)
    return np.clip(out, -128, 127).astype(np.int8)


def average_pool_2d(
    x: np.ndarray,
    *,
    filter_size: Tuple[int, int],
    stride: Tuple[int, int],
    padding: str,
    output_scale: float,
    output_zero_point: int,
    activation: str = "NONE",
) -> np.ndarray:
    """AVERAGE_POOL_2D on raw int8 values (input and output share quantization).

    The window sum is divided by the number of in-image elements (padding does not
    count), rounding half away from zero.
    """
    fh, fw = filter_size
    q = x.astype(np.int64)
    oh, ow, taps = _padded_windows(q, fh, fw, stride, (1, 1), padding, 0)
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    _, _, count_taps = _padded_windows(ones, fh, fw, stride, (1, 1), padding, 0)
    total = sum(view for _, _, view in taps())
    count = sum(view for _, _, view in count_taps())
    half = count // 2
    avg = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    lo, hi = quant.activation_range(activation, output_scale, output_zero_point)
    return np.clip(avg, lo, hi).astype(np.int8)


def max_pool_2d(
    x: np.ndarray,
    *,
    filter_size: Tuple[int, int],
    stride: Tuple[int, int],
    padding: str,
    output_scale: float,
    output_zero_point: int,
    activation: str = "NONE",
) -> np.ndarray:
    """MAX_POOL_2D over the in-image elements of each window, then the activation clamp."""
    fh, fw = filter_size
    q = x.astype(np.int64)
    below_int8 = -129  # padding that never wins a max
    oh, ow, taps = _padded_windows(q, fh, fw, stride, (1, 1), padding, below_int8)
    result = None
    for _, _, view in taps():
        result = view.copy() if result is None else np.maximum(result, view)
    lo, hi = quant.activation_range(activation, output_scale, output_zero_point)
    return np.clip(result, lo, hi).astype(np.int8)


# --------------------------------------------------------------------------- softmax
SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUMULATION_INTEGER_BITS = 12


def softmax_params(input_scale: float, beta: float = 1.0) -> Tuple[int, int, int]:
    """(input multiplier, input left shift, diff_min) of TFLite Micro's int8 softmax Prepare.

    The real multiplier beta * s_in * 2^(31-5) (capped at 2^31 - 1) maps an input difference
    to a Q5.26 fixed-point number; diff_min is the most negative difference whose rescale
    still fits, -floor((2^5 - 1) * 2^26 / 2^left_shift).
    """
    bits = SOFTMAX_SCALED_DIFF_INTEGER_BITS
    real = min(float(np.float32(beta)) * float(f32(input_scale)) * float(1 << (31 - bits)), float((1 << 31) - 1))
    mult, left_shift = quant.quantize_multiplier_greater_than_one(real)
    radius = ((1 << bits) - 1) * float(1 << (31 - bits)) / float(1 << left_shift)
    return mult, left_shift, -int(np.floor(radius))


def softmax(x: np.ndarray, *, input_scale: float, beta: float = 1.0) -> np.ndarray:
    """int8 SOFTMAX over the last axis; the output is int8 with scale 1/256, zero point -128.

    TFLite Micro's fixed-point algorithm: differences to the row maximum rescaled to Q5.26,
    exp of each in Q0.31, the sum in Q12.19, its reciprocal by Newton-Raphson, and each
    output rounded with a right shift by (bits over unit + 23). Differences below diff_min
    output -128.
    """
    mult, left_shift, diff_min = softmax_params(input_scale, beta)
    q = x.astype(np.int64)
    diff = q - q.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    rescaled = quant.multiply_by_quantized_multiplier_greater_than_one(diff, mult, left_shift)
    exps = quant.exp_on_negative_values(rescaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS)
    accumulated = quant.rounding_divide_by_pot(exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    sum_of_exps = quant.wrap_int32(np.where(valid, accumulated, 0).sum(axis=-1, keepdims=True))
    reciprocal, bits_over_unit = quant.reciprocal_with_headroom(sum_of_exps, SOFTMAX_ACCUMULATION_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    if np.any(exponent > 31):
        # a row whose exps sum to >= 512 (e.g. 512 equal logits); TFLite Micro aborts on an
        # assertion here (rounding shift > 31), so there is no result to match
        raise GraphError(
            f"SOFTMAX over {x.shape[-1]} classes: the sum of exps reaches 512, beyond TFLite Micro's int8 "
            "softmax (its output shift would exceed 31 bits)"
        )
    prob = quant.rounding_divide_by_pot(quant.saturating_rounding_doubling_high_mul(reciprocal, exps), exponent)
    out = np.clip(prob - 128, -128, 127)
    return np.where(valid, out, -128).astype(np.int8)


# --------------------------------------------------------------------------- standalone activations
def relu_multiplier(input_scale: float, output_scale: float) -> Tuple[int, int]:
    """(multiplier, shift) of TFLite Micro's int8 RELU Prepare: QuantizeMultiplier of the
    float32 quotient s_in / s_out (divided in float32, then widened to double)."""
    return quant.quantize_multiplier(float(np.float32(input_scale) / np.float32(output_scale)))


def relu(x: np.ndarray, *, input_scale: float, input_zero_point: int, output_scale: float,
         output_zero_point: int) -> np.ndarray:
    """int8 RELU: requantize to the output scale, then clamp to [max(-128, zp_out), 127].

    TFLite Micro's ReluQuantized: ``zp_out + MBQM(x - zp_in, M, shift)`` with M from
    ``relu_multiplier``; the clamp is the RELU range of the output quantization."""
    mult, shift = relu_multiplier(input_scale, output_scale)
    lo, hi = quant.activation_range("RELU", output_scale, output_zero_point)
    q = quant.multiply_by_quantized_multiplier(x.astype(np.int64) - int(input_zero_point), mult, shift)
    return np.clip(q + int(output_zero_point), lo, hi).astype(np.int8)


def relu6_range(input_scale: float, input_zero_point: int) -> Tuple[int, int]:
    """The clamp of TFLite Micro's int8 RELU6: [zp_in, zp_in + round(6 / s_in)] in the
    *input's* quantization (its Prepare reads only the input tensor)."""
    return quant.activation_range("RELU6", input_scale, input_zero_point)


def relu6(x: np.ndarray, *, input_scale: float, input_zero_point: int) -> np.ndarray:
    """int8 RELU6: the input values clamped to ``relu6_range``; no requantization (TFLite
    Micro's Relu6Quantized copies the clamped bytes whatever the output's quantization)."""
    lo, hi = relu6_range(input_scale, input_zero_point)
    return np.clip(x, lo, hi).astype(np.int8)


def leaky_relu_multipliers(input_scale: float, output_scale: float, alpha: float):
    """((M_identity, shift), (M_alpha, shift)) of TFLite Micro's int8 LEAKY_RELU Prepare: the
    real multipliers s_in / s_out and s_in * alpha / s_out, computed in float32, then widened."""
    s_in, s_out, a = np.float32(input_scale), np.float32(output_scale), np.float32(alpha)
    return quant.quantize_multiplier(float(s_in / s_out)), quant.quantize_multiplier(float(s_in * a / s_out))


def leaky_relu(x: np.ndarray, *, input_scale: float, input_zero_point: int, output_scale: float,
               output_zero_point: int, alpha: float) -> np.ndarray:
    """int8 LEAKY_RELU (TFLite Micro's QuantizeLeakyRelu), ``alpha >= 0``: ``v = x - zp_in``
    is rescaled by the identity multiplier where ``v >= 0``, by the alpha multiplier elsewhere,
    then ``zp_out`` is added and the result clamped to int8."""
    if not alpha >= 0:
        raise GraphError(f"LEAKY_RELU: negative slope {alpha} is unsupported (>= 0 expected)")
    (mi, si), (ma, sa) = leaky_relu_multipliers(input_scale, output_scale, alpha)
    v = x.astype(np.int64) - int(input_zero_point)
    scaled = np.where(v >= 0, quant.multiply_by_quantized_multiplier(v, mi, si),
                      quant.multiply_by_quantized_multiplier(v, ma, sa))
    return np.clip(scaled + int(output_zero_point), -128, 127).astype(np.int8)


def concatenation(xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """CONCATENATION along ``axis`` (negative counts from the end): the input bytes, in order.

    TFLite Micro's int8 kernel does not requantize: its Prepare requires every input to
    share the output's scale and zero point (the converter makes them equal)."""
    if not xs:
        raise GraphError("CONCATENATION: no inputs")
    rank = xs[0].ndim
    if not -rank <= axis < rank:
        raise GraphError(f"CONCATENATION: axis {axis} out of range for rank {rank}")
    return np.concatenate(list(xs), axis=axis % rank)


# --------------------------------------------------------------------------- data movement / conversion
def pad(x: np.ndarray, paddings: np.ndarray, *, output_zero_point: int) -> np.ndarray:
    """PAD: constant padding with the output zero point (real zero)."""
    paddings = np.asarray(paddings, dtype=np.int64)
    if paddings.shape != (x.ndim, 2) or np.any(paddings < 0):
        raise GraphError(f"PAD: paddings {paddings.tolist()} do not fit a {x.ndim}-D input")
    return np.pad(x, [tuple(p) for p in paddings.tolist()], constant_values=np.int8(output_zero_point))


def reshape(x: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """RESHAPE: same bytes, new shape."""
    shape = tuple(int(d) for d in shape)
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise GraphError(f"RESHAPE: cannot reshape {x.shape} into {shape}")
    return x.reshape(shape)


def quantize_op(
    x: np.ndarray, *, output_scale: float, output_zero_point: int,
    input_scale: Optional[float] = None, input_zero_point: Optional[int] = None,
) -> np.ndarray:
    """QUANTIZE: float32 -> int8 (AffineQuantize), or int8 -> int8 requantization
    (multiplier from s_in / s_out, in double from the float32 scales)."""
    if x.dtype == np.float32:
        return quant.quantize(x, f32(output_scale), output_zero_point, "int8")
    if x.dtype == np.int8:
        mult, shift = quant.quantize_multiplier(float(f32(input_scale)) / float(f32(output_scale)))
        q = quant.multiply_by_quantized_multiplier(x.astype(np.int64) - int(input_zero_point), mult, shift)
        return np.clip(q + int(output_zero_point), -128, 127).astype(np.int8)
    raise GraphError(f"QUANTIZE from {x.dtype} is unsupported (float32 or int8 input expected)")


def dequantize_op(x: np.ndarray, *, input_scale: float, input_zero_point: int) -> np.ndarray:
    """DEQUANTIZE: int8 -> float32."""
    if x.dtype != np.int8:
        raise GraphError(f"DEQUANTIZE from {x.dtype} is unsupported (int8 input expected)")
    return quant.dequantize(x, input_scale, input_zero_point)


# --------------------------------------------------------------------------- dispatcher
def _value(graph: QuantGraph, values: Dict[str, np.ndarray], name: Optional[str]):
    if name is None:
        return None
    if name in values:
        return values[name]
    t = graph.tensors[name]
    if t.data is None:
        raise GraphError(f"tensor {name!r} has no value yet (not a constant and not computed before use)")
    return t.data


def _qparams(graph: QuantGraph, name: str, op: Op, role: str):
    t = graph.tensors[name]
    if not t.quantized:
        raise GraphError(f"{op.type} {op.name!r}: {role} {name!r} is not quantized")
    if t.per_channel:
        raise GraphError(f"{op.type} {op.name!r}: {role} {name!r} must be per-tensor quantized")
    return t.scalar_scale(), t.scalar_zero_point()


def _expect_dtype(graph: QuantGraph, op: Op, name: str, dtype: str, role: str) -> None:
    t = graph.tensors[name]
    if t.dtype != dtype:
        raise GraphError(f"{op.type} {op.name!r}: {role} {name!r} is {t.dtype}, {dtype} expected")


_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _activation(op: Op) -> str:
    act = op.attrs.get("activation", "NONE")
    if act not in _ACTIVATIONS:
        raise GraphError(f"{op.type} {op.name!r}: fused activation {act!r} is unsupported (supported: {_ACTIVATIONS})")
    return act


def _conv_like(graph, op, values, kind):
    x_name, w_name = op.inputs[0], op.inputs[1]
    b_name = op.inputs[2] if len(op.inputs) > 2 else None
    _expect_dtype(graph, op, x_name, "int8", "input")
    _expect_dtype(graph, op, w_name, "int8", "weight")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    if b_name is not None:
        _expect_dtype(graph, op, b_name, "int32", "bias")
    si, zi = _qparams(graph, x_name, op, "input")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    w_t = graph.tensors[w_name]
    if not w_t.quantized:
        raise GraphError(f"{op.type} {op.name!r}: weight {w_name!r} is not quantized")
    if np.any(w_t.zero_point != 0):
        raise GraphError(f"{op.type} {op.name!r}: weight {w_name!r} must be symmetric (zero point 0)")
    x = _value(graph, values, x_name)
    w = _value(graph, values, w_name)
    b = _value(graph, values, b_name)
    a = op.attrs
    common = dict(
        input_scale=si, input_zero_point=zi, weight_scales=w_t.scale,
        output_scale=so, output_zero_point=zo, activation=_activation(op),
    )
    if kind == "FULLY_CONNECTED":
        return fully_connected(x, w, b, output_shape=graph.tensors[op.outputs[0]].shape, **common)
    window = dict(
        padding=a["padding"], stride=(a["stride_h"], a["stride_w"]),
        dilation=(a.get("dilation_h", 1), a.get("dilation_w", 1)),
    )
    if kind == "CONV_2D":
        return conv_2d(x, w, b, **window, **common)
    return depthwise_conv_2d(x, w, b, depth_multiplier=int(a.get("depth_multiplier", 1)), **window, **common)


def _run_add(graph, op, values):
    for name, role in ((op.inputs[0], "input 1"), (op.inputs[1], "input 2"), (op.outputs[0], "output")):
        _expect_dtype(graph, op, name, "int8", role)
    s1, z1 = _qparams(graph, op.inputs[0], op, "input 1")
    s2, z2 = _qparams(graph, op.inputs[1], op, "input 2")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    return add(
        _value(graph, values, op.inputs[0]), _value(graph, values, op.inputs[1]),
        input1_scale=s1, input1_zero_point=z1, input2_scale=s2, input2_zero_point=z2,
        output_scale=so, output_zero_point=zo, activation=_activation(op),
    )


def _run_mean(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    si, zi = _qparams(graph, op.inputs[0], op, "input")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    return mean(
        _value(graph, values, op.inputs[0]), _value(graph, values, op.inputs[1]),
        keep_dims=bool(op.attrs.get("keep_dims", False)),
        input_scale=si, input_zero_point=zi, output_scale=so, output_zero_point=zo,
    )


def _run_pool(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    a = op.attrs
    kwargs = dict(
        filter_size=(a["filter_h"], a["filter_w"]), stride=(a["stride_h"], a["stride_w"]),
        padding=a["padding"], output_scale=so, output_zero_point=zo, activation=_activation(op),
    )
    fn = average_pool_2d if op.type == "AVERAGE_POOL_2D" else max_pool_2d
    return fn(_value(graph, values, op.inputs[0]), **kwargs)


def _run_softmax(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    si, _ = _qparams(graph, op.inputs[0], op, "input")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    if zo != -128 or np.float32(so) != np.float32(1.0 / 256):
        raise GraphError(f"SOFTMAX {op.name!r}: int8 output must have scale 1/256 and zero point -128 (has {so}, {zo})")
    return softmax(_value(graph, values, op.inputs[0]), input_scale=si, beta=float(op.attrs.get("beta", 1.0)))


def _run_pad(graph, op, values):
    if len(op.inputs) > 2 and op.inputs[2] is not None:
        raise GraphError(f"PAD {op.name!r}: explicit constant values are unsupported")
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _, zo = _qparams(graph, op.outputs[0], op, "output")
    return pad(_value(graph, values, op.inputs[0]), _value(graph, values, op.inputs[1]), output_zero_point=zo)


def _run_reshape(graph, op, values):
    return reshape(_value(graph, values, op.inputs[0]), graph.tensors[op.outputs[0]].shape)


def _run_quantize(graph, op, values):
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    x = _value(graph, values, op.inputs[0])
    src = graph.tensors[op.inputs[0]]
    if src.dtype == "float32":
        return quantize_op(np.asarray(x, dtype=np.float32), output_scale=so, output_zero_point=zo)
    if src.dtype == "int8":
        si, zi = _qparams(graph, op.inputs[0], op, "input")
        return quantize_op(x, output_scale=so, output_zero_point=zo, input_scale=si, input_zero_point=zi)
    raise GraphError(f"QUANTIZE {op.name!r}: input {src.name!r} is {src.dtype}, float32 or int8 expected")


def _run_dequantize(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "float32", "output")
    si, zi = _qparams(graph, op.inputs[0], op, "input")
    return dequantize_op(_value(graph, values, op.inputs[0]), input_scale=si, input_zero_point=zi)


def _run_relu(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    si, zi = _qparams(graph, op.inputs[0], op, "input")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    x = _value(graph, values, op.inputs[0])
    if op.type == "RELU6":
        return relu6(x, input_scale=si, input_zero_point=zi)
    return relu(x, input_scale=si, input_zero_point=zi, output_scale=so, output_zero_point=zo)


def _run_leaky_relu(graph, op, values):
    _expect_dtype(graph, op, op.inputs[0], "int8", "input")
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    si, zi = _qparams(graph, op.inputs[0], op, "input")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    return leaky_relu(_value(graph, values, op.inputs[0]), input_scale=si, input_zero_point=zi, output_scale=so,
                      output_zero_point=zo, alpha=float(op.attrs["alpha"]))


def concatenation_axis(graph: QuantGraph, op: Op) -> int:
    """The op's concatenation axis as a non-negative dimension of its output."""
    rank = len(graph.tensors[op.outputs[0]].shape)
    axis = int(op.attrs["axis"])
    if not -rank <= axis < rank:
        raise GraphError(f"CONCATENATION {op.name!r}: axis {axis} out of range for rank {rank}")
    return axis % rank


def _run_concatenation(graph, op, values):
    if _activation(op) != "NONE":
        raise GraphError(f"CONCATENATION {op.name!r}: fused activation {op.attrs['activation']} is unsupported "
                         "(TFLite Micro requires NONE)")
    out = graph.tensors[op.outputs[0]]
    _expect_dtype(graph, op, op.outputs[0], "int8", "output")
    so, zo = _qparams(graph, op.outputs[0], op, "output")
    for k, name in enumerate(op.inputs):
        _expect_dtype(graph, op, name, "int8", f"input {k}")
        si, zi = _qparams(graph, name, op, f"input {k}")
        if np.float32(si) != np.float32(so) or zi != zo:
            raise GraphError(
                f"CONCATENATION {op.name!r}: input {k} {name!r} is quantized ({si}, {zi}), the output ({so}, {zo}); "
                "TFLite Micro's int8 CONCATENATION requires every input to share the output's scale and zero point"
            )
    axis = concatenation_axis(graph, op)
    xs = [_value(graph, values, name) for name in op.inputs]
    if any(x.ndim != len(out.shape) for x in xs):
        raise GraphError(f"CONCATENATION {op.name!r}: inputs of ranks {[x.ndim for x in xs]}, output rank {len(out.shape)}")
    return concatenation(xs, axis)


_RUNNERS = {
    "CONV_2D": lambda g, o, v: _conv_like(g, o, v, "CONV_2D"),
    "DEPTHWISE_CONV_2D": lambda g, o, v: _conv_like(g, o, v, "DEPTHWISE_CONV_2D"),
    "FULLY_CONNECTED": lambda g, o, v: _conv_like(g, o, v, "FULLY_CONNECTED"),
    "ADD": _run_add,
    "MEAN": _run_mean,
    "AVERAGE_POOL_2D": _run_pool,
    "MAX_POOL_2D": _run_pool,
    "SOFTMAX": _run_softmax,
    "PAD": _run_pad,
    "RESHAPE": _run_reshape,
    "QUANTIZE": _run_quantize,
    "DEQUANTIZE": _run_dequantize,
    "RELU": _run_relu,
    "RELU6": _run_relu,
    "LEAKY_RELU": _run_leaky_relu,
    "CONCATENATION": _run_concatenation,
}


def run_op(graph: QuantGraph, op: Op, values: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Evaluate one op; ``values`` maps tensor names to already computed arrays
    (constants are taken from the graph). Returns the op's outputs, checked against
    the shapes and dtypes the graph declares."""
    runner = _RUNNERS.get(op.type)
    if runner is None:
        raise GraphError(f"op {op.name!r}: {op.type} has no reference kernel (supported: {', '.join(_RUNNERS)})")
    try:
        out = runner(graph, op, values)
    except KeyError as e:  # an attribute the op type needs is missing
        raise GraphError(f"{op.type} {op.name!r}: missing attribute {e}") from None
    t = graph.tensors[op.outputs[0]]
    if tuple(out.shape) != t.shape:
        raise GraphError(f"{op.type} {op.name!r}: computed output shape {tuple(out.shape)} != declared {t.shape}")
    if out.dtype != np.dtype(t.dtype):
        raise GraphError(f"{op.type} {op.name!r}: computed dtype {out.dtype} != declared {t.dtype}")
    return [out]
