// quantize_multiplier and quantize_scale_ratio (src/quant.cc, integer arithmetic on the
// double's / floats' bits) == their specification in double arithmetic, on random values:
//   quantize_multiplier(real):  m = frexp(real, &e); q = round(m * 2^31);
//                               if (q == 2^31) { q /= 2; ++e; }  if (e < -31) { e = 0; q = 0; }
//   quantize_scale_ratio(a, b, c) == quantize_multiplier(double(a) * double(b) / double(c))
// Doubles near rounding ties, typical TFLite scales, every float exponent and subnormals are drawn.
// Built for the host (tests/test_kernel_equivalence.py) and for the Cortex-M4 in QEMU, where the
// double specification runs in the C library's software double arithmetic. Prints
//   TT quant cases=<n> ok
// or the first mismatch, and exits non-zero on a mismatch.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../src/quant.h"

#include "driver_util.h"

#ifndef TT_CASES
#define TT_CASES 20000
#endif

namespace {

using tt_test::next_u32;

void spec_multiplier(double real, int32_t* multiplier, int* shift) {
  if (real == 0.0 || !isfinite(real)) {
    *multiplier = 0;
    *shift = 0;
    return;
  }
  int e = 0;
  const double m = frexp(real, &e);
  int64_t q = static_cast<int64_t>(round(m * 2147483648.0));
  if (q == (int64_t{1} << 31)) {
    q /= 2;
    ++e;
  }
  if (e < -31) {
    e = 0;
    q = 0;
  }
  *multiplier = static_cast<int32_t>(q);
  *shift = e;
}

float float_of(uint32_t bits) {
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// A positive float: any exponent (subnormals included), or a TFLite-like scale.
float random_scale() {
  const uint32_t kind = next_u32() % 4;
  if (kind == 0) return float_of((next_u32() & 0x7FFFFFu) | ((1 + next_u32() % 254) << 23));
  if (kind == 1) return float_of((next_u32() & 0x7FFFFFu) | 1u);  // subnormal
  return float_of((next_u32() & 0x7FFFFFu) | ((112 + next_u32() % 16) << 23));  // 2^-15 .. 1
}

double random_double() {
  uint32_t hi = next_u32(), lo = next_u32();
  const uint32_t kind = next_u32() % 4;
  if (kind == 0) hi = (hi & 0x800FFFFFu) | ((1023u - 40u + next_u32() % 60u) << 20);  // near 1
  if (kind == 1) lo = (lo & ~0x3FFFFFu) | 0x200000u;                                   // a tie at 2^-31
  if (kind == 2) lo |= 0x3FFFFFu;                                                      // just below one
  uint64_t bits = (static_cast<uint64_t>(hi) << 32) | lo;
  double d;
  memcpy(&d, &bits, 8);
  return d;
}

bool report(const char* what, int32_t c) {
  TT_PRINT("TT quant mismatch in ");
  TT_PRINT(what);
  tt_test::put_count(" case ", c);
  TT_PRINT("\n");
  return false;
}

bool one_case(int32_t c) {
  int32_t m0, m1;
  int s0, s1;
  const double r = random_double();
  spec_multiplier(r, &m0, &s0);
  tt::quantize_multiplier(r, &m1, &s1);
  if (m0 != m1 || s0 != s1) return report("quantize_multiplier", c);
  const float a = random_scale(), b = (next_u32() % 5 == 0) ? 1.0f : random_scale();
  const float x = (next_u32() % 3 == 0) ? a : random_scale();
  spec_multiplier(static_cast<double>(a) * static_cast<double>(b) / static_cast<double>(x), &m0, &s0);
  if (!tt::quantize_scale_ratio(a, b, x, &m1, &s1)) return report("quantize_scale_ratio (refused)", c);
  if (m0 != m1 || s0 != s1) return report("quantize_scale_ratio", c);
  // Not positive finite: refused, nothing written.
  m1 = 7;
  if (tt::quantize_scale_ratio(-a, b, x, &m1, &s1) || tt::quantize_scale_ratio(a, 0.0f, x, &m1, &s1) ||
      tt::quantize_scale_ratio(a, b, float_of(0x7F800000u), &m1, &s1) || m1 != 7)
    return report("quantize_scale_ratio (accepted a non-positive or non-finite scale)", c);
  return true;
}

}  // namespace

#ifdef __arm__
int main() {
  const int32_t cases = TT_CASES;
#else
int main(int argc, char** argv) {
  int32_t cases = TT_CASES;
  if (argc > 1) cases = atoi(argv[1]);
#endif
  for (int32_t c = 0; c < cases; ++c)
    if (!one_case(c)) return 1;
  TT_PRINT("TT quant cases ok\nTT end\n");
  return 0;
}
