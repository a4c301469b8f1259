// Shared by the libFuzzer targets: heap copies of exactly the right size, so that
// AddressSanitizer's redzone sits right after the model, each I/O buffer and the
// arena (whose inside is poisoned per op by the runtime, -DTT_POISON_ARENA).
#ifndef TFLM_TRAIN_MICRO_FUZZ_FUZZ_ARENA_H_
#define TFLM_TRAIN_MICRO_FUZZ_FUZZ_ARENA_H_

#include <sanitizer/asan_interface.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace fuzz {

// Limits that keep one input fast: larger claims are skipped, not run.
constexpr size_t kMaxModelBytes = 1 << 20;
constexpr size_t kMaxArenaBytes = 4 << 20;

// An exact-size heap buffer (malloc: 16-byte aligned, redzone right after `size` bytes).
struct Exact {
  uint8_t* data = nullptr;
  size_t size = 0;
  explicit Exact(size_t n) : data(static_cast<uint8_t*>(malloc(n ? n : 1))), size(n) {}
  Exact(const uint8_t* src, size_t n) : Exact(n) {
    if (n) memcpy(data, src, n);
  }
  ~Exact() { free(data); }
  Exact(const Exact&) = delete;
  Exact& operator=(const Exact&) = delete;
};

// After an init with a `bound`-byte arena that uses `used` bytes: the arena is made exactly
// `used` bytes long by poisoning its tail (one init fewer than re-initializing with `used`).
inline void poison_tail(Exact& arena, size_t used) {
  if (used < arena.size) ASAN_POISON_MEMORY_REGION(arena.data + used, arena.size - used);
}

// Deterministic bytes from the input (inputs of the model, images).
inline void fill_from(uint8_t* out, size_t n, const uint8_t* data, size_t size) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((size ? data[(i * 7919u) % size] : 0) ^ (i * 31u));
}

}  // namespace fuzz

#endif  // TFLM_TRAIN_MICRO_FUZZ_FUZZ_ARENA_H_
