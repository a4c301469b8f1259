#include "fixedpoint.h"

namespace tt {
namespace fixedpoint {

namespace {

// Constants are round(value * 2^(31 - integer_bits)).
constexpr int32_t kExpMinusOneEighth = 1895147668;  // exp(-1/8), 0 integer bits
constexpr int32_t kOneThird = 715827883;            // 1/3, 0 integer bits
constexpr int32_t kFortyEightSeventeenths = 1515870810;       // 48/17, 2 integer bits
constexpr int32_t kMinusThirtyTwoSeventeenths = -1010580540;  // -32/17, 2 integer bits

// exp(-2^k) with 0 integer bits, for k = -2 .. 4.
constexpr int kBarrelFirstExponent = -2;
constexpr int32_t kExpMinusPowerOfTwo[] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};

int count_leading_zeros(uint32_t x) {
  if (x == 0) return 32;
  int n = 0;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

}  // namespace

int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
  const int32_t x = add(a, int32_t{1} << 28);  // a + 1/8
  const int32_t x2 = mul(x, x);
  const int32_t x3 = mul(x2, x);
  const int32_t x4 = mul(x2, x2);
  const int32_t x4_over_4 = saturating_rounding_multiply_by_pot(x4, -2);
  const int32_t poly =
      saturating_rounding_multiply_by_pot(add(mul(add(x4_over_4, x3), kOneThird), x2), -1);  // x^4/24 + x^3/6 + x^2/2
  return add(kExpMinusOneEighth, mul(kExpMinusOneEighth, add(x, poly)));
}

int32_t exp_on_negative_values(int32_t a, int integer_bits) {
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = int32_t{1} << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  // a = (a mod 1/4 - 1/4) - remainder, remainder a non-negative multiple of 1/4.
  const int32_t a_mod_quarter_minus_one_quarter = sub(a & mask, one_quarter);
  int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
      rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
  const int32_t remainder = sub(a_mod_quarter_minus_one_quarter, a);
  // exp(-remainder) = product of exp(-2^k) over the set bits 2^k of remainder.
  for (int i = 0; i < 7; ++i) {
    const int k = kBarrelFirstExponent + i;
    if (integer_bits > k) {
      const int bit = fractional_bits + k;
      if (remainder & (int32_t{1} << bit)) result = mul(result, kExpMinusPowerOfTwo[i]);
    }
  }
  // Below -32 the result underflows to 0 (only reachable with more than 5 integer bits).
  if (integer_bits > 5) {
    const int32_t clamp = -(int32_t{1} << (36 - integer_bits));  // -32
    if (a < clamp) result = 0;
  }
  if (a == 0) result = kInt32Max;  // exp(0) = 1, saturated
  return result;
}

int32_t one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  // (a + 1) / 2, rounded (RoundingHalfSum with One = INT32_MAX).
  const int64_t sum = static_cast<int64_t>(a) + kInt32Max;
  const int32_t half_denominator = static_cast<int32_t>((sum + (sum >= 0 ? 1 : -1)) / 2);
  // Newton-Raphson on 1 / half_denominator, in 2 integer bits.
  int32_t x = add(kFortyEightSeventeenths, mul(half_denominator, kMinusThirtyTwoSeventeenths));
  const int32_t one = int32_t{1} << 29;
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = mul(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x = sub(one, half_denominator_times_x);
    x = add(x, rescale(mul(x, one_minus_half_denominator_times_x), 4, 2));
  }
  // x / 2 with 2 integer bits is the same raw with 1 integer bit; back to 0 integer bits.
  return rescale(x, 1, 0);
}

int32_t reciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit) {
  if (x <= 0) {  // not reachable from softmax (the row maximum contributes exp(0))
    *num_bits_over_unit = 0;
    return kInt32Max;
  }
  const int headroom_plus_one = count_leading_zeros(static_cast<uint32_t>(x));
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  const int32_t shifted_sum_minus_one =
      static_cast<int32_t>((static_cast<uint32_t>(x) << headroom_plus_one) - (uint32_t{1} << 31));
  return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

}  // namespace fixedpoint
}  // namespace tt
