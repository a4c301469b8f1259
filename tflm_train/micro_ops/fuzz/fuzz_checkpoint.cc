// libFuzzer target: checkpoint restore. Input: the contents of a checkpoint
// storage (both slots, 256-byte pages, 8-byte writes) for the training model
// named by $TT_FUZZ_MODEL. A restore either refuses with a message or loads a
// checkpoint; after a successful restore, a save into the same storage (whatever
// the other slot holds) and a restore into a fresh trainer must succeed and give
// the saved parameter bytes back.
#include <stdio.h>

#include <vector>

#include "fuzz_arena.h"
#include "tflm_train.h"

namespace {

// The trainer is initialized once; every input starts from a copy of its initial arena
// (same address, so the runtime's pointers into the arena stay valid).
struct Trainer {
  fuzz::Exact* model = nullptr;
  fuzz::Exact* arena = nullptr;
  std::vector<uint8_t> initial;
  tt_trainer tr, initial_handle;
  void init(const std::vector<uint8_t>& bytes) {
    model = new fuzz::Exact(bytes.data(), bytes.size());
    if (tt_train_init(&tr, model->data, model->size, nullptr, 0) != TT_ARENA_TOO_SMALL) abort();
    arena = new fuzz::Exact(tt_train_arena_needed(&tr));
    if (tt_train_init(&tr, model->data, model->size, arena->data, arena->size) != TT_OK) abort();
    fuzz::poison_tail(*arena, tt_train_arena_used(&tr));
    initial.assign(arena->data, arena->data + tt_train_arena_used(&tr));
    initial_handle = tr;
  }
  tt_trainer* reset() {
    memcpy(arena->data, initial.data(), initial.size());
    tr = initial_handle;
    return &tr;
  }
};

Trainer* g_trainer;
Trainer* g_fresh;

constexpr uint32_t kPage = 256, kWrite = 8;

void parameters(tt_trainer* tr, std::vector<uint8_t>* out) {
  out->clear();
  for (size_t i = 0; i < tt_parameter_count(tr); ++i) {
    tt_parameter p;
    if (tt_parameter_info(tr, i, &p) != TT_OK) abort();
    const size_t at = out->size();
    out->resize(at + p.bytes);
    if (tt_parameter_data(tr, i, out->data() + at, p.bytes) != TT_OK) abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = getenv("TT_FUZZ_MODEL");
  FILE* f = path ? fopen(path, "rb") : nullptr;
  if (!f) {
    fprintf(stderr, "fuzz_checkpoint: set TT_FUZZ_MODEL to a training .tflite\n");
    exit(2);
  }
  std::vector<uint8_t> bytes;
  uint8_t buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  fclose(f);
  g_trainer = new Trainer();
  g_trainer->init(bytes);
  g_fresh = new Trainer();
  g_fresh->init(bytes);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 20)) return 0;
  tt_trainer* tr = g_trainer->reset();
  fuzz::Exact memory(data, size);
  tt_ram_flash flash;
  tt_storage storage;
  tt_ram_flash_storage(&flash, memory.data, static_cast<uint32_t>(size), kPage, kWrite, &storage);
  tt_checkpoint_info info;
  const tt_status st = tt_checkpoint_restore(tr, &storage, &info);
  if (st != TT_OK) {
    if (st != TT_NO_CHECKPOINT && st != TT_INVALID_ARGUMENT) {
      fprintf(stderr, "restore: unexpected %s: %s\n", tt_status_name(st), tt_train_error_message(tr));
      abort();
    }
    return 0;
  }
  std::vector<uint8_t> saved, restored;
  parameters(tr, &saved);
  if (tt_checkpoint_save(tr, &storage, nullptr) != TT_OK) {
    fprintf(stderr, "save after a restore failed: %s\n", tt_train_error_message(tr));
    abort();
  }
  tt_trainer* fresh = g_fresh->reset();
  if (tt_checkpoint_restore(fresh, &storage, nullptr) != TT_OK) abort();
  parameters(fresh, &restored);
  if (saved != restored) {
    fprintf(stderr, "restored parameters differ from the saved ones\n");
    abort();
  }
  return 0;
}
