#include "TinyTrainerFlash.h"

#if defined(ARDUINO_ARCH_MBED)

bool TinyTrainerFlash::begin(TinyTrainer& trainer, uint32_t regionEnd) {
  if (flash_.init() != 0) return false;
  const uint32_t start = flash_.get_flash_start(), size = flash_.get_flash_size();
  if (regionEnd == 0) regionEnd = start + size;
  if (regionEnd <= start || regionEnd - start > size) return false;
  // Erase unit: the sector holding the last byte (the region lies in the uniform tail).
  const uint32_t sector = flash_.get_sector_size(regionEnd - 1);
  uint32_t unit = flash_.get_page_size();
  if (unit == 0) unit = 1;
  if (unit > TT_CHECKPOINT_MAX_WRITE_SIZE || sector == 0 || sector % unit != 0) return false;
  const size_t bytes = trainer.checkpointBytes(sector, unit);
  if (bytes == 0 || bytes > (regionEnd - start) / 2 || regionEnd % sector != 0) return false;
  base_ = regionEnd - static_cast<uint32_t>(bytes);
  storage_.context = this;
  storage_.size = static_cast<uint32_t>(bytes);
  storage_.page_size = sector;
  storage_.write_size = unit;
  storage_.erased_value = flash_.get_erase_value();
  storage_.erase_page = erasePage;
  storage_.program = program;
  storage_.read = read;
  return true;
}

void TinyTrainerFlash::end() { flash_.deinit(); }

int TinyTrainerFlash::erasePage(void* context, uint32_t offset) {
  TinyTrainerFlash* self = static_cast<TinyTrainerFlash*>(context);
  return self->flash_.erase(self->base_ + offset, self->storage_.page_size);
}

int TinyTrainerFlash::program(void* context, uint32_t offset, const void* data, uint32_t len) {
  TinyTrainerFlash* self = static_cast<TinyTrainerFlash*>(context);
  return self->flash_.program(data, self->base_ + offset, len);
}

int TinyTrainerFlash::read(void* context, uint32_t offset, void* data, uint32_t len) {
  TinyTrainerFlash* self = static_cast<TinyTrainerFlash*>(context);
  return self->flash_.read(data, self->base_ + offset, len);
}

#endif  // ARDUINO_ARCH_MBED
