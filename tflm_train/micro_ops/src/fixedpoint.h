// Fixed-point transcendental functions of TFLite's int8 softmax, written from
// gemmlowp's documented algorithms. A value with I integer bits is an int32 raw
// r meaning r / 2^(31 - I). Products of values with I and J integer bits have
// I + J integer bits (saturating rounding doubling high multiply); sums are
// plain int32 additions.
#ifndef TFLM_TRAIN_MICRO_FIXEDPOINT_H_
#define TFLM_TRAIN_MICRO_FIXEDPOINT_H_

#include "quant.h"

namespace tt {
namespace fixedpoint {

inline int32_t mul(int32_t a, int32_t b) { return saturating_rounding_doubling_high_mul(a, b); }
inline int32_t add(int32_t a, int32_t b) { return wrapping_add(a, b); }
inline int32_t sub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}

// x * 2^exponent: saturating left shift for exponent > 0, rounding right shift otherwise.
inline int32_t saturating_rounding_multiply_by_pot(int32_t x, int exponent) {
  if (exponent > 0) {
    const int32_t threshold = static_cast<int32_t>((int64_t{1} << (31 - exponent)) - 1);
    if (x > threshold) return kInt32Max;
    if (x < -threshold) return kInt32Min;
    return wrapping_shift_left(x, exponent);
  }
  if (exponent < 0) return rounding_divide_by_pot(x, -exponent);
  return x;
}

// Change a raw's integer bits from `from` to `to`.
inline int32_t rescale(int32_t x, int from, int to) { return saturating_rounding_multiply_by_pot(x, from - to); }

// exp(a) for a in [-1/4, 0), a and result with 0 integer bits: a Taylor
// expansion around -1/8 up to the 4th power.
int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a);

// exp(a) for a <= 0 with `integer_bits` integer bits; result with 0 integer bits.
int32_t exp_on_negative_values(int32_t a, int integer_bits);

// 1 / (1 + a) for a in [0, 1), 0 integer bits in and out: Newton-Raphson.
int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a);

// Reciprocal of a positive x with `x_integer_digits` integer bits, normalized:
// returns 1 / (x / 2^num_bits_over_unit) with 0 integer bits.
int32_t reciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit);

}  // namespace fixedpoint
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_FIXEDPOINT_H_
