// Storage of activation gradients (docs/training_graph.md, "Gradient storage"): float32,
// or IEEE binary16 ("Half"). Kernels compute in float32 and go through the one pair of
// helpers below: widen() on every load (exact), narrow<G>() on every store (binary16:
// round to nearest even, overflow to +-inf, subnormals kept; NaN stays a NaN).
//
// On the Cortex-M4F the FPU converts (VCVTB, FPv4-SP's half-precision extension); it
// rounds as FPSCR.RMode says, round to nearest even out of reset, with FPSCR.AHP = 0
// (IEEE format) and FPSCR.FZ = 0 (subnormals kept), which nothing in the runtime
// changes. GCC emits the same instructions for __fp16 with -mfp16-format=ieee; the asm
// needs no such flag in the firmware or Arduino builds. Elsewhere a bit-exact software
// conversion.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_GRAD_STORAGE_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_GRAD_STORAGE_H_

#include <stdint.h>
#include <string.h>

#include "../train_schema.h"

namespace tt {
namespace train {

// One stored binary16 value (its bits).
struct Half {
  uint16_t bits;
};

#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__thumb2__) && !defined(TT_SOFT_HALF)
inline uint16_t f32_to_f16_bits(float f) {
  float r;
  __asm__("vcvtb.f16.f32 %0, %1" : "=t"(r) : "t"(f));  // writes the low half of r only
  uint32_t u;
  memcpy(&u, &r, 4);
  return static_cast<uint16_t>(u & 0xffffu);
}

inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t u = h;
  float x, r;
  memcpy(&x, &u, 4);
  __asm__("vcvtb.f32.f16 %0, %1" : "=t"(r) : "t"(x));
  return r;
}
#else
inline uint16_t f32_to_f16_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u)  // inf, or NaN: quiet, the top payload bits kept
    return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u | ((a >> 13) & 0x3ffu) : 0x7c00u));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: rounds to inf
  uint32_t r, rem, halfway;
  if (a >= 0x38800000u) {  // >= 2^-14: a normal half; rebias the exponent, drop 13 bits
    const uint32_t v = a - 0x38000000u;
    r = v >> 13;
    rem = v & 0x1fffu;
    halfway = 0x1000u;
  } else {  // a subnormal half (or 0): units of 2^-24
    if (a < 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25 (the tie rounds to even 0)
    const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;  // value m * 2^(e - 150)
    const uint32_t shift = 126u - e;                              // 14..24
    r = m >> shift;
    rem = m & ((1u << shift) - 1u);
    halfway = 1u << (shift - 1u);
  }
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;  // a carry moves into the exponent
  return static_cast<uint16_t>(sign | r);
}

inline float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t x;
  if (e == 0x1fu) {
    x = sign | 0x7f800000u | (m << 13);
  } else if (e != 0) {
    x = sign | ((e + 112u) << 23) | (m << 13);
  } else if (m == 0) {
    x = sign;
  } else {  // subnormal: m * 2^-24, normalized
    uint32_t s = 0;
    uint32_t mm = m;
    while (!(mm & 0x400u)) {
      mm <<= 1;
      ++s;
    }
    x = sign | ((113u - s) << 23) | ((mm & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &x, 4);
  return f;
}
#endif

inline float widen(float v) { return v; }
inline float widen(Half v) { return f16_bits_to_f32(v.bits); }

template <typename G>
inline G narrow(float v);
template <>
inline float narrow<float>(float v) {
  return v;
}
template <>
inline Half narrow<Half>(float v) {
  return Half{f32_to_f16_bits(v)};
}

// The training-file dtype of a storage type.
template <typename G>
struct GradDType;
template <>
struct GradDType<float> {
  static constexpr uint8_t value = tfmt::kFloat32;
};
template <>
struct GradDType<Half> {
  static constexpr uint8_t value = tfmt::kFloat16;
};

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_GRAD_STORAGE_H_
