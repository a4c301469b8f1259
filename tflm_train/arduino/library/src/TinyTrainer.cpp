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

bool TinyTrainerHeldOut::command(const TinyTrainerSerialSamples& input, TinyTrainer& trainer, Print& out) {
  if (input.command() == 'R') {
    report(out);
    return true;
  }
  if (input.command() != 'E') return false;
  const long label = input.labelledSample(trainer.numClasses());
  if (label < 0) out.println("error: 'E' needs a label and the sample as hex bytes");
  else add(trainer.predict(input.image()) == label);
  return true;
}

// ------------------------------------------------------------------ TinyTrainerSerialSamples
static int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void TinyTrainerSerialSamples::startLine() {
  inLine_ = true;
  lineDone_ = false;
  inCommand_ = true;
  command_ = 0;
  number_ = -1;
  sample_ = malformed_ = false;
  fieldLength_ = 0;
}

void TinyTrainerSerialSamples::endField() {
  if (inCommand_) {
    inCommand_ = false;
    return;
  }
  if (fieldLength_ == 0) return;
  if (sample_) {
    malformed_ = true;  // nothing may follow the sample
  } else if (fieldHex_ && fieldLength_ == 2 * bytes_) {
    sample_ = true;
  } else if (fieldDecimal_ && fieldLength_ <= 9 && number_ < 0) {
    number_ = fieldValue_;
  } else {
    malformed_ = true;
  }
  fieldLength_ = 0;
  fieldDecimal_ = fieldHex_ = true;
  fieldValue_ = 0;
}

bool TinyTrainerSerialSamples::poll() {
  if (lineDone_) {  // the previous line was handled
    lineDone_ = false;
    inLine_ = false;
  }
  while (stream_.available() > 0) {
    const int c = stream_.read();
    if (c < 0) break;
    if (c == '\r') continue;
    if (c == '\n') {
      if (!inLine_) continue;  // a blank line
      endField();
      lineDone_ = true;
      return true;
    }
    if (!inLine_) {
      if (c == ' ') continue;
      startLine();
      command_ = static_cast<char>(c);
      continue;
    }
    if (c == ' ') {
      endField();
      continue;
    }
    if (inCommand_) {  // a command is one character
      malformed_ = true;
      continue;
    }
    const int d = hexDigit(static_cast<char>(c));
    fieldDecimal_ = fieldDecimal_ && c >= '0' && c <= '9';
    fieldHex_ = fieldHex_ && d >= 0;
    if (fieldDecimal_ && fieldLength_ < 9) fieldValue_ = fieldValue_ * 10 + (c - '0');
    if (fieldHex_ && fieldLength_ < 2 * bytes_) {  // decoded as it arrives
      if (fieldLength_ % 2 == 0) high_ = d;
      else image_[fieldLength_ / 2] = static_cast<int8_t>(static_cast<uint8_t>(high_ * 16 + d));
    }
    fieldLength_++;
  }
  return false;
}

long TinyTrainerSerialSamples::labelledSample(int numClasses) const {
  if (malformed_ || !sample_ || number_ < 0 || number_ >= numClasses) return -1;
  return number_;
}
