// Checkpoint and atomic-step checks of the C API, part of runtime_check (built with
// the sanitizers by tests/test_micro_sanitizers.py):
//
//   runtime_check powercut MODEL IMAGES PAGE WRITE
//       every power cut during a save: before each erase and program, in the middle
//       of a page erase, after every write unit of a program and with a torn unit;
//       then restart (a fresh trainer) and restore: the state must be the previous
//       checkpoint's or the new one's, byte for byte (never a mix, never nothing
//       once a first checkpoint exists)
//   runtime_check atomic MODEL IMAGE
//       failed steps (labels, image sizes, NULL, non-finite logits) change nothing
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "checkpoint_check.h"
#include "tflm_train.h"

namespace {

int failures = 0;

void check(bool ok, const char* what, const tt_trainer* tr) {
  if (ok) return;
  printf("FAIL %s | %s\n", what, tr ? tt_train_error_message(tr) : "");
  ++failures;
}

using Buffer = checkpoint_check::Aligned;

// One trainer over one model, re-initialized from a snapshot of its arena ("restart").
struct Device {
  Buffer model;
  Buffer arena;
  tt_trainer tr, initial_handle;
  std::vector<uint8_t> initial;
  explicit Device(const std::vector<uint8_t>& bytes) : model(bytes.size()), arena(arena_size(bytes, model)) {
    if (tt_train_init(&tr, model.data, model.size, arena.data, arena.size) != TT_OK) {
      printf("FAIL train init | %s\n", tt_train_error_message(&tr));
      exit(1);
    }
    initial.assign(arena.data, arena.data + arena.size);
    initial_handle = tr;
  }
  static size_t arena_size(const std::vector<uint8_t>& bytes, Buffer& model) {
    memcpy(model.data, bytes.data(), bytes.size());
    tt_trainer probe;
    if (tt_train_init(&probe, model.data, model.size, nullptr, 0) != TT_ARENA_TOO_SMALL) abort();
    return tt_train_arena_needed(&probe);
  }
  tt_trainer* restart() {
    memcpy(arena.data, initial.data(), initial.size());
    tr = initial_handle;
    return &tr;
  }
};

// Everything a checkpoint carries, as the C API shows it: every parameter's bytes,
// the step count and the float head's logit range.
std::vector<uint8_t> state_of(tt_trainer* tr) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i < tt_parameter_count(tr); ++i) {
    tt_parameter p;
    if (tt_parameter_info(tr, i, &p) != TT_OK) abort();
    const size_t at = out.size();
    out.resize(at + p.bytes);
    if (tt_parameter_data(tr, i, out.data() + at, p.bytes) != TT_OK) abort();
  }
  tt_train_info info;
  if (tt_train_get_info(tr, &info) != TT_OK) abort();
  const uint8_t* a = reinterpret_cast<const uint8_t*>(&info.steps_done);
  out.insert(out.end(), a, a + sizeof info.steps_done);
  const uint8_t* b = reinterpret_cast<const uint8_t*>(&info.logit_absmax);
  out.insert(out.end(), b, b + sizeof info.logit_absmax);
  return out;
}

// A tt_storage over a RAM flash (tt_ram_flash_storage) that loses power at operation `cut`:
// that operation happens in part or whole (see Cut), every later one fails, reads included.
struct Cut {
  enum Kind { kBefore, kHalfErase, kUnits, kTornUnit, kAfter };
  int32_t at = -1;         // operation index (erase or program) where power goes; -1: never
  Kind kind = kBefore;
  uint32_t units = 0;      // kUnits / kTornUnit: write units completed before the cut
};

struct CutStorage {
  tt_ram_flash flash;
  tt_storage inner, outer;
  Cut cut;
  int32_t ops = 0;         // operations attempted
  int32_t last_program_units = 0;
  bool dead = false;
  std::vector<int32_t> units_of_op;  // write units of each program op (-1: erase)

