#include "TinyTrainer.h"

#include <math.h>
#include <string.h>

bool TinyTrainer::begin() {
  if (tt_train_init(&trainer_, model_, modelLength_, arena_, arenaLength_) != TT_OK) return false;
  tt_train_info info;
  if (tt_train_get_info(&trainer_, &info) != TT_OK) return false;
  if (info.num_classes > TINYTRAINER_MAX_CLASSES) {
    // The C API reports through the trainer's message; say why begin() refused the model
    // (no printf: it would pull the C library's heap into the sketch).
    static const char kTooMany[] = "the model has more classes than TINYTRAINER_MAX_CLASSES; define it larger";
    memcpy(trainer_.message, kTooMany, sizeof kTooMany);
    trainer_.impl = nullptr;
    return false;
  }
  numClasses_ = info.num_classes;
  inputBytes_ = info.image.bytes;
  inputScale_ = info.image.scale;
  inputZeroPoint_ = info.image.zero_point;
  return true;
}

bool TinyTrainer::train(const int8_t* image, int label, float* loss) {
  return tt_train_step(&trainer_, image, inputBytes_, label, loss) == TT_OK;
}

int TinyTrainer::predict(const int8_t* image, float* scores) {
  if (tt_train_predict(&trainer_, image, inputBytes_, logits_, numClasses_) != TT_OK) return -1;
  int best = 0;
  for (int c = 1; c < numClasses_; ++c) {
    if (logits_[c] > logits_[best]) best = c;
  }
  if (scores) memcpy(scores, logits_, sizeof(float) * numClasses_);
  return best;
}

bool TinyTrainer::save(const tt_storage& storage) {
  tt_checkpoint_info info;
  if (tt_checkpoint_save(&trainer_, &storage, &info) != TT_OK) return false;
  checkpointSequence_ = info.sequence;
  return true;
}

bool TinyTrainer::restore(const tt_storage& storage) {
  tt_checkpoint_info info;
  if (tt_checkpoint_restore(&trainer_, &storage, &info) != TT_OK) return false;
  checkpointSequence_ = info.sequence;
  return true;
}

size_t TinyTrainer::checkpointBytes(uint32_t pageSize, uint32_t writeSize) {
  return tt_checkpoint_storage_bytes(&trainer_, pageSize, writeSize);
}

uint32_t TinyTrainer::steps() {
  tt_train_info info;
  return tt_train_get_info(&trainer_, &info) == TT_OK ? info.steps_done : 0;
}

int8_t TinyTrainer::quantize(float value) const {
  if (inputScale_ <= 0.0f) return 0;
  const long q = lroundf(value / inputScale_) + inputZeroPoint_;
  return static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
}

// ------------------------------------------------------------------ TinyTrainerStats
void TinyTrainerStats::add(float loss, bool correct) {
  losses_[count_ % kWindow] = loss;
  correct_[count_ % kWindow] = correct;
  ++count_;
}

float TinyTrainerStats::loss() const {
  const uint32_t n = count_ < static_cast<uint32_t>(kWindow) ? count_ : kWindow;
  float sum = 0.0f;
  for (uint32_t i = 0; i < n; ++i) sum += losses_[i];
  return n ? sum / n : 0.0f;
}

float TinyTrainerStats::accuracy() const {
  const uint32_t n = count_ < static_cast<uint32_t>(kWindow) ? count_ : kWindow;
  uint32_t hits = 0;
  for (uint32_t i = 0; i < n; ++i) hits += correct_[i] ? 1 : 0;
  return n ? static_cast<float>(hits) / n : 0.0f;
}

void TinyTrainerHeldOut::report(Print& out) {
  out.print("held-out accuracy ");
  out.print(seen_ ? 100.0f * correct_ / seen_ : 0.0f, 1);
  out.print("% (");
  out.print(correct_);
  out.print("/");
  out.print(seen_);
  out.println(")");
  seen_ = correct_ = 0;
}

// ------------------------------------------------------------------ TinyTrainerSerialSamples
bool TinyTrainerSerialSamples::poll() {
  if (ready_) {  // the previous line was handled: start a new one
    ready_ = false;
    length_ = 0;
    buffer_[0] = '\0';
  }
  while (stream_.available() > 0) {
    const int c = stream_.read();
    if (c < 0) break;
    if (c == '\r') continue;
    if (c == '\n') {
      if (skipping_) {  // the end of a line that did not fit: report it once, as an empty command
        skipping_ = false;
        overflowed_ = true;
        length_ = 0;
        buffer_[0] = '\0';
        ready_ = true;
        return true;
      }
      if (length_ == 0) continue;  // blank line
      buffer_[length_] = '\0';
      overflowed_ = false;
      ready_ = true;
      return true;
    }
    if (skipping_) continue;
    if (length_ + 1 >= capacity_) {
      skipping_ = true;
      continue;
    }
    buffer_[length_++] = static_cast<char>(c);
  }
  return false;
}

const char* TinyTrainerSerialSamples::payload() const {
  const char* p = buffer_ + (buffer_[0] ? 1 : 0);
  while (*p == ' ') ++p;
  return p;
}

long TinyTrainerSerialSamples::number() const {
  const char* p = payload();
  if (*p < '0' || *p > '9') return -1;
  long value = 0;
  for (; *p >= '0' && *p <= '9'; ++p) value = value * 10 + (*p - '0');
  // a number stands alone or before the hex bytes
  return (*p == '\0' || *p == ' ') ? value : -1;
}

static int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool TinyTrainerSerialSamples::sample(int8_t* image, size_t bytes) const {
  // the last space-separated field is the sample
  const char* hex = payload();
  for (const char* p = hex; *p; ++p) {
    if (*p == ' ') hex = p + 1;
  }
  if (strlen(hex) != 2 * bytes) return false;
  for (size_t i = 0; i < bytes; ++i) {
    const int hi = hexDigit(hex[2 * i]), lo = hexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    image[i] = static_cast<int8_t>(static_cast<uint8_t>(hi * 16 + lo));
  }
  return true;
}

long TinyTrainerSerialSamples::labelledSample(int8_t* image, size_t bytes, int numClasses) const {
  const long label = number();
  if (label < 0 || label >= numClasses || !sample(image, bytes)) return -1;
  return label;
}
