// acc + a * b with the product rounded to float before the addition (two roundings, as
// written in C with -ffp-contract=off). On the Cortex-M4 FPU this is one VMLA.F32, which
// the ARM architecture defines as FPAdd(acc, FPMul(a, b)): the same two roundings, not a
// fused multiply-add. GCC does not emit VMLA under -ffp-contract=off, hence the asm.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_

#include <stdint.h>

#include "grad_storage.h"

namespace tt {
namespace train {

inline float mul_add(float acc, float a, float b) {
#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__thumb2__) && !defined(TT_NO_VMLA)
  __asm__("vmla.f32 %0, %1, %2" : "+t"(acc) : "t"(a), "t"(b));
  return acc;
#else
  return acc + a * b;
#endif
}

// Sixteen accumulators, four rows by four columns (e.g. pixels by channels), each updated
// with the specified roundings: a[r][c] = a[r][c] + x[r] * v[c] (x the first operand).
struct Block4x4 {
  float a[16];
  void mac(float x0, float x1, float x2, float x3, float v0, float v1, float v2, float v3) {
    const float x[4] = {x0, x1, x2, x3}, v[4] = {v0, v1, v2, v3};
#pragma GCC unroll 16
    for (int32_t k = 0; k < 16; ++k) a[k] = mul_add(a[k], x[k >> 2], v[k & 3]);
  }
  // Row r's four columns at d + r * stride, in d's storage type (float, or Half: rounded).
  template <typename T>
  void store(T* d, int32_t stride) const {
#pragma GCC unroll 16
    for (int32_t k = 0; k < 16; ++k) d[(k >> 2) * stride + (k & 3)] = narrow<T>(a[k]);
  }
  // Rows 0 .. rows - 1 only.
  template <typename T>
  void store_rows(T* d, int32_t stride, int32_t rows) const {
    for (int32_t k = 0; k < 4 * rows; ++k) d[(k >> 2) * stride + (k & 3)] = narrow<T>(a[k]);
  }
  void load(const float* d, int32_t stride) {
#pragma GCC unroll 16
    for (int32_t k = 0; k < 16; ++k) a[k] = d[(k >> 2) * stride + (k & 3)];
  }
};

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_