  CutStorage(uint8_t* memory, uint32_t size, uint32_t page, uint32_t write) {
    tt_ram_flash_storage(&flash, memory, size, page, write, &inner);
    outer = inner;
    outer.context = this;
    outer.erase_page = erase;
    outer.program = program;
    outer.read = read;
  }
  static int erase(void* c, uint32_t offset) {
    CutStorage* s = static_cast<CutStorage*>(c);
    if (s->dead) return -1;
    const int32_t op = s->ops++;
    s->units_of_op.push_back(-1);
    if (op != s->cut.at) return s->inner.erase_page(s->inner.context, offset);
    s->dead = true;
    if (s->cut.kind == Cut::kAfter) return s->inner.erase_page(s->inner.context, offset);
    if (s->cut.kind == Cut::kHalfErase) memset(s->flash.memory + offset, 0xFF, s->flash.page_size / 2);
    return -1;
  }
  static int program(void* c, uint32_t offset, const void* data, uint32_t len) {
    CutStorage* s = static_cast<CutStorage*>(c);
    if (s->dead) return -1;
    const int32_t op = s->ops++;
    const uint32_t w = s->flash.write_size;
    s->units_of_op.push_back(static_cast<int32_t>(len / w));
    if (op != s->cut.at) return s->inner.program(s->inner.context, offset, data, len);
    s->dead = true;
    if (s->cut.kind == Cut::kAfter) return s->inner.program(s->inner.context, offset, data, len);
    if (s->cut.kind == Cut::kUnits || s->cut.kind == Cut::kTornUnit) {
      const uint32_t done = s->cut.units * w;
      if (done && s->inner.program(s->inner.context, offset, data, done) != 0) abort();
      if (s->cut.kind == Cut::kTornUnit && done < len) {
        // A unit half written: some of its bits cleared (NOR programming only clears bits).
        uint8_t torn[TT_CHECKPOINT_MAX_WRITE_SIZE];
        memcpy(torn, static_cast<const uint8_t*>(data) + done, w);
        for (uint32_t i = w / 2; i < w; ++i) torn[i] = static_cast<uint8_t>(torn[i] | 0xA5);
        if (s->inner.program(s->inner.context, offset + done, torn, w) != 0) abort();
      }
    }
    return -1;
  }
  static int read(void* c, uint32_t offset, void* data, uint32_t len) {
    CutStorage* s = static_cast<CutStorage*>(c);
    if (s->dead) return -1;
    return s->inner.read(s->inner.context, offset, data, len);
  }
};

struct Tally {
  int cuts = 0, erase_cuts = 0, program_cuts = 0, partial = 0, old_state = 0, new_state = 0, none = 0, bad = 0;
};

// Every cut of one save of `next` over the flash image `before` (whose newest checkpoint is
// `previous`, or none when previous is empty). Checks each restart's restore.
void cut_every_operation(Device& dev, Device& rebooted, const std::vector<uint8_t>& before,
                         const std::vector<uint8_t>& previous, const std::vector<uint8_t>& next, uint32_t page,
                         uint32_t write, Tally* tally) {
  // A clean run first: how many operations a save takes, and the units of each program.
  std::vector<uint8_t> image(before);
  CutStorage clean(image.data(), static_cast<uint32_t>(image.size()), page, write);
  check(tt_checkpoint_save(&dev.tr, &clean.outer, nullptr) == TT_OK, "uncut save", &dev.tr);
  std::vector<Cut> cuts;
  for (int32_t op = 0; op < clean.ops; ++op) {
    const int32_t units = clean.units_of_op[static_cast<size_t>(op)];
    Cut c;
    c.at = op;
    c.kind = Cut::kBefore;
    cuts.push_back(c);
    c.kind = Cut::kAfter;
    cuts.push_back(c);
    if (units < 0) {
      c.kind = Cut::kHalfErase;
      cuts.push_back(c);
      continue;
    }
    for (int32_t u = 0; u < units; ++u) {
      c.units = static_cast<uint32_t>(u);
      c.kind = Cut::kUnits;
      if (u) cuts.push_back(c);
      c.kind = Cut::kTornUnit;
      cuts.push_back(c);
    }
  }
  for (const Cut& c : cuts) {
    image = before;
    CutStorage s(image.data(), static_cast<uint32_t>(image.size()), page, write);
    s.cut = c;
    const tt_status saved = tt_checkpoint_save(&dev.tr, &s.outer, nullptr);
    check(saved == TT_STORAGE_ERROR, "a save losing power reports TT_STORAGE_ERROR", &dev.tr);
    ++tally->cuts;
    if (clean.units_of_op[static_cast<size_t>(c.at)] < 0) ++tally->erase_cuts; else ++tally->program_cuts;
    if (c.kind != Cut::kBefore && c.kind != Cut::kAfter) ++tally->partial;
    // Restart: a fresh trainer restores from what the flash holds now.
    tt_trainer* tr = rebooted.restart();
    const std::vector<uint8_t> initial = state_of(tr);
    tt_ram_flash flash;
    tt_storage storage;
    tt_ram_flash_storage(&flash, image.data(), static_cast<uint32_t>(image.size()), page, write, &storage);
    const tt_status st = tt_checkpoint_restore(tr, &storage, nullptr);
    const std::vector<uint8_t> got = state_of(tr);
    if (st == TT_OK && got == next) {
      ++tally->new_state;
    } else if (st == TT_OK && !previous.empty() && got == previous) {
      ++tally->old_state;
    } else if (st == TT_NO_CHECKPOINT && previous.empty() && got == initial) {
      ++tally->none;
    } else {
      ++tally->bad;
      printf("FAIL cut at op %d (kind %d, units %u): restore %s, state %s | %s\n", c.at, static_cast<int>(c.kind),
             c.units, tt_status_name(st), got == initial ? "initial" : "neither old nor new",
             tt_train_error_message(tr));
      ++failures;
    }
    // The device recovers: the next save over the cut image succeeds and restores.
    CutStorage again(image.data(), static_cast<uint32_t>(image.size()), page, write);
    check(tt_checkpoint_save(&dev.tr, &again.outer, nullptr) == TT_OK, "save after a power cut", &dev.tr);
    tr = rebooted.restart();
    check(tt_checkpoint_restore(tr, &storage, nullptr) == TT_OK && state_of(tr) == next,
          "restore after the recovering save", tr);
  }
}

}  // namespace

