// Poisoning of arena bytes that no live buffer owns, for the fuzzers and the
// sanitizer tests (built with -DTT_POISON_ARENA and AddressSanitizer).
//
// ASan alone only sees the arena as one allocation: a kernel that reads past its
// tensor but stays inside the arena passes silently. With TT_POISON_ARENA the
// interpreters poison the whole planned region before every op / training step
// and unpoison only what is alive at that op (its planned buffers and scratch),
// so any access to bytes outside a live buffer is reported. After a run the
// region is unpoisoned again. In every other build these are empty functions.
#ifndef TFLM_TRAIN_MICRO_ARENA_POISON_H_
#define TFLM_TRAIN_MICRO_ARENA_POISON_H_

#include <stddef.h>
#include <stdint.h>

#if defined(TT_POISON_ARENA)
#include <sanitizer/asan_interface.h>
#endif

namespace tt {

inline void arena_poison(const uint8_t* p, size_t n) {
#if defined(TT_POISON_ARENA)
  if (n) ASAN_POISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

inline void arena_unpoison(const uint8_t* p, size_t n) {
#if defined(TT_POISON_ARENA)
  if (n) ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

constexpr bool kArenaPoisoning =
#if defined(TT_POISON_ARENA)
    true;
#else
    false;
#endif

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_ARENA_POISON_H_
