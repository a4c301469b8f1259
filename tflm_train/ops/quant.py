"""TFLite fixed-point arithmetic, vectorized over NumPy int64 arrays.

These are the integer building blocks of TFLite Micro's reference int8 kernels,
written from the documented semantics (TFLite quantization spec, gemmlowp's
fixed-point notes) and checked bit for bit against the tflite-micro interpreter.

Conventions:
- int32 quantities are carried in int64 arrays; where C++ would wrap an int32
  (a left shift of an already large value, an int32 sum) we wrap explicitly with
  ``wrap_int32`` so the result equals what the device computes.
- a "multiplier" is a Q0.31 int32 in [2^30, 2^31) (or 0), a "shift" is the
  power of two exponent as TFLite stores it: positive = left shift.
- scales are float32 in a .tflite file; ``f32`` rounds a scale the way the file
  stores it, and multipliers are computed from those float32 values in double,
  as TFLite Micro's Prepare functions do.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from ..graph import GraphError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

DTYPE_RANGES = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "int32": (INT32_MIN, INT32_MAX),
}

ArrayLike = Union[int, float, np.ndarray]


# --------------------------------------------------------------------------- basics
def f32(value) -> np.ndarray:
    """A scale as the .tflite file stores it (float32), widened to float64 for the multiplier math."""
    return np.asarray(value, dtype=np.float32).astype(np.float64)


def wrap_int32(x: ArrayLike) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (what an int32 overflow does in practice)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def round_half_away(x: ArrayLike) -> np.ndarray:
    """C's std::round (TfLiteRound): ties away from zero, unlike numpy's round-half-to-even.

    Exact in the input's own precision: ``x - trunc(x)`` is always representable, whereas
    ``floor(|x| + 0.5)`` would round 0.49999997f up to 1.
    """
    x = np.asarray(x)
    whole = np.trunc(x)
    return whole + np.where(np.abs(x - whole) >= 0.5, np.sign(x), 0).astype(x.dtype)


def _trunc_div(a: np.ndarray, b) -> np.ndarray:
    """C integer division (rounds toward zero); numpy's // rounds toward -inf."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (np.asarray(b) < 0), -q, q)


def count_leading_zeros_u32(x: ArrayLike) -> np.ndarray:
    """Leading zero bits of a uint32 (32 for zero)."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    n = np.full(x.shape, 32, dtype=np.int64)
    nz = x > 0
    # floor(log2) via frexp is exact for integers < 2^53
    _, e = np.frexp(np.where(nz, x, 1).astype(np.float64))
    n[nz] = 32 - e[nz]
    return n


# --------------------------------------------------------------------------- multipliers
def quantize_multiplier(real: ArrayLike):
    """Real multiplier -> (Q0.31 multiplier, power-of-two shift), TFLite's QuantizeMultiplier.

    ``real = multiplier * 2^(shift - 31)``: the frexp mantissa is rounded half away from
    zero to 31 bits; a mantissa that rounds up to 2^31 becomes 2^30 with the shift
    incremented; values below about 2^-31 flush to (0, 0). Scalars give Python ints,
    arrays (per-channel scales) give int64 arrays.
    """
    r = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise GraphError(f"quantize_multiplier: non-finite real multiplier {real!r}")
    mantissa, shift = np.frexp(r)
    q = round_half_away(mantissa * float(1 << 31)).astype(np.int64)
    shift = shift.astype(np.int64)
    carry = q == (1 << 31)
    q = np.where(carry, q // 2, q)
    shift = np.where(carry, shift + 1, shift)
    tiny = shift < -31
    q = np.where(tiny, 0, q)
    shift = np.where(tiny | (r == 0), 0, shift)
    if r.ndim == 0:
        return int(q), int(shift)
    return q, shift


def quantize_multiplier_smaller_than_one_exp(real: ArrayLike):
    """As quantize_multiplier for a real multiplier < 1: returns (multiplier, left_shift <= 0)."""
    q, shift = quantize_multiplier(real)
    if np.any(np.asarray(shift) > 0):
        raise GraphError(f"multiplier {real!r} must be smaller than one")
    return q, shift


def quantize_multiplier_greater_than_one(real: ArrayLike):
    """As quantize_multiplier for a real multiplier > 1: returns (multiplier, left_shift >= 0)."""
    q, shift = quantize_multiplier(real)
    if np.any(np.asarray(shift) < 0):
        raise GraphError(f"multiplier {real!r} must be greater than one")
    return q, shift


# --------------------------------------------------------------------------- fixed-point primitives
def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """High 32 bits of 2*a*b, rounded to nearest (ties away from zero); INT32_MIN^2 saturates."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b  # |a*b| <= 2^62: exact in int64
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    # C's truncating division by 2^31 as a shift: negative values get 2^31 - 1 added first
    high = (nudged + ((nudged >> 63) & ((1 << 31) - 1))) >> 31
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties away from zero (gemmlowp RoundingDivideByPOT)."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    if np.any((exponent < 0) | (exponent > 31)):
        raise GraphError(f"rounding_divide_by_pot: exponent out of [0, 31]: {exponent!r}")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x: ArrayLike, exponent: int) -> np.ndarray:
    """x * 2^exponent: a saturating left shift (exponent > 0) or a rounding right shift."""
    x = np.asarray(x, dtype=np.int64)
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    hi, lo = INT32_MAX >> exponent, INT32_MIN >> exponent
    return np.where(x > hi, INT32_MAX, np.where(x < lo, INT32_MIN, x << exponent))


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """x * multiplier * 2^(shift-31), TFLite Micro's default double-rounding form.

    A positive shift is applied to x before the high multiply (int32 wrap as in C),
    a negative one as a rounding right shift after it. ``multiplier``/``shift`` may be
    per-channel arrays broadcasting against x (channels last).
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: ArrayLike, multiplier: ArrayLike, left_shift: ArrayLike
) -> np.ndarray:
    """x * multiplier * 2^(left_shift-31) for left_shift <= 0 (used by ADD)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -np.asarray(left_shift))


