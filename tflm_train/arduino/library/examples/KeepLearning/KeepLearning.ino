/*
  KeepLearning: what the board learned survives a reset or a power cut.

  At boot the sketch restores the newest valid checkpoint from the board's flash (the last
  sectors, through TinyTrainerFlash), so training continues where it stopped. It learns
  from labelled samples ("T <label> <hex>") and writes a checkpoint every
  kCheckpointEvery steps and on "C". Checkpoints go to two slots with a CRC: a reset
  during a write leaves the previous checkpoint. "E <label> <hex>" + "R": held-out accuracy.

  Serial output (115200 baud):
    restored checkpoint 2: 16 steps
    step 17 label 3 loss 0.0912 running loss 0.2210
    checkpoint 3 saved: 24 steps
    held-out accuracy 91.7% (11/12)
*/
#include <TinyTrainer.h>
#include <TinyTrainerFlash.h>

const uint32_t kCheckpointEvery = 8;

alignas(16) static uint8_t arena[TINYTRAINER_ARENA_BYTES];
TinyTrainer trainer(tinytrainer_model, tinytrainer_model_len, arena, sizeof arena);
TinyTrainerFlash flash;

TinyTrainerStats stats;
TinyTrainerHeldOut heldOut;
static int8_t image[TINYTRAINER_INPUT_BYTES];
TinyTrainerSerialSamples input(Serial, image, sizeof image);  // decodes samples into image

void checkpoint() {
  if (trainer.save(flash.storage())) {
    Serial.print("checkpoint ");
    Serial.print(trainer.checkpointSequence());
    Serial.print(" saved: ");
    Serial.print(trainer.steps());
    Serial.println(" steps");
  } else {
    Serial.print("error: checkpoint not saved: ");
    Serial.println(trainer.errorMessage());
  }
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  if (!trainer.begin() || !flash.begin(trainer)) {
    Serial.print("TinyTrainer: ");
    Serial.println(trainer.errorMessage()[0] ? trainer.errorMessage() : "no flash region for checkpoints");
    while (true) delay(1000);
  }
  Serial.print("KeepLearning: checkpoints in flash at 0x");
  Serial.print(flash.address(), HEX);
  Serial.print(", ");
  Serial.print(flash.size());
  Serial.println(" bytes");
  if (trainer.restore(flash.storage())) {
    Serial.print("restored checkpoint ");
    Serial.print(trainer.checkpointSequence());
    Serial.print(": ");
    Serial.print(trainer.steps());
    Serial.println(" steps");
  } else {
    Serial.print("starting from the exported model (");
    Serial.print(trainer.errorMessage());
    Serial.println(")");
  }
}

void loop() {
  if (!input.poll()) return;
  long label;
  switch (input.command()) {
    case 'T': {
      label = input.labelledSample(trainer.numClasses());
      float loss = 0.0f;
      if (label < 0) {
        Serial.println("error: 'T' needs a label and the sample as hex bytes");
      } else if (!trainer.train(image, label, &loss)) {
        Serial.print("error: ");
        Serial.println(trainer.errorMessage());
      } else {
        stats.add(loss, true);
        Serial.print("step ");
        Serial.print(trainer.steps());
        Serial.print(" label ");
        Serial.print(label);
        Serial.print(" loss ");
        Serial.print(loss, 4);
        Serial.print(" running loss ");
        Serial.println(stats.loss(), 4);
        if (trainer.steps() % kCheckpointEvery == 0) checkpoint();
      }
      break;
    }
    case 'C':
      checkpoint();
      break;
    default:  // E and R: held-out test
      if (!heldOut.command(input, trainer, Serial)) {
        Serial.println(input.malformed() ? "error: malformed line" : "error: unknown command (T, C, E, R)");
      }
  }
}
