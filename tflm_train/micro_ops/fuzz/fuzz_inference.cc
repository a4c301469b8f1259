// libFuzzer target: the TFLite reader, inference prepare (tt_init) and invoke.
// Input: a .tflite file. The interpreter gets an arena of exactly the size it
// reports using (tt_arena_used; the rest of the bound it asked for is poisoned),
// so any overrun past the arena is reported by ASan, and the runtime poisons every
// arena byte no live tensor owns while an op runs.
#include "fuzz_arena.h"
#include "tflm_train.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > fuzz::kMaxModelBytes) return 0;
  fuzz::Exact model(data, size);
  tt_interpreter it;
  tt_status st = tt_init(&it, model.data, size, nullptr, 0);
  if (st != TT_ARENA_TOO_SMALL) return 0;  // rejected (with a message) before sizing
  const size_t bound = tt_arena_needed(&it);
  if (bound > fuzz::kMaxArenaBytes) return 0;
  fuzz::Exact arena(bound);
  if (tt_init(&it, model.data, size, arena.data, bound) != TT_OK) return 0;
  fuzz::poison_tail(arena, tt_arena_used(&it));
  for (size_t i = 0; i < tt_input_count(&it); ++i) {
    tt_tensor_info info;
    if (tt_input_info(&it, i, &info) != TT_OK) abort();
    fuzz::Exact in(info.bytes);
    fuzz::fill_from(in.data, in.size, data, size);
    if (tt_set_input(&it, i, in.data, in.size) != TT_OK) abort();
  }
  if (tt_invoke(&it) != TT_OK) return 0;
  for (size_t i = 0; i < tt_output_count(&it); ++i) {
    tt_tensor_info info;
    if (tt_output_info(&it, i, &info) != TT_OK) abort();
    fuzz::Exact out(info.bytes);
    if (tt_get_output(&it, i, out.data, out.size) != TT_OK) abort();
  }
  return 0;
}
