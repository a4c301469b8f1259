/*
  AdaptToPlace: adapt a pretrained classifier to where the board is installed.

  The model's backbone was pretrained elsewhere; here it meets its own classes, light and
  viewpoint. The board collects a few labelled samples at its place ("T <label> <hex>",
  kept in RAM, up to kMaxSamples: 16 small images), then "A" adapts: kEpochs passes over the collected
  samples in a shuffled order, printing the mean loss of each pass. Before and after, it is
  tested on held-out samples ("E <label> <hex>" tests one, "R" prints the accuracy).
  "S <hex>" classifies a sample from the sensor.

  Serial output (115200 baud):
    collected 12 samples
    epoch 1/3 loss 1.0123
    epoch 3/3 loss 0.2045
    held-out accuracy 91.7% (11/12)
*/
#include <TinyTrainer.h>

// Up to 16 samples kept in RAM, within 32 KB (at least one, whatever the input size).
const int kMaxSamples = 32768 / TINYTRAINER_INPUT_BYTES >= 16 ? 16
                        : (32768 / TINYTRAINER_INPUT_BYTES > 0 ? 32768 / TINYTRAINER_INPUT_BYTES : 1);
const int kEpochs = 3;

alignas(16) static uint8_t arena[TINYTRAINER_ARENA_BYTES];
TinyTrainer trainer(tinytrainer_model, tinytrainer_model_len, arena, sizeof arena);

TinyTrainerHeldOut heldOut;

static int8_t collected[kMaxSamples][TINYTRAINER_INPUT_BYTES];
static uint8_t collectedLabel[kMaxSamples];
int collectedCount = 0;
static int8_t image[TINYTRAINER_INPUT_BYTES];
TinyTrainerSerialSamples input(Serial, image, sizeof image);  // decodes samples into image

// A small deterministic generator for the shuffles (the same order on every run).
uint32_t shuffleState = 12345;
uint32_t nextRandom() {
  shuffleState ^= shuffleState << 13;
  shuffleState ^= shuffleState >> 17;
  shuffleState ^= shuffleState << 5;
  return shuffleState;
}

void adapt() {
  if (collectedCount == 0) {
    Serial.println("error: collect samples first ('T <label> <hex>')");
    return;
  }
  uint8_t order[kMaxSamples];
  for (int i = 0; i < collectedCount; i++) order[i] = i;
  for (int epoch = 1; epoch <= kEpochs; epoch++) {
    for (int i = collectedCount - 1; i > 0; i--) {  // Fisher-Yates
      const int j = nextRandom() % (i + 1);
      const uint8_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    float sum = 0.0f;
    const unsigned long start = millis();
    for (int i = 0; i < collectedCount; i++) {
      float loss = 0.0f;
      if (!trainer.train(collected[order[i]], collectedLabel[order[i]], &loss)) {
        Serial.print("error: ");
        Serial.println(trainer.errorMessage());
        return;
      }
      sum += loss;
    }
    Serial.print("epoch ");
    Serial.print(epoch);
    Serial.print("/");
    Serial.print(kEpochs);
    Serial.print(" loss ");
    Serial.print(sum / collectedCount, 4);
    Serial.print(" (");
    Serial.print(millis() - start);
    Serial.println(" ms)");
  }
  collectedCount = 0;  // adapted: collect anew for the next round
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  if (!trainer.begin()) {
    Serial.print("TinyTrainer: ");
    Serial.println(trainer.errorMessage());
    while (true) delay(1000);
  }
  Serial.print("AdaptToPlace: ");
  Serial.print(trainer.numClasses());
  Serial.println(" classes. 'T <label> <hex>' collects, 'A' adapts, 'E <label> <hex>' + 'R' test.");
}

void loop() {
  if (!input.poll()) return;
  long label;
  switch (input.command()) {
    case 'T':
      label = input.labelledSample(trainer.numClasses());
      if (label < 0) {
        Serial.println("error: 'T' needs a label and the sample as hex bytes");
      } else if (collectedCount == kMaxSamples) {
        Serial.println("error: the sample memory is full: adapt ('A') first");
      } else {
        memcpy(collected[collectedCount], image, sizeof image);
        collectedLabel[collectedCount++] = label;
        if (collectedCount % 4 == 0) {
          Serial.print("collected ");
          Serial.print(collectedCount);
          Serial.println(" samples");
        }
      }
      break;
    case 'A':
      adapt();
      break;
    case 'S':
      if (!input.hasSample()) {
        Serial.println("error: 'S' needs the sample as hex bytes");
      } else {
        Serial.print("class ");
        const int c = trainer.predict(image);
        Serial.print(c);
        Serial.print(" (");
        Serial.print(c >= 0 ? tinytrainer_class_names[c] : "?");
        Serial.println(")");
      }
      break;
    default:  // E and R: held-out test
      if (!heldOut.command(input, trainer, Serial)) {
        Serial.println(input.malformed() ? "error: malformed line" : "error: unknown command (T, A, E, R, S)");
      }
  }
}
