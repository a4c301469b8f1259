// Shared by runtime_check.cc and checkpoint_check.cc (its checkpoint / atomic-step commands).
#ifndef TFLM_TRAIN_MICRO_TESTS_CHECKPOINT_CHECK_H_
#define TFLM_TRAIN_MICRO_TESTS_CHECKPOINT_CHECK_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

namespace checkpoint_check {
std::vector<uint8_t> read_file(const char* path);  // runtime_check.cc

// A 16-byte aligned copy (the runtime reads shapes in place).
struct Aligned {
  std::vector<uint8_t> storage;
  uint8_t* data;
  size_t size;
  explicit Aligned(size_t n) : storage(n + 16), size(n) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(storage.data());
    data = storage.data() + ((16 - (p & 15)) & 15);
  }
  Aligned(const uint8_t* src, size_t n) : Aligned(n) {
    if (n) memcpy(data, src, n);
  }
};
// CRC-32 (IEEE), bit by bit: an independent implementation of the checkpoint format's CRC.
inline uint32_t crc32(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}
}  // namespace checkpoint_check

int cmd_powercut(const char* model_path, const char* images_path, uint32_t page, uint32_t write);
int cmd_wrong_model(const char* model_a, const char* model_b, uint32_t page, uint32_t write);
int cmd_atomic(const char* model_path, const char* image_path);

#endif  // TFLM_TRAIN_MICRO_TESTS_CHECKPOINT_CHECK_H_
