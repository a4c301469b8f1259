// The gradient storage conversions (src/train/kernels/grad_storage.h) on every input that
// decides a rounding, hashed so that tests/test_kernel_equivalence.py compares them with
// NumPy's float16 casts (IEEE round to nearest even) without moving the values:
//   widen:  all 2^16 binary16 values -> float32 bits;
//   ties:   every float32 whose low 12 bits are 0 (each binary16 value and each exact tie
//           between two, normal and subnormal), and its two float32 neighbours -> binary16;
//   random: TT_RANDOM float32 bit patterns fmix32(i * 0x9E3779B9) -> binary16.
// A NaN result counts as the canonical 0x7fc00000 / 0x7e00 (payload and signalling bit are
// not specified). Hash: sum of value_i * (i * 2654435761 | 1) mod 2^32. Built for the host
// (software conversion) and for the Cortex-M4 in QEMU (VCVTB). Prints
//   TT half widen=<hex> ties=<hex> random=<hex>
#include <stdint.h>
#include <string.h>

#include "../src/train/kernels/grad_storage.h"

#include "driver_util.h"

#ifndef TT_RANDOM
#define TT_RANDOM 1000000
#endif

namespace {

using tt::train::f16_bits_to_f32;
using tt::train::f32_to_f16_bits;

struct Hash {
  uint32_t h = 0, i = 0;
  void add(uint32_t v) { h += v * ((i++ * 2654435761u) | 1u); }
};

uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

uint32_t narrowed(uint32_t bits) {
  float f;
  memcpy(&f, &bits, 4);
  const uint32_t h = f32_to_f16_bits(f);
  return ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) ? 0x7e00u : h;
}

void put_hex(char* at, uint32_t v) {
  for (int k = 7; k >= 0; --k, v >>= 4) at[k] = "0123456789abcdef"[v & 15u];
}

}  // namespace

#ifdef __arm__
int main() {
  const uint32_t randoms = TT_RANDOM / 10;
#else
#include <stdlib.h>
int main(int argc, char** argv) {
  uint32_t randoms = TT_RANDOM;
  if (argc > 1) randoms = static_cast<uint32_t>(strtoul(argv[1], nullptr, 10));
#endif
  Hash widen, ties, random;
  for (uint32_t h = 0; h < 65536u; ++h) {
    const float f = f16_bits_to_f32(static_cast<uint16_t>(h));
    uint32_t bits;
    memcpy(&bits, &f, 4);
    widen.add(f != f ? 0x7fc00000u : bits);
  }
  for (uint32_t k = 0; k < (1u << 20); ++k) {
    const uint32_t bits = k << 12;
    ties.add(narrowed(bits - 1u));
    ties.add(narrowed(bits));
    ties.add(narrowed(bits + 1u));
  }
  for (uint32_t i = 0; i < randoms; ++i) random.add(narrowed(fmix32(i * 0x9E3779B9u)));
  char line[] = "TT half widen=........ ties=........ random=........\nTT end\n";
  put_hex(line + 14, widen.h);
  put_hex(line + 28, ties.h);
  put_hex(line + 44, random.h);
  TT_PRINT(line);
  return 0;
}
