// Integer arithmetic of TFLite's int8 kernels, written from the TFLite
// quantization spec and gemmlowp's documented fixed-point semantics:
// a real multiplier M is stored as a Q0.31 int32 `multiplier` in [2^30, 2^31)
// and a power-of-two `shift` (positive = left), M = multiplier * 2^(shift - 31).
// Applying it rounds twice (the high multiply, then the rounding right shift),
// the "double rounding" form TFLite Micro uses by default.
#ifndef TFLM_TRAIN_MICRO_QUANT_H_
#define TFLM_TRAIN_MICRO_QUANT_H_

#include <stdint.h>

namespace tt {

constexpr int32_t kInt32Min = -2147483647 - 1;
constexpr int32_t kInt32Max = 2147483647;

// Two's-complement wrap, as the hardware does (avoids signed-overflow UB).
inline int32_t wrapping_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t wrapping_shift_left(int32_t x, int shift) {
  return static_cast<int32_t>(static_cast<uint32_t>(x) << shift);
}

// High 32 bits of 2*a*b, rounded to nearest (ties away from zero); the one
// overflowing case, INT32_MIN * INT32_MIN, saturates.
inline int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == kInt32Min) return kInt32Max;
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  return static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));  // C division: toward zero
}

// x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 31].
inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// x * M with M = multiplier * 2^(shift-31); shift in [-31, 31].
inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(wrapping_shift_left(x, left), multiplier),
                                right);
}

inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Real multiplier -> (multiplier, shift): the frexp mantissa rounded half away
// from zero to 31 bits; a mantissa rounding up to 2^31 becomes 2^30 with the
// exponent incremented; |real| below ~2^-31 flushes to (0, 0).
void quantize_multiplier(double real, int32_t* multiplier, int* shift);

// quantize_multiplier(double(a) * double(b) / double(c)) (TFLite Micro's conv rescale of
// float32 scales, product and quotient in double) in integer arithmetic, for a, b, c positive
// and finite; false otherwise (nothing written). The Cortex-M4 has no double-precision FPU.
bool quantize_scale_ratio(float a, float b, float c, int32_t* multiplier, int* shift);

// Output clamp [lo, hi] of a fused activation on a quantized output
// (TFLite's CalculateActivationRangeQuantized): the bounds 0, 6, -1, 1 are
// quantized with float division and round half away from zero. Returns false
// for activations other than NONE/RELU/RELU6/RELU_N1_TO_1.
bool activation_range(uint8_t activation, float scale, int32_t zero_point, int32_t qmin, int32_t qmax, int32_t* lo,
                      int32_t* hi);

// round(x) half away from zero, clamped into int32 range (C's lround without UB).
int32_t round_to_int32(double x);
int32_t round_to_int32_f(float x);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_QUANT_H_
