// mbed::FlashIAP for the test board (the Arduino Mbed OS cores' in-application flash API):
// a 1 MB NOR flash at address 0 with 4 KB sectors (the erase unit) and 4-byte program
// units, like the nRF52840 of the Arduino Nano 33 BLE. Its contents are the host file
// flash.bin in QEMU's working directory, so they survive a reset (the next run).
// NOR rules are enforced: erase whole aligned sectors (to 0xFF); program aligned whole
// units, and only bits from 1 to 0 (anything else fails, as it would corrupt real flash).
#ifndef TESTS_ARDUINO_API_FLASHIAP_H_
#define TESTS_ARDUINO_API_FLASHIAP_H_

#include <stdint.h>

namespace mbed {

class FlashIAP {
 public:
  static const uint32_t kFlashSize = 1u << 20, kSectorSize = 4096, kPageSize = 4;
  int init();
  int deinit();
  int read(void* buffer, uint32_t addr, uint32_t size);
  int program(const void* buffer, uint32_t addr, uint32_t size);
  int erase(uint32_t addr, uint32_t size);
  uint32_t get_page_size() const { return kPageSize; }
  uint32_t get_sector_size(uint32_t addr) const { return addr < kFlashSize ? kSectorSize : 0; }
  uint32_t get_flash_start() const { return 0; }
  uint32_t get_flash_size() const { return kFlashSize; }
  uint8_t get_erase_value() const { return 0xFF; }

 private:
  int handle_ = -1;
};

}  // namespace mbed

#endif  // TESTS_ARDUINO_API_FLASHIAP_H_
