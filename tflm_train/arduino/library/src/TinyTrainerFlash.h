// TinyTrainerFlash: checkpoint storage in the last sectors of the board's internal flash,
// through Mbed OS's FlashIAP (the Arduino Mbed OS cores: Nano 33 BLE, Nano RP2040 Connect,
// Portenta H7, Nicla Vision, GIGA R1).
//
//     TinyTrainerFlash flash;
//     flash.begin(trainer);                    // after trainer.begin()
//     trainer.restore(flash.storage());        // at boot: the newest valid checkpoint, if any
//     trainer.save(flash.storage());           // after training
//
// The sketch itself must end below address(): the region is erased by the first save. On the
// dual-core STM32H747 boards (Portenta H7, Nicla Vision, GIGA R1) the end of the flash is the
// second bank, which holds the M4 core's program with the 1 MB + 1 MB flash split: there, give
// the end of a free region (for example the end of the M7's first megabyte).
#ifndef TINYTRAINER_FLASH_H_
#define TINYTRAINER_FLASH_H_

#include "TinyTrainer.h"

#if defined(ARDUINO_ARCH_MBED)
#include <FlashIAP.h>

class TinyTrainerFlash {
 public:
  // Reserve the checkpoint region (both slots) just below `regionEnd` (0: the end of the flash), a
  // sector boundary. False when the flash cannot be opened or the region would not fit.
  bool begin(TinyTrainer& trainer, uint32_t regionEnd = 0);
  void end();
  const tt_storage& storage() const { return storage_; }
  uint32_t address() const { return base_; }  // first byte of the region
  uint32_t size() const { return storage_.size; }

 private:
  static int erasePage(void* context, uint32_t offset);
  static int program(void* context, uint32_t offset, const void* data, uint32_t len);
  static int read(void* context, uint32_t offset, void* data, uint32_t len);
  mbed::FlashIAP flash_;
  tt_storage storage_ = {};
  uint32_t base_ = 0;
};
#endif  // ARDUINO_ARCH_MBED

#endif  // TINYTRAINER_FLASH_H_
