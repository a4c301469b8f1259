"""Straight-through rounding and clamping, and TFLite's fixed-point requantization in keras.ops.

Tensors between emulated layers carry the int8 *values* ``q`` (as float32), exactly as the
int8 graph stores them; the real value is ``s * (q - zp)``. Each requantization produces
its forward *value* with TFLite's integer arithmetic (the same multiplier, shift and
double rounding as ``tflm_train.ops.quant``, here as int64 tensor ops), so the emulated
forward reproduces the reference bit for bit wherever the float32 accumulator is exact;
and its *gradient* is that of the real function ``y / s_y`` under DESIGN.md's
straight-through convention: rounding passes the gradient unchanged, the output clamp
passes it only where the output was not clamped.

"Not clamped" is decided from the clamped output alone (``lo < q < hi``), because that is
all an on-device backward has (it saves the int8 output): an output sitting exactly at a
clamp bound gets no gradient, as ReLU gives none at 0.
"""
from __future__ import annotations

import numpy as np
from keras import ops

from ..ops import quant

INT8_MIN, INT8_MAX = -128, 127
#: int8 weights are symmetric: -128 is never used (TFLite quantization spec).
WEIGHT_MIN, WEIGHT_MAX = -127, 127


# --------------------------------------------------------------------------- straight-through helpers
def round_half_away(x):
    """Round to nearest, ties away from zero (std::round), exact in x's own precision."""
    whole = ops.sign(x) * ops.floor(ops.abs(x))
    frac = x - whole  # exact
    return whole + ops.where(ops.abs(frac) >= 0.5, ops.sign(x), ops.zeros_like(x))


def with_gradient_of(value, y, passes=None):
    """A tensor whose forward value is ``value`` and whose gradient is that of ``y``
    (times the 0/1 ``passes`` mask). ``value`` must not need a gradient of its own."""
    delta = y - ops.stop_gradient(y)  # exactly zero, carries dy
    if passes is not None:
        delta = delta * passes
    return ops.stop_gradient(value) + ops.cast(delta, value.dtype)


def round_ste(x):
    """``round_half_away(x)`` forward, identity gradient."""
    return with_gradient_of(round_half_away(ops.stop_gradient(x)), x)


def clamp_mask(q, lo, hi):
    """1 where the clamped output ``q`` lies strictly inside (lo, hi), else 0."""
    return ops.cast(ops.logical_and(q > lo, q < hi), "float32")


def clamp_ste(y, lo, hi):
    """``clip(y, lo, hi)`` forward; gradient 1 where ``lo < clip(y) < hi``, else 0.

    ``lo``/``hi`` may be None (no bound on that side)."""
    lo_v = -np.inf if lo is None else float(lo)
    hi_v = np.inf if hi is None else float(hi)
    clamped = ops.clip(ops.stop_gradient(y), lo_v, hi_v)
    return with_gradient_of(clamped, y, clamp_mask(clamped, lo_v, hi_v))


# --------------------------------------------------------------------------- fixed point (int64 tensors)
# gemmlowp's primitives rewritten as floors, which need fewer tensor ops (each is exact):
# - SaturatingRoundingDoublingHighMul(a, m) for a positive multiplier m: trunc((a m + nudge) / 2^31)
#   with nudge = 2^30 (a m >= 0) or 1 - 2^30 (a m < 0) equals floor((a m + 2^30) / 2^31).
#   (a m = -k: -floor((k - 1 + 2^30) / 2^31) = floor((2^30 - k) / 2^31).) The saturating case
#   a = m = INT32_MIN cannot occur: m > 0.
# - RoundingDivideByPOT(x, e), ties away from zero, equals sign(x) * floor((|x| + 2^(e-1)) / 2^e)
#   for e >= 1, and x for e = 0.
_I64 = "int64"


def _i64(values):
    return ops.convert_to_tensor(np.asarray(values, dtype=np.int64))


def srdhm(a, multiplier):
    """SaturatingRoundingDoublingHighMul(a, multiplier) for a positive Q0.31 multiplier."""
    return ops.right_shift(a * multiplier + (1 << 30), _i64(31))


def rounding_divide_by_pot(x, exponent):
    """x / 2^exponent rounded half away from zero (gemmlowp RoundingDivideByPOT), exponent >= 0
    (a numpy array, broadcast channels-last): ``sign(x) * ((|x| + 2^(e-1)) >> e)``."""
    e = np.asarray(exponent, dtype=np.int64)
    if np.all(e == 0):
        return x
    half = np.where(e > 0, np.left_shift(np.int64(1), np.maximum(e - 1, 0)), 0)
    return ops.sign(x) * ops.right_shift(ops.abs(x) + _i64(half), _i64(e))


def wrap_int32(x):
    """Two's-complement wrap of int64 values to the int32 range (a C int32 overflow)."""
    return ops.bitwise_and(x + (1 << 31), _i64(0xFFFFFFFF)) - (1 << 31)


def multiply_by_quantized_multiplier(x, multiplier: np.ndarray, shift: np.ndarray):
    """TFLite Micro's double-rounding MultiplyByQuantizedMultiplier on an int64 tensor.

    ``multiplier``/``shift`` are (per-channel, channels-last) numpy arrays from
    ``tflm_train.ops.quant.quantize_multiplier``.
    """
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    if np.any(left > 0):
        x = wrap_int32(ops.left_shift(x, _i64(left)))
    return rounding_divide_by_pot(srdhm(x, _i64(multiplier)), right)


def multiplier_of(real) -> tuple:
    """(Q0.31 multiplier, shift) arrays of a real multiplier, TFLite's QuantizeMultiplier."""
    m, s = quant.quantize_multiplier(np.atleast_1d(np.asarray(real, dtype=np.float64)))
    return np.asarray(m, dtype=np.int64), np.asarray(s, dtype=np.int64)


def float_multiplier(multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The real number a (multiplier, shift) pair represents: ``m * 2^(shift - 31)``."""
    return np.asarray(multiplier, np.float64) * np.exp2(np.asarray(shift, np.float64) - 31)


def to_int64(x):
    """An integer-valued float tensor as int64 (exact: the cast truncates nothing)."""
    return ops.cast(ops.stop_gradient(x), _I64)


def requantize_acc(acc, multiplier, shift, zero_point, lo, hi, acc_int=None):
    """int8 output values from an integer-valued float accumulator.

    Value: ``clamp(MBQM(acc_int, multiplier, shift) + zp, lo, hi)`` exactly as TFLite Micro
    (``acc_int``: the int64 accumulator, by default ``acc`` converted). Gradient w.r.t.
    ``acc``: ``M`` (the real multiplier) where the output is strictly inside (lo, hi), else 0
    -- computed from the saved output in the backward pass, so inference pays nothing for it.
    """
    if acc_int is None:
        acc_int = to_int64(acc)
    q = multiply_by_quantized_multiplier(acc_int, multiplier, shift) + int(zero_point)
    q = ops.cast(ops.clip(q, int(lo), int(hi)), "float32")
    m_real = ops.convert_to_tensor(float_multiplier(multiplier, shift).astype(np.float32))
    lo_f, hi_f = float(lo), float(hi)

    @ops.custom_gradient
    def straight_through(a):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return upstream * m_real * clamp_mask(q, lo_f, hi_f)

        return q, grad

    return straight_through(acc)


def activation_range(activation, scale, zero_point):
    """Integer output clamp of a fused activation (TFLite's rule, from the reference)."""
    return quant.activation_range(activation, scale, zero_point)
