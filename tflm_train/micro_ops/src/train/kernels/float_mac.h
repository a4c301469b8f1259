// acc + a * b with the product rounded to float before the addition (two roundings, as
// written in C with -ffp-contract=off). On the Cortex-M4 FPU this is one VMLA.F32, which
// the ARM architecture defines as FPAdd(acc, FPMul(a, b)): the same two roundings, not a
// fused multiply-add. GCC does not emit VMLA under -ffp-contract=off, hence the asm.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_

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

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_FLOAT_MAC_H_
