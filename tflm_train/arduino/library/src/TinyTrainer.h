// TinyTrainer: on-device training of an int8 TensorFlow Lite model on an Arduino board.
//
// An Arduino-style class over the tflm-train C API (tflm_train/include/tflm_train.h):
//
//     #include <TinyTrainer.h>
//     alignas(16) static uint8_t arena[TINYTRAINER_ARENA_BYTES];
//     TinyTrainer trainer(tinytrainer_model, tinytrainer_model_len, arena, sizeof arena);
//
//     void setup() { if (!trainer.begin()) Serial.println(trainer.errorMessage()); }
//     ...  trainer.train(image, label, &loss);     // one SGD step on one int8 image
//     ...  int guess = trainer.predict(image);     // class index with the trained parameters
//
// The model (src/TinyTrainerModel.h) is the training .tflite this library was generated
// from (`tflm-train arduino TRAIN.tflite -o DIR`); it stays in flash. Every buffer comes
// from the arena: no heap. Images are the model's int8 input: quantize() turns a real
// value (for example pixel / 255.0) into it.
#ifndef TINYTRAINER_H_
#define TINYTRAINER_H_

#include <Arduino.h>

#include "TinyTrainerModel.h"
#include "tflm_train/include/tflm_train.h"

#ifndef TINYTRAINER_MAX_CLASSES
#define TINYTRAINER_MAX_CLASSES 32  // logits buffer of predict(); raise it for a larger head
#endif

class TinyTrainer {
 public:
  constexpr TinyTrainer(const uint8_t* model, size_t modelLength, uint8_t* arena, size_t arenaLength)
      : model_(model), modelLength_(modelLength), arena_(arena), arenaLength_(arenaLength), trainer_(),
        numClasses_(0), inputBytes_(0), inputScale_(0.0f), inputZeroPoint_(0), logits_() {}

  // Reads the model, lays out the arena and loads the initial parameters. False: see errorMessage().
  bool begin();

  // One training step on `image` (inputBytes() int8 values) with `label` in [0, numClasses()).
  // `loss` (may be NULL) gets the loss before the update. A failed step changes nothing.
  bool train(const int8_t* image, int label, float* loss = nullptr);

  // The class with the highest score under the current parameters, -1 on error. `scores`
  // (may be NULL) gets numClasses() logits.
  int predict(const int8_t* image, float* scores = nullptr);

  // Keep what was learned: write the trained parameters to flash-like storage (two slots,
  // CRC-checked; a power cut leaves the old or the new state) / load the newest valid one.
  bool save(const tt_storage& storage);
  bool restore(const tt_storage& storage);  // false and unchanged when there is no checkpoint
  uint32_t checkpointSequence() const { return checkpointSequence_; }
  size_t checkpointBytes(uint32_t pageSize, uint32_t writeSize);  // storage both slots need

  int numClasses() const { return numClasses_; }
  size_t inputBytes() const { return inputBytes_; }
  uint32_t steps();                      // successful training steps (restored ones included)
  size_t arenaUsed() const { return tt_train_arena_used(&trainer_); }
  int8_t quantize(float value) const;    // a real input value -> the model's int8 input
  const char* errorMessage() const { return tt_train_error_message(&trainer_); }
  tt_trainer* handle() { return &trainer_; }  // the C API, for everything else

 private:
  const uint8_t* model_;
  size_t modelLength_;
  uint8_t* arena_;
  size_t arenaLength_;
  tt_trainer trainer_;
  int numClasses_;
  size_t inputBytes_;
  float inputScale_;
  int32_t inputZeroPoint_;
  uint32_t checkpointSequence_ = 0;
  float logits_[TINYTRAINER_MAX_CLASSES];
};

// Running loss and accuracy over the last `kWindow` steps (what the examples print).
class TinyTrainerStats {
 public:
  static const int kWindow = 16;
  void add(float loss, bool correct);
  float loss() const;      // mean loss over the window
  float accuracy() const;  // fraction of correct predictions over the window, 0..1
  uint32_t count() const { return count_; }

 private:
  float losses_[kWindow] = {};
  bool correct_[kWindow] = {};
  uint32_t count_ = 0;
};

class TinyTrainerSerialSamples;

// Accuracy on held-out samples (tested, never trained on): report() prints it and starts over.
class TinyTrainerHeldOut {
 public:
  void add(bool correct) {
    seen_++;
    correct_ += correct ? 1 : 0;
  }
  void report(Print& out);  // "held-out accuracy 91.7% (11/12)"
  // The examples' test commands: "E <label> <hex>" tests one sample, "R" reports. False when
  // the line is another command (then nothing happened).
  bool command(const TinyTrainerSerialSamples& input, TinyTrainer& trainer, Print& out);

 private:
  uint32_t seen_ = 0, correct_ = 0;
};

// Samples and commands as text lines over a Stream (Serial): "<command> [number] [hex bytes]".
// For example "T 2 80ff7f..." is a sample of class 2 whose int8 bytes are written in hex (two
// digits a byte). The hex digits are decoded as they arrive, straight into `image`: no line
// buffer, so a sample costs its own bytes of RAM. poll() never blocks: it returns true once a
// whole line has arrived. `image` holds the sample only when hasSample() says so.
class TinyTrainerSerialSamples {
 public:
  TinyTrainerSerialSamples(Stream& stream, int8_t* image, size_t bytes)
      : stream_(stream), image_(image), bytes_(bytes) {}
  bool poll();
  char command() const { return command_; }
  long number() const { return number_; }          // the integer after the command, -1 if none
  bool hasSample() const { return sample_; }        // exactly `bytes` bytes of hex arrived
  long labelledSample(int numClasses) const;        // "<command> <label> <hex>": the label, else -1
  bool malformed() const { return malformed_; }     // a field that is neither a number nor the sample
  const int8_t* image() const { return image_; }

 private:
  void startLine();
  void endField();
  Stream& stream_;
  int8_t* image_;
  size_t bytes_;
  bool inLine_ = false, lineDone_ = false;
  char command_ = 0;
  bool inCommand_ = false;
  long number_ = -1;
  bool sample_ = false, malformed_ = false;
  size_t fieldLength_ = 0;  // characters of the current field
  bool fieldDecimal_ = true, fieldHex_ = true;
  long fieldValue_ = 0;
  int high_ = 0;            // the first hex digit of the byte being decoded
};

#endif  // TINYTRAINER_H_