int cmd_powercut(const char* model_path, const char* images_path, uint32_t page, uint32_t write) {
  const std::vector<uint8_t> raw = checkpoint_check::read_file(model_path),
                             images = checkpoint_check::read_file(images_path);
  Device dev(raw), rebooted(raw);
  tt_trainer* tr = &dev.tr;
  tt_train_info info;
  tt_train_get_info(tr, &info);
  const size_t n = images.size() / info.image.bytes;
  const size_t size = tt_checkpoint_storage_bytes(tr, page, write);
  check(size > 0, "storage size", tr);
  std::vector<uint8_t> erased(size, 0xFF);
  Tally first, later;
  auto step = [&](size_t k) {
    float loss;
    check(tt_train_step(tr, images.data() + (k % n) * info.image.bytes, info.image.bytes,
                        static_cast<int32_t>(k % static_cast<size_t>(info.num_classes)), &loss) == TT_OK,
          "train step", tr);
  };
  // 1. The first save (nothing before it): a cut leaves nothing or the new checkpoint.
  step(0);
  const std::vector<uint8_t> s1 = state_of(tr);
  cut_every_operation(dev, rebooted, erased, {}, s1, page, write, &first);
  std::vector<uint8_t> image(erased);
  tt_ram_flash flash;
  tt_storage storage;
  tt_ram_flash_storage(&flash, image.data(), static_cast<uint32_t>(size), page, write, &storage);
  check(tt_checkpoint_save(tr, &storage, nullptr) == TT_OK, "save 1", tr);
  // 2. Saves 2 (into slot B) and 3 (over slot A): a cut leaves the previous or the new one.
  for (int save = 2; save <= 3; ++save) {
    const std::vector<uint8_t> previous = state_of(tr);
    step(static_cast<size_t>(save));
    step(static_cast<size_t>(save) + 1);
    const std::vector<uint8_t> next = state_of(tr);
    check(next != previous, "training changed the state", tr);
    cut_every_operation(dev, rebooted, image, previous, next, page, write, &later);
    tt_checkpoint_info ci;
    check(tt_checkpoint_save(tr, &storage, &ci) == TT_OK && ci.sequence == static_cast<uint32_t>(save),
          "save with the next sequence number", tr);
  }
  printf("powercut page %u write %u storage %zu: first save: %d cuts (%d erase, %d program, %d partial) -> "
         "%d nothing, %d new, %d bad; later saves: %d cuts (%d erase, %d program, %d partial) -> %d previous, "
         "%d new, %d bad\n",
         page, write, size, first.cuts, first.erase_cuts, first.program_cuts, first.partial, first.none,
         first.new_state, first.bad, later.cuts, later.erase_cuts, later.program_cuts, later.partial,
         later.old_state, later.new_state, later.bad);

  // Another model's checkpoint is refused; so is a corrupted one; the trainer is unchanged.
  const std::vector<uint8_t> kept = state_of(tr);
  std::vector<uint8_t> corrupt(image);
  for (size_t i = 0; i < corrupt.size(); i += 97) corrupt[i] ^= 0x10;
  tt_ram_flash cflash;
  tt_storage cstorage;
  tt_ram_flash_storage(&cflash, corrupt.data(), static_cast<uint32_t>(size), page, write, &cstorage);
  check(tt_checkpoint_restore(tr, &cstorage, nullptr) == TT_NO_CHECKPOINT && state_of(tr) == kept,
        "corrupted storage -> TT_NO_CHECKPOINT, trainer unchanged", tr);
  return failures ? 1 : 0;
}

