// multiply_by_quantized_multiplier(a, M, shift) + out_offset (quant.h) as one 64-bit
// multiply-accumulate and one shift, the same integers, for the optimized conv cores
// (conv_core_optimized.cc) and ADD's output stage (int8_common.h).
//
// With e = right shift >= 1 and the reference's two roundings
//   h = saturating_rounding_doubling_high_mul(a, M) = floor((a*M + 2^30) / 2^31)
//       (every product but INT32_MIN * INT32_MIN; the nudge 1 - 2^30 of negative
//       products and C's truncating division give exactly this floor), and
//   r = rounding_divide_by_pot(h, e) = floor((h + 2^(e-1) - [h < 0]) / 2^e),
// nested floor divisions by powers of two compose, so
//   r + out_offset = floor((a*M + 2^30 + 2^(30+e) - [h<0] 2^31 + out_offset 2^(31+e)) / 2^(31+e)).
// For M >= 0, [h < 0] may be replaced by [a < 0]: they differ only when a < 0 and
// a*M + 2^30 >= 0, and then h = 0, which rounds to 0 either way. The constant part is z0
// (requant_z0), the sum one SMLAL, the division the high word shifted by e - 1 (|high word|
// < 2^31 for e <= 23 and an int8 zero point, which requant_fast_applies requires).
// With e = 0 (a left shift or none) no rounding remains: the low 32 bits of
// floor((a*M + 2^30 + out_offset 2^31) / 2^31) are the reference's wrapping h + out_offset.
#ifndef TFLM_TRAIN_MICRO_KERNELS_REQUANT_FAST_H_
#define TFLM_TRAIN_MICRO_KERNELS_REQUANT_FAST_H_

#include <stdint.h>

#include "../quant.h"

namespace tt {

// Whether the forms below equal the reference for multiplier M, right shift `right` (0 with
// a left shift) and out_offset: M >= 0 (INT32_MIN is the saturating case), and for right >= 1
// right <= 23 and an int8 out_offset (else the high word could overflow).
inline bool requant_fast_applies(int32_t multiplier, int32_t right, int32_t out_offset) {
  return multiplier >= 0 && (right == 0 || (right > 0 && right <= 23 && -128 <= out_offset && out_offset <= 127));
}

// The constant part z0 of the sum above (requant_fast_applies holds).
inline int64_t requant_z0(int32_t right, int32_t out_offset) {
  int64_t z0 = (int64_t{1} << 30) + static_cast<int64_t>(out_offset) * (int64_t{1} << (31 + right));
  if (right > 0) z0 += int64_t{1} << (30 + right);
  return z0;
}

#if defined(__ARM_FEATURE_DSP) && !defined(TT_NO_ACLE)
// High word of z0 - [a < 0] 2^31 + a * mult: the sign term from a's sign bit by ADDS/ADC,
// the product by SMLAL.
inline int32_t requant_high(int64_t z0, int32_t a, int32_t mult) {
  const uint32_t zl = static_cast<uint32_t>(z0);
  const int32_t zh = static_cast<int32_t>(static_cast<uint64_t>(z0) >> 32);
  const uint32_t sign = static_cast<uint32_t>(a) & 0x80000000u;
  uint32_t lo;
  int32_t hi;
  __asm__("adds %[lo], %[zl], %[sign]\n\t"
          "adc %[hi], %[zh], %[a], asr #31\n\t"
          "smlal %[lo], %[hi], %[a], %[m]"
          : [lo] "=&r"(lo), [hi] "=&r"(hi)
          : [zl] "r"(zl), [zh] "r"(zh), [sign] "r"(sign), [a] "r"(a), [m] "r"(mult)
          : "cc");
  return hi;
}
#else
inline int32_t requant_high(int64_t z0, int32_t a, int32_t mult) {
  const int64_t z = z0 + static_cast<int64_t>(a) * mult - (static_cast<int64_t>(a < 0) << 31);
  return static_cast<int32_t>(static_cast<uint64_t>(z) >> 32);
}
#endif

// multiply_by_quantized_multiplier(a, mult, left - right) + out_offset (wrapping as the
// reference's int32 sum when right == 0), z0 = requant_z0(right, out_offset).
inline int32_t requant_apply(int64_t z0, int32_t mult, int32_t left, int32_t right, int32_t a) {
  if (right > 0) return requant_high(z0, a, mult) >> (right - 1);
  const int64_t z = z0 + static_cast<int64_t>(wrapping_shift_left(a, left)) * mult;
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(z) >> 31));
}

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_REQUANT_FAST_H_
