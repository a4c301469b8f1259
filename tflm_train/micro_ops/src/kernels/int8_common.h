// Integer arithmetic shared by the inference kernels (src/kernels) and the
// training graph's forward kernels (src/train/kernels), so both give the same
// bytes: ADD's rescaling, MEAN's folded division, AVERAGE_POOL's rounding.
#ifndef TFLM_TRAIN_MICRO_KERNELS_INT8_COMMON_H_
#define TFLM_TRAIN_MICRO_KERNELS_INT8_COMMON_H_

#include <math.h>
#include <stdint.h>

#include "../quant.h"
#include "requant_fast.h"

namespace tt {

// ADD: both inputs rescaled to a common scale 2 * max(s1, s2) with 20 bits of
// headroom, summed, rescaled to the output:
//   a = MBQM((x1 - zp1) << 20, M1), b = MBQM((x2 - zp2) << 20, M2), y = MBQM(a + b, Mout) + zp_out
// with M1 = s1 / (2 max), M2 = s2 / (2 max), Mout = 2 max / (2^20 s_out), from the float32 scales in double.
constexpr int32_t kAddLeftShift = 20;
struct AddRescale {
  int32_t multiplier1, shift1, multiplier2, shift2, multiplier_out, shift_out;
};
// False when a scale is not positive and finite or the output scale is below 2^-20 of the inputs'.
inline bool add_rescale(float s1, float s2, float s_out, AddRescale* r) {
  if (!(s1 > 0.0f) || !(s2 > 0.0f) || !(s_out > 0.0f) || !isfinite(s1) || !isfinite(s2) || !isfinite(s_out))
    return false;
  const double twice_max = 2.0 * static_cast<double>(s1 > s2 ? s1 : s2);
  int shift;
  quantize_multiplier(static_cast<double>(s1) / twice_max, &r->multiplier1, &shift);
  r->shift1 = shift;
  quantize_multiplier(static_cast<double>(s2) / twice_max, &r->multiplier2, &shift);
  r->shift2 = shift;
  quantize_multiplier(twice_max / (static_cast<double>(1 << kAddLeftShift) * static_cast<double>(s_out)),
                      &r->multiplier_out, &shift);
  r->shift_out = shift;
  return r->shift1 <= 0 && r->shift2 <= 0 && r->shift_out <= 0;
}
// The rescaled sum of two centered inputs (x - zp), before the output zero point and clamp.
inline int32_t add_rescaled(const AddRescale& r, int32_t centered1, int32_t centered2) {
  const int32_t a = multiply_by_quantized_multiplier(centered1 * (1 << kAddLeftShift), r.multiplier1, r.shift1);
  const int32_t b = multiply_by_quantized_multiplier(centered2 * (1 << kAddLeftShift), r.multiplier2, r.shift2);
  return multiply_by_quantized_multiplier(a + b, r.multiplier_out, r.shift_out);
}

// ADD over n elements without broadcasting: y[i] = clamp(add_rescaled(x1[i] + off1, x2[i] + off2) +
// out_offset), the one compute core of the inference and training ADD. The rescaled value of
// each of the 256 codes of an input is computed once into a table (the same integers), so an
// element costs one multiplier instead of three. y may be x1 or x2 (element by element).
inline void add_elementwise(const AddRescale& r, int32_t off1, int32_t off2, int32_t out_offset, int32_t act_min,
                            int32_t act_max, const int8_t* x1, const int8_t* x2, int8_t* y, int32_t n) {
  if (n < 256) {  // the tables would cost more than they save
    for (int32_t i = 0; i < n; ++i)
      y[i] = static_cast<int8_t>(clamp_i32(add_rescaled(r, x1[i] + off1, x2[i] + off2) + out_offset, act_min, act_max));
    return;
  }
  int32_t t1[256], t2[256];
  for (int32_t v = -128; v < 128; ++v) {
    t1[v + 128] = multiply_by_quantized_multiplier((v + off1) * (1 << kAddLeftShift), r.multiplier1, r.shift1);
    t2[v + 128] = multiply_by_quantized_multiplier((v + off2) * (1 << kAddLeftShift), r.multiplier2, r.shift2);
  }
  const int32_t* a = t1 + 128;
  const int32_t* b = t2 + 128;
  const int32_t right = -r.shift_out;  // >= 0 (add_rescale)
  if (requant_fast_applies(r.multiplier_out, right, out_offset)) {
    // The output rescale + zero point as one 64-bit multiply-add (requant_fast.h), the same integers.
    const int64_t z0 = requant_z0(right, out_offset);
    const int32_t mult = r.multiplier_out;
    for (int32_t i = 0; i < n; ++i)
      y[i] = static_cast<int8_t>(clamp_i32(requant_apply(z0, mult, 0, right, a[x1[i]] + b[x2[i]]), act_min, act_max));
    return;
  }
  for (int32_t i = 0; i < n; ++i) {
    const int32_t sum = multiply_by_quantized_multiplier(a[x1[i]] + b[x2[i]], r.multiplier_out, r.shift_out);
    y[i] = static_cast<int8_t>(clamp_i32(sum + out_offset, act_min, act_max));
  }
}

// MEAN: y = MBQM(sum - zp_in * n, M') + zp_out with M = s_in / s_out and the
// division by the element count n folded in: k = min(floor(log2 n), 32, 31 + shift),
// multiplier' = (multiplier << k) / n, shift' = shift - k.
inline void mean_rescale(float s_in, float s_out, int64_t count, int32_t* multiplier, int32_t* shift) {
  int s;
  quantize_multiplier(static_cast<double>(s_in) / static_cast<double>(s_out), multiplier, &s);
  if (count > 0) {
    int32_t k = 0;
    while ((int64_t{2} << k) <= count) ++k;  // floor(log2(count))
    if (k > 32) k = 32;
    if (k > 31 + s) k = 31 + s;
    if (k < 0) k = 0;
    *multiplier = static_cast<int32_t>((static_cast<int64_t>(*multiplier) << k) / count);
    s -= k;
  }
  *shift = s;
}

// AVERAGE_POOL_2D: the window sum divided by its tap count, rounded half away from zero.
inline int32_t rounded_average(int32_t sum, int32_t count) {
  return sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
}

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_INT8_COMMON_H_
