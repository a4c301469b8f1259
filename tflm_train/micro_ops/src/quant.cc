#include "quant.h"

#include <math.h>
#include <string.h>

#include "schema.h"

namespace tt {

namespace {

// The multiplier and shift of a real = (significand / 2^53) * 2^exponent, the significand's
// bit 52 set (frexp's form): round(mantissa * 2^31) half away from zero is the significand
// rounded to its top 31 bits; a mantissa rounding up to 2^31 becomes 2^30 with the exponent
// incremented; below 2^-31 flushes to (0, 0).
void round_to_multiplier(uint64_t significand, bool negative, int exponent, int32_t* multiplier, int* shift) {
  int64_t q = static_cast<int64_t>((significand + (uint64_t{1} << 21)) >> 22);
  if (negative) q = -q;
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

}  // namespace

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
  round_to_multiplier(significand, (bits >> 63) != 0, exponent, multiplier, shift);
}

namespace {

// A positive finite float as m * 2^e with m in [2^23, 2^24) (subnormals normalized).
void float_parts(float a, uint64_t* m, int* e) {
  uint32_t bits;
  memcpy(&bits, &a, sizeof bits);
  const int biased = static_cast<int>((bits >> 23) & 0xFF);
  uint32_t frac = bits & 0x7FFFFFu;
  if (biased == 0) {
    int ex = -149;
    while (!(frac & 0x800000u)) {
      frac <<= 1;
      --ex;
    }
    *m = frac;
    *e = ex;
  } else {
    *m = frac | 0x800000u;
    *e = biased - 150;
  }
}

bool positive_finite(float a) { return a > 0.0f && a <= 3.4028234663852886e38f; }

}  // namespace

// The double product of two floats is exact (48-bit significand product); the quotient is
// p * 2^32 / mc in 64-bit integers (55 to 57 bits) plus a sticky bit, rounded half to even to
// 53 bits as the double division rounds; then quantize_multiplier's rounding to 31 bits.
// Equal to the double form on 3 * 10^7 triples (subnormal and extreme exponents included).
bool quantize_scale_ratio(float a, float b, float c, int32_t* multiplier, int* shift) {
  if (!positive_finite(a) || !positive_finite(b) || !positive_finite(c)) return false;
  uint64_t ma, mb, mc;
  int ea, eb, ec;
  float_parts(a, &ma, &ea);
  float_parts(b, &mb, &eb);
  float_parts(c, &mc, &ec);
  const uint64_t p = ma * mb;
  // floor(p * 2^32 / mc), in [2^54, 2^57), and the remainder r2, by long division in 32-bit
  // words (the Cortex-M4 divides 32 by 32 bits in one instruction; a 64-bit division is a
  // library call): the top 24 bits of p, then 8 bits at a time (p's low 24, then 32 zeros),
  // the partial remainder staying below mc < 2^24 so every dividend fits 32 bits.
  const uint32_t divisor = static_cast<uint32_t>(mc), low = static_cast<uint32_t>(p) & 0xFFFFFFu;
  uint32_t part = static_cast<uint32_t>(p >> 24);
  const uint32_t top = part / divisor;
  part -= top * divisor;
  uint32_t mid = 0, tail = 0;  // quotient digits of p's low 24 bits, then of the 32 zeros
  auto digit = [&](uint32_t next_byte) {
    const uint32_t t = (part << 8) | next_byte;
    const uint32_t dg = t / divisor;
    part = t - dg * divisor;
    return dg;
  };
  mid = digit(low >> 16);
  mid = (mid << 8) | digit((low >> 8) & 0xFFu);
  mid = (mid << 8) | digit(low & 0xFFu);
  for (int k = 0; k < 4; ++k) tail = (tail << 8) | digit(0);
  const uint64_t q = (static_cast<uint64_t>(top) << 56) | (static_cast<uint64_t>(mid) << 32) | tail;
  const uint32_t r2 = part;
  // bits below the double's 53: q has 32 + (32 - clz(q >> 32)) bits (q >> 32 is in [2^22, 2^25))
  int d = 32 - __builtin_clz(static_cast<uint32_t>(q >> 32)) - 21;
  uint64_t s = q >> d;
  const uint64_t rem = q & ((uint64_t{1} << d) - 1), half = uint64_t{1} << (d - 1);
  if (rem > half || (rem == half && (r2 != 0 || (s & 1)))) ++s;
  if (s >> 53) {
    s >>= 1;
    ++d;
  }
  // real = s * 2^(d - 32 + ea + eb - ec) with s in [2^52, 2^53): frexp's exponent is that + 53.
  int exponent = d - 32 + ea + eb - ec + 53;
  round_to_multiplier(s, false, exponent, multiplier, shift);
  return true;
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
