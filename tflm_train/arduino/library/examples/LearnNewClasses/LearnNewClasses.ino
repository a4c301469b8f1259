/*
  LearnNewClasses: the board learns classes it has never seen, one labelled sample at a time.

  A sample comes from the sensor (here: one camera frame, sent over Serial as a line
  "S <hex bytes>"; replace captureSample() with your camera or sensor code) and is learned
  under the current label, which a push button on pin 2 (to GND) or the serial command
  "L <label>" selects. "T <label> <hex>" sends a labelled sample in one line.
  Before learning a sample the board says what it thinks it is, so the running accuracy
  is measured on samples it has not trained on yet.
  "E <label> <hex>" tests the board on a held-out sample without training on it;
  "R" prints the held-out accuracy since the last "R".

  Serial output (115200 baud):
    step 7 label 1 predicted 1 loss 0.3120 running loss 0.5710 running accuracy 71.4%
    held-out accuracy 91.7% (11/12)
*/
#include <TinyTrainer.h>

const int kButtonPin = 2;

alignas(16) static uint8_t arena[TINYTRAINER_ARENA_BYTES];
TinyTrainer trainer(tinytrainer_model, tinytrainer_model_len, arena, sizeof arena);

TinyTrainerStats stats;
static int8_t image[TINYTRAINER_INPUT_BYTES];
TinyTrainerSerialSamples input(Serial, image, sizeof image);  // decodes samples into image

int currentLabel = 0;
int lastButton = HIGH;
TinyTrainerHeldOut heldOut;

// The sensor: true when a new sample is in `image` (the model's int8 input). Here it arrives
// over Serial as "S <hex>", decoded into `image` as it comes. With a camera: read a frame,
// resize it to the model's input and store trainer.quantize(pixel / 255.0f) for every pixel.
bool captureSample() {
  return input.command() == 'S' && input.hasSample() && !input.malformed();
}

void printLabel(int label) {
  Serial.print(label);
  Serial.print(" (");
  Serial.print(tinytrainer_class_names[label]);
  Serial.print(")");
}

void learn(int label) {
  const int predicted = trainer.predict(image);
  float loss = 0.0f;
  if (predicted < 0 || !trainer.train(image, label, &loss)) {
    Serial.print("error: ");
    Serial.println(trainer.errorMessage());
    return;
  }
  stats.add(loss, predicted == label);
  Serial.print("step ");
  Serial.print(trainer.steps());
  Serial.print(" label ");
  Serial.print(label);
  Serial.print(" predicted ");
  Serial.print(predicted);
  Serial.print(" loss ");
  Serial.print(loss, 4);
  Serial.print(" running loss ");
  Serial.print(stats.loss(), 4);
  Serial.print(" running accuracy ");
  Serial.print(100.0f * stats.accuracy(), 1);
  Serial.println("%");
}

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  pinMode(kButtonPin, INPUT_PULLUP);
  if (!trainer.begin()) {
    Serial.print("TinyTrainer: ");
    Serial.println(trainer.errorMessage());
    while (true) delay(1000);
  }
  Serial.print("LearnNewClasses: ");
  Serial.print(trainer.numClasses());
  Serial.print(" classes, arena ");
  Serial.print((unsigned long)trainer.arenaUsed());
  Serial.println(" bytes. Button or 'L <label>' selects the label; 'S <hex>' learns a sample.");
  Serial.print("label ");
  printLabel(currentLabel);
  Serial.println();
}

void loop() {
  const int button = digitalRead(kButtonPin);
  if (button == LOW && lastButton == HIGH) {  // pressed: next class
    currentLabel = (currentLabel + 1) % trainer.numClasses();
    Serial.print("label ");
    printLabel(currentLabel);
    Serial.println();
  }
  lastButton = button;

  if (!input.poll()) return;
  long label = input.number();
  switch (input.command()) {
    case 'S':
      if (captureSample()) learn(currentLabel);
      else Serial.println("error: 'S' needs the sample as hex bytes");
      break;
    case 'L':
      if (label < 0 || label >= trainer.numClasses()) {
        Serial.println("error: 'L' needs a label in [0, classes)");
        break;
      }
      currentLabel = label;
      Serial.print("label ");
      printLabel(currentLabel);
      Serial.println();
      break;
    case 'T':
      label = input.labelledSample(trainer.numClasses());
      if (label < 0) Serial.println("error: 'T' needs a label and the sample as hex bytes");
      else learn(label);
      break;
    default:  // E and R: held-out test
      if (!heldOut.command(input, trainer, Serial)) {
        Serial.println(input.malformed() ? "error: malformed line" : "error: unknown command (S, L, T, E, R)");
      }
  }
}
