#include "FlashIAP.h"

#include "host_file.h"

namespace mbed {

int FlashIAP::init() {
  if (handle_ < 0) handle_ = host_open("flash.bin", HOST_READ_WRITE_BINARY);
  return handle_ >= 0 && host_length(handle_) == static_cast<long>(kFlashSize) ? 0 : -1;
}

int FlashIAP::deinit() { return 0; }

int FlashIAP::read(void* buffer, uint32_t addr, uint32_t size) {
  if (handle_ < 0 || addr > kFlashSize || size > kFlashSize - addr) return -1;
  if (host_seek(handle_, addr) != 0) return -1;
  return host_read(handle_, buffer, size) == static_cast<int>(size) ? 0 : -1;
}

int FlashIAP::program(const void* buffer, uint32_t addr, uint32_t size) {
  if (handle_ < 0 || addr % kPageSize || size % kPageSize || addr > kFlashSize || size > kFlashSize - addr)
    return -1;
  const uint8_t* data = static_cast<const uint8_t*>(buffer);
  uint8_t old[64];
  for (uint32_t done = 0; done < size;) {
    const uint32_t n = size - done < sizeof old ? size - done : sizeof old;
    if (read(old, addr + done, n) != 0) return -1;
    for (uint32_t i = 0; i < n; ++i) {
      if ((old[i] & data[done + i]) != data[done + i]) return -1;  // would set a bit: not erased
    }
    if (host_seek(handle_, addr + done) != 0 || host_write(handle_, data + done, n) != 0) return -1;
    done += n;
  }
  return 0;
}

int FlashIAP::erase(uint32_t addr, uint32_t size) {
  if (handle_ < 0 || addr % kSectorSize || size % kSectorSize || addr > kFlashSize || size > kFlashSize - addr)
    return -1;
  uint8_t ones[256];
  for (uint32_t i = 0; i < sizeof ones; ++i) ones[i] = 0xFF;
  if (host_seek(handle_, addr) != 0) return -1;
  for (uint32_t done = 0; done < size; done += sizeof ones) {
    if (host_write(handle_, ones, sizeof ones) != 0) return -1;
  }
  return 0;
}

}  // namespace mbed