def multiply_by_quantized_multiplier_greater_than_one(
    x: ArrayLike, multiplier: ArrayLike, left_shift: ArrayLike
) -> np.ndarray:
    """x * 2^left_shift (int32 wrap) then the rounding high multiply (used by SOFTMAX)."""
    x = np.asarray(x, dtype=np.int64)
    return saturating_rounding_doubling_high_mul(wrap_int32(x << np.asarray(left_shift, dtype=np.int64)), multiplier)


# --------------------------------------------------------------------------- fixed-point functions (softmax)
# Q-format numbers as in gemmlowp: a raw int32 with k integer bits means raw / 2^(31 - k).
# The constants are the algorithm's published raw values (each is round(c * 2^31) of the
# named real c, except where gemmlowp rounded the last bit differently); they are data.
_Q31_EXP_MINUS_ONE_EIGHTH = 1895147668  # exp(-1/8)
_Q31_ONE_THIRD = 715827883  # 1/3
# exp(-2^e) for e = -2 .. 4: multiplied in for each set bit of the input's integer part
_Q31_EXP_MINUS_POW2 = {
    -2: 1672461947,
    -1: 1302514674,
    0: 790015084,
    1: 290630308,
    2: 39332535,
    3: 720401,
    4: 242,
}
_Q29_48_OVER_17 = 1515870810  # 48/17 with 2 integer bits
_Q29_MINUS_32_OVER_17 = -1010580540  # -32/17 with 2 integer bits


