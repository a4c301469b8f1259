// Shared by the equivalence drivers (kernel_equivalence.cc, quant_equivalence.cc), which
// are built for the host and for the Cortex-M4 in QEMU: console output (stdio or ARM
// semihosting) and a xorshift32 random stream that is the same on both.
#ifndef TFLM_TRAIN_MICRO_TESTS_DRIVER_UTIL_H_
#define TFLM_TRAIN_MICRO_TESTS_DRIVER_UTIL_H_

#include <stdint.h>

#ifdef __arm__
#include "semihosting.h"
#define TT_PRINT(s) sh_puts(s)
#else
#include <stdio.h>
#include <stdlib.h>
#define TT_PRINT(s) fputs(s, stdout)
#endif

namespace tt_test {

inline uint32_t& rng_state() {
  static uint32_t state = 0x2545F491u;
  return state;
}
inline uint32_t next_u32() {
  uint32_t& s = rng_state();
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

// Prints name followed by v in decimal.
inline void put_count(const char* name, int32_t v) {
  char d[16], buf[64];
  int32_t k = 0, j = 0;
  do { d[k++] = static_cast<char>('0' + v % 10); v /= 10; } while (v && k < 15);
  while (*name && j < 40) buf[j++] = *name++;
  while (k) buf[j++] = d[--k];
  buf[j] = 0;
  TT_PRINT(buf);
}

}  // namespace tt_test

#endif  // TFLM_TRAIN_MICRO_TESTS_DRIVER_UTIL_H_