int cmd_wrong_model(const char* model_a, const char* model_b, uint32_t page, uint32_t write) {
  Device a(checkpoint_check::read_file(model_a)), b(checkpoint_check::read_file(model_b));
  const size_t size = tt_checkpoint_storage_bytes(&a.tr, page, write) + tt_checkpoint_storage_bytes(&b.tr, page, write);
  std::vector<uint8_t> image(size, 0xFF);
  tt_ram_flash flash;
  tt_storage storage;
  tt_ram_flash_storage(&flash, image.data(), static_cast<uint32_t>(size), page, write, &storage);
  check(tt_checkpoint_save(&a.tr, &storage, nullptr) == TT_OK, "save model A", &a.tr);
  const std::vector<uint8_t> kept = state_of(&b.tr);
  const tt_status st = tt_checkpoint_restore(&b.tr, &storage, nullptr);
  printf("wrong_model: %s\n", tt_train_error_message(&b.tr));
  check(st == TT_NO_CHECKPOINT && strstr(tt_train_error_message(&b.tr), "another model") && state_of(&b.tr) == kept,
        "model A's checkpoint refused by model B", &b.tr);
  return failures ? 1 : 0;
}

int cmd_atomic(const char* model_path, const char* image_path) {
  const std::vector<uint8_t> raw = checkpoint_check::read_file(model_path),
                             image = checkpoint_check::read_file(image_path);
  Device dev(raw);
  tt_trainer* tr = &dev.tr;
  tt_train_info info;
  tt_train_get_info(tr, &info);
  float loss = 0.0f;
  check(tt_train_step(tr, image.data(), info.image.bytes, 0, &loss) == TT_OK, "first step", tr);
  const std::vector<uint8_t> before = state_of(tr);
  int refused = 0;
  auto unchanged = [&](tt_status got, tt_status want, const char* what) {
    check(got == want, what, tr);
    check(state_of(tr) == before, what, tr);
    ++refused;
  };
  const int32_t n = info.num_classes;
  for (int32_t label : {-1, n, n + 1, INT32_MIN, INT32_MAX})
    unchanged(tt_train_step(tr, image.data(), info.image.bytes, label, &loss), TT_INVALID_ARGUMENT,
              "label outside [0, classes) -> TT_INVALID_ARGUMENT, nothing changed");
  for (size_t len : {size_t{0}, info.image.bytes - 1, info.image.bytes + 1})
    unchanged(tt_train_step(tr, image.data(), len, 0, &loss), TT_SHAPE_MISMATCH,
              "wrong image length -> TT_SHAPE_MISMATCH, nothing changed");
  unchanged(tt_train_step(tr, nullptr, info.image.bytes, 0, &loss), TT_INVALID_ARGUMENT,
            "NULL image -> TT_INVALID_ARGUMENT, nothing changed");

  // Non-finite logits: a checkpoint whose float head weights are 3e38 (written with the
  // documented format: 8 state bytes, then every parameter's SRAM bytes in order).
  int numeric = 0;
  if (info.head_is_float) {
    const size_t size = tt_checkpoint_storage_bytes(tr, 256, 8);
    std::vector<uint8_t> flash_bytes(size, 0xFF);
    tt_ram_flash flash;
    tt_storage storage;
    tt_ram_flash_storage(&flash, flash_bytes.data(), static_cast<uint32_t>(size), 256, 8, &storage);
    check(tt_checkpoint_save(tr, &storage, nullptr) == TT_OK, "save", tr);
    const uint32_t header_region = 32;
    size_t at = header_region + 8;
    for (size_t i = 0; i < tt_parameter_count(tr); ++i) {
      tt_parameter p;
      tt_parameter_info(tr, i, &p);
      if (p.type == TT_FLOAT32 && p.rank == 2)
        for (size_t k = 0; k + 4 <= p.sram_bytes; k += 4) {
          const float huge = (k / 4) % 2 ? -3e38f : 3e38f;
          memcpy(flash_bytes.data() + at + k, &huge, 4);
        }
      at += p.sram_bytes;
    }
    uint32_t payload_len;
    memcpy(&payload_len, flash_bytes.data() + 20, 4);
    uint32_t crc = checkpoint_check::crc32(0, flash_bytes.data(), 28);
    crc = checkpoint_check::crc32(crc, flash_bytes.data() + header_region, payload_len);
    memcpy(flash_bytes.data() + 28, &crc, 4);
    check(tt_checkpoint_restore(tr, &storage, nullptr) == TT_OK, "restore the huge-weight checkpoint", tr);
    const std::vector<uint8_t> poisoned = state_of(tr);
    check(poisoned != before, "huge weights loaded", tr);
    for (int k = 0; k < 3; ++k) {
      const tt_status st = tt_train_step(tr, image.data(), info.image.bytes, k % n, &loss);
      if (k == 0) printf("numeric: %s\n", tt_train_error_message(tr));
      check(st == TT_NUMERIC_ERROR, "non-finite logits -> TT_NUMERIC_ERROR", tr);
      check(state_of(tr) == poisoned, "non-finite logits: nothing changed", tr);
      ++numeric;
    }
  }
  printf("atomic: %d refused steps, %d non-finite steps, parameters unchanged by all\n", refused, numeric);
  return failures ? 1 : 0;
}