def rounding_half_sum(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """(a + b) / 2 rounded half away from zero, without overflow."""
    s = np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64)
    return _trunc_div(s + np.where(s >= 0, 1, -1), 2)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: ArrayLike) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: 4th-order Taylor expansion around -1/8."""
    x = np.asarray(a, dtype=np.int64) + (1 << 28)  # x = a + 1/8
    srdhm = saturating_rounding_doubling_high_mul
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(srdhm(x4_over_4 + x3, _Q31_ONE_THIRD) + x2, 1)  # x^4/24 + x^3/6 + x^2/2
    return _Q31_EXP_MINUS_ONE_EIGHTH + srdhm(_Q31_EXP_MINUS_ONE_EIGHTH, x + poly)


def exp_on_negative_values(a: ArrayLike, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given with ``integer_bits`` integer bits; result in Q0.31.

    a = (a mod 1/4) - 1/4 - n/4: the first part by the polynomial, then one constant
    factor exp(-2^e) per set bit of the remainder; exp(0) is the largest Q0.31 value.
    """
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_multiply_by_pot(a_mod_quarter_minus_one_quarter, integer_bits)
    )
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, factor in _Q31_EXP_MINUS_POW2.items():
        if integer_bits > exponent:
            bit = np.int64(1) << (fractional_bits + exponent)
            result = np.where(remainder & bit, saturating_rounding_doubling_high_mul(result, factor), result)
    if integer_bits > 5:  # below -32, exp is zero in Q0.31
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a: ArrayLike) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1) in Q0.31, by three Newton-Raphson steps in Q2.29."""
    srdhm = saturating_rounding_doubling_high_mul
    half_denominator = rounding_half_sum(a, INT32_MAX)  # (1 + a) / 2, Q0.31
    x = _Q29_48_OVER_17 + srdhm(half_denominator, _Q29_MINUS_32_OVER_17)
    one_q29 = 1 << 29
    for _ in range(3):
        one_minus_half_denominator_times_x = one_q29 - srdhm(half_denominator, x)
        x = x + saturating_rounding_multiply_by_pot(srdhm(x, one_minus_half_denominator_times_x), 2)
    return saturating_rounding_multiply_by_pot(x, 1)  # x/2 from Q2.29 read as Q1.30, rescaled to Q0.31


def reciprocal_with_headroom(x: ArrayLike, x_integer_bits: int):
    """1/x for a positive fixed-point x with ``x_integer_bits`` integer bits (TFLite's GetReciprocal).

    Returns (reciprocal of x scaled into [1/2, 1) as Q0.31, bits_over_unit): the true
    reciprocal is reciprocal * 2^-bits_over_unit.
    """
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = count_leading_zeros_u32(x)
    bits_over_unit = x_integer_bits - headroom_plus_one
    shifted_minus_one = ((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(shifted_minus_one), bits_over_unit


# --------------------------------------------------------------------------- activation range
def activation_range(activation: str, scale: float, zero_point: int, dtype: str = "int8") -> Tuple[int, int]:
    """Output clamp of a fused activation (TFLite's CalculateActivationRangeQuantized).

    The activation bounds are quantized with float32 division and round half away from zero.
    """
    if dtype not in DTYPE_RANGES:
        raise GraphError(f"activation_range: unsupported dtype {dtype!r}")
    qmin, qmax = DTYPE_RANGES[dtype]
    s = np.float32(scale)

    def q(real):
        return int(zero_point) + int(round_half_away(np.float32(real) / s))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise GraphError(f"unsupported fused activation {activation!r}")


# --------------------------------------------------------------------------- quantize / dequantize
def quantize(x: ArrayLike, scale, zero_point, dtype: str = "int8") -> np.ndarray:
    """float32 -> integer, TFLite Micro's AffineQuantize.

    ``round(x / scale) + zero_point`` with the division in float32 and ties away from
    zero, clamped to the dtype. ``scale``/``zero_point`` broadcast (per-channel allowed).
    Values whose quotient exceeds the int32 range saturate here; in C that cast is undefined.
    """
    if dtype not in DTYPE_RANGES:
        raise GraphError(f"quantize: unsupported dtype {dtype!r}")
    x = np.asarray(x, dtype=np.float32)
    if np.any(np.isnan(x)):
        raise GraphError("quantize: input contains NaN")
    qmin, qmax = DTYPE_RANGES[dtype]
    with np.errstate(over="ignore", divide="ignore"):
        r = round_half_away(x / np.asarray(scale, dtype=np.float32))
    r = np.clip(r, float(INT32_MIN), float(INT32_MAX)).astype(np.int64) + np.asarray(zero_point, dtype=np.int64)
    return np.clip(r, qmin, qmax).astype(dtype)


def dequantize(q: ArrayLike, scale, zero_point) -> np.ndarray:
    """integer -> float32: ``scale * (q - zero_point)``, rounded once to float32."""
    q = np.asarray(q, dtype=np.int64)
    return (f32(scale) * (q - np.asarray(zero_point, dtype=np.int64))).astype(np.float32)
