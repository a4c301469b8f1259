// libFuzzer target: the training metadata reader, train prepare (tt_train_init),
// two training steps and a prediction. Input: a training .tflite (tflm_train.export).
// The trainer gets an arena of exactly tt_train_arena_used bytes (the tail is poisoned); the runtime
// poisons every byte of the plan's step region that no live buffer owns.
#include <stdio.h>

#include "fuzz_arena.h"
#include "tflm_train.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > fuzz::kMaxModelBytes) return 0;
  fuzz::Exact model(data, size);
  tt_trainer tr;
  if (tt_train_init(&tr, model.data, size, nullptr, 0) != TT_ARENA_TOO_SMALL) return 0;
  const size_t bound = tt_train_arena_needed(&tr);
  if (bound > fuzz::kMaxArenaBytes) return 0;
  fuzz::Exact arena(bound);
  // Checks that need the arena (plan overlaps use it as workspace, the initial RNG state) may
  // still reject the model, with a message; "arena too small" again would be a sizing bug.
  const tt_status st = tt_train_init(&tr, model.data, size, arena.data, bound);
  if (st == TT_ARENA_TOO_SMALL) {
    fprintf(stderr, "tt_train_init: arena too small with the size it asked for (%zu): %s\n", bound,
            tt_train_error_message(&tr));
    abort();
  }
  if (st != TT_OK) return 0;
  fuzz::poison_tail(arena, tt_train_arena_used(&tr));
  tt_train_info info;
  if (tt_train_get_info(&tr, &info) != TT_OK) abort();
  fuzz::Exact image(info.image.bytes);
  fuzz::fill_from(image.data, image.size, data, size);
  float loss;
  const int32_t labels[2] = {0, info.num_classes - 1};
  for (int32_t label : labels) {
    const tt_status st = tt_train_step(&tr, image.data, image.size, label, &loss);
    if (st != TT_OK && st != TT_NUMERIC_ERROR) {
      fprintf(stderr, "tt_train_step failed after a successful init: %s\n", tt_train_error_message(&tr));
      abort();
    }
  }
  fuzz::Exact logits(sizeof(float) * static_cast<size_t>(info.num_classes));
  tt_train_predict(&tr, image.data, image.size, reinterpret_cast<float*>(logits.data),
                   static_cast<size_t>(info.num_classes));
  return 0;
}
