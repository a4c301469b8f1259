#include "quant.h"

#include <math.h>

#include "schema.h"

namespace tt {

void quantize_multiplier(double real, int32_t* multiplier, int* shift) {
  if (real == 0.0 || !isfinite(real)) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  int exponent = 0;
  const double mantissa = frexp(real, &exponent);  // |mantissa| in [0.5, 1)
  int64_t q = static_cast<int64_t>(round(mantissa * 2147483648.0));
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
