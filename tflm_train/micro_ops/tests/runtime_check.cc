// Host test driver of the micro runtime's C API, built with
// -fsanitize=address,undefined by tests/test_micro_sanitizers.py.
//
//   runtime_check run MODEL INPUT EXPECTED   infer, compare with expected bytes
//   runtime_check errors MODEL INPUT         C API error paths (arena, sizes, plans, bad headers, truncation)
//   runtime_check fuzz MODEL ITERATIONS SEED random corruptions: init must fail cleanly or run
//   runtime_check train MODEL IMAGES LABELS STEPS
//                                            training steps: prints each loss (float bits) and an
//                                            FNV-1a hash of every parameter's bytes afterwards
//   runtime_check train_errors MODEL IMAGE   training C API error paths (arena, sizes, labels, truncation)
//   runtime_check train_fuzz MODEL IMAGE ITERATIONS SEED BEGIN END
//                                            random corruptions of bytes [BEGIN, END) (the training
//                                            metadata): init must fail cleanly, or the steps run
//   runtime_check powercut MODEL IMAGES PAGE WRITE | wrong_model MODEL_A MODEL_B PAGE WRITE | atomic MODEL IMAGE
//                                            checkpoints and atomic steps (checkpoint_check.cc)
//
// Prints one line per check; exits non-zero on the first failed expectation
// (the sanitizers abort on any invalid memory access or undefined behaviour).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "checkpoint_check.h"
#include "tflm_train.h"

namespace {

int failures = 0;

void expect(bool ok, const char* what, const tt_interpreter* it) {
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, it ? " | " : "", it ? tt_error_message(it) : "");
  if (!ok) ++failures;
}

}  // namespace

std::vector<uint8_t> checkpoint_check::read_file(const char* path) {
  std::vector<uint8_t> data;
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  fclose(f);
  return data;
}

namespace {

using checkpoint_check::read_file;

using checkpoint_check::Aligned;

// Exact arena: ask with none, retry with what the runtime reports, shrink to use.
tt_status init_exact(tt_interpreter* it, const Aligned& model, Aligned** arena) {
  tt_status st = tt_init(it, model.data, model.size, nullptr, 0);
  if (st != TT_ARENA_TOO_SMALL) return st;
  *arena = new Aligned(tt_arena_needed(it));
  st = tt_init(it, model.data, model.size, (*arena)->data, (*arena)->size);
  if (st != TT_OK) return st;
  const size_t used = tt_arena_used(it);
  delete *arena;
  *arena = new Aligned(used);
  return tt_init(it, model.data, model.size, (*arena)->data, (*arena)->size);
}

int cmd_run(const char* model_path, const char* input_path, const char* expected_path) {
  const std::vector<uint8_t> raw = read_file(model_path);
  const std::vector<uint8_t> input = read_file(input_path);
  const std::vector<uint8_t> expected = read_file(expected_path);
  Aligned model(raw.data(), raw.size());
  tt_interpreter it;
  Aligned* arena = nullptr;
  tt_status st = init_exact(&it, model, &arena);
  expect(st == TT_OK, "init", &it);
  if (st != TT_OK) return 1;
  printf("arena_bytes %zu\n", tt_arena_used(&it));
  tt_tensor_info in_info, out_info;
  expect(tt_input_info(&it, 0, &in_info) == TT_OK && tt_output_info(&it, 0, &out_info) == TT_OK, "info", &it);
  const size_t n = in_info.bytes ? input.size() / in_info.bytes : 0;
  if (n * in_info.bytes != input.size() || n * out_info.bytes != expected.size()) {
    fprintf(stderr, "input/expected files do not hold whole samples\n");
    return 2;
  }
  std::vector<uint8_t> out(out_info.bytes);
  for (size_t s = 0; s < n; ++s) {
    st = tt_infer(&it, input.data() + s * in_info.bytes, in_info.bytes, out.data(), out.size());
    expect(st == TT_OK, "infer", &it);
    const bool same = memcmp(out.data(), expected.data() + s * out_info.bytes, out.size()) == 0;
    printf("sample %zu %s\n", s, same ? "identical" : "DIFFERENT");
    if (!same) ++failures;
  }
  delete arena;
  return failures ? 1 : 0;
}

int cmd_errors(const char* model_path, const char* input_path) {
  const std::vector<uint8_t> raw = read_file(model_path);
  const std::vector<uint8_t> input = read_file(input_path);
  Aligned model(raw.data(), raw.size());
  tt_interpreter it;
  Aligned* arena = nullptr;
  expect(init_exact(&it, model, &arena) == TT_OK, "init with the exact arena", &it);
  const size_t used = tt_arena_used(&it);
  tt_tensor_info info;
  tt_input_info(&it, 0, &info);
  tt_tensor_info out_info;
  tt_output_info(&it, 0, &out_info);
  std::vector<uint8_t> out(out_info.bytes);
  expect(tt_infer(&it, input.data(), info.bytes, out.data(), out.size()) == TT_OK, "infer", &it);

  // Wrong sizes.
  expect(tt_infer(&it, input.data(), info.bytes - 1, out.data(), out.size()) == TT_SHAPE_MISMATCH,
         "input one byte short -> TT_SHAPE_MISMATCH", &it);
  expect(tt_infer(&it, input.data(), info.bytes, out.data(), out.size() + 1) == TT_SHAPE_MISMATCH,
         "output buffer one byte long -> TT_SHAPE_MISMATCH", &it);
  expect(tt_set_input(&it, 7, input.data(), info.bytes) == TT_INVALID_ARGUMENT, "input index 7 -> TT_INVALID_ARGUMENT",
         &it);
  expect(tt_input_buffer(&it, 7) == nullptr && tt_input_buffer(&it, 0) != nullptr, "zero-copy input buffer", nullptr);

  // Arena too small: one byte short gives the exact need, tiny gives a size that works.
  {
    tt_interpreter small;
    Aligned a(used - 1);
    expect(tt_init(&small, model.data, model.size, a.data, a.size) == TT_ARENA_TOO_SMALL &&
               tt_arena_needed(&small) == used && strstr(tt_error_message(&small), "arena too small"),
           "arena one byte short -> TT_ARENA_TOO_SMALL with the exact need", &small);
    expect(tt_invoke(&small) == TT_NOT_READY, "invoke after a failed init -> TT_NOT_READY", &small);
    Aligned tiny(64);
    expect(tt_init(&small, model.data, model.size, tiny.data, tiny.size) == TT_ARENA_TOO_SMALL,
           "64-byte arena -> TT_ARENA_TOO_SMALL", &small);
    Aligned retry(tt_arena_needed(&small));
    expect(tt_init(&small, model.data, model.size, retry.data, retry.size) == TT_OK,
           "retry with the reported size works", &small);
  }
  // Misaligned model and NULL arguments.
  {
    Aligned shifted(model.size + 1);
    memcpy(shifted.data + 1, model.data, model.size);
    tt_interpreter bad;
    expect(tt_init(&bad, shifted.data + 1, model.size, arena->data, arena->size) == TT_INVALID_ARGUMENT,
           "misaligned model -> TT_INVALID_ARGUMENT", &bad);
    expect(tt_init(&bad, nullptr, 0, arena->data, arena->size) == TT_INVALID_ARGUMENT, "NULL model", &bad);
    expect(tt_init(nullptr, model.data, model.size, arena->data, arena->size) == TT_INVALID_ARGUMENT,
           "NULL interpreter", nullptr);
  }
  // Wrong magic and truncation.
  {
    Aligned copy(model.data, model.size);
    memcpy(copy.data + 4, "TFL2", 4);
    tt_interpreter bad;
    expect(tt_init(&bad, copy.data, copy.size, arena->data, arena->size) == TT_MALFORMED_MODEL &&
               strstr(tt_error_message(&bad), "identifier"),
           "wrong magic -> TT_MALFORMED_MODEL", &bad);
    int clean = 0, total = 0;
    for (size_t len = 0; len < model.size; len += (len < 1024 || len + 1024 > model.size) ? 1 : 997) {
      Aligned cut(model.data, len);
      const tt_status st = tt_init(&bad, cut.data, len, arena->data, arena->size);
      ++total;
      if (st == TT_MALFORMED_MODEL && tt_error_message(&bad)[0]) ++clean;
    }
    printf("truncations: %d of %d rejected as malformed\n", clean, total);
    expect(clean == total, "every truncation -> TT_MALFORMED_MODEL with a message", nullptr);
  }
  // A caller-planned arena: every tensor at its own offset works; everything at 0 is rejected.
  {
    tt_interpreter planned;
    std::vector<uint32_t> offsets(4096, 0);
    tt_status st = tt_init_planned(&planned, model.data, model.size, arena->data, arena->size, offsets.data(),
                                   offsets.size());
    expect(st == TT_INVALID_ARGUMENT, "plan with the wrong tensor count -> TT_INVALID_ARGUMENT", &planned);
    // Count tensors: the message says how many the model has.
    const char* msg = tt_error_message(&planned);
    const char* has = strstr(msg, "the model has ");
    const size_t count = has ? strtoul(has + 14, nullptr, 10) : 0;
    offsets.assign(count, 0);
    st = tt_init_planned(&planned, model.data, model.size, arena->data, arena->size, offsets.data(), offsets.size());
    expect(st == TT_INVALID_ARGUMENT && strstr(tt_error_message(&planned), "overlap"),
           "plan with every tensor at offset 0 -> rejected (overlap)", &planned);
    uint32_t next = 0;
    for (size_t i = 0; i < count; ++i) {
      offsets[i] = next;
      next += 64 * 1024 * 4;  // far apart: larger than any tensor of the test models
    }
    Aligned big(static_cast<size_t>(next) + 64 * 1024);
    st = tt_init_planned(&planned, model.data, model.size, big.data, big.size, offsets.data(), offsets.size());
    // The planned region holds the tensors where the plan puts them; only the
    // last offset's tensor bounds the total, which may exceed `big` for huge tensors.
    if (st == TT_OK) {
      std::vector<uint8_t> out2(out_info.bytes);
      expect(tt_infer(&planned, input.data(), info.bytes, out2.data(), out2.size()) == TT_OK &&
                 memcmp(out2.data(), out.data(), out.size()) == 0,
             "disjoint caller plan gives the same output", &planned);
    } else {
      expect(st == TT_ARENA_TOO_SMALL, "disjoint caller plan", &planned);
    }
  }
  delete arena;
  return failures ? 1 : 0;
}

uint32_t xorshift32(uint32_t* state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *state = x;
}

int cmd_fuzz(const char* model_path, long iterations, uint32_t seed) {
  const std::vector<uint8_t> raw = read_file(model_path);
  Aligned arena(8u << 20);
  uint32_t rng = seed ? seed : 1;
  long ok = 0, rejected[8] = {0};
  std::vector<uint8_t> in, out;
  for (long i = 0; i < iterations; ++i) {
    Aligned model(raw.data(), raw.size());
    const int edits = 1 + static_cast<int>(xorshift32(&rng) % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = xorshift32(&rng) % model.size;
      switch (xorshift32(&rng) % 5) {
        case 0: model.data[at] = static_cast<uint8_t>(xorshift32(&rng)); break;  // random byte
        case 1: model.data[at] ^= static_cast<uint8_t>(1u << (xorshift32(&rng) % 8)); break;  // bit flip
        case 2: model.data[at] = 0xFF; break;
        case 3: model.data[at] = 0; break;
        default: {  // an aligned 32-bit boundary value: offsets, lengths, indices, dimensions
          static const uint32_t kValues[] = {0u, 1u, 2u, 4u, 0xFFFFFFFFu, 0x7FFFFFFFu, 0x80000000u, 0xFFFFu, 0x10000u,
                                             0xFFFFFFFCu, 0x40000000u};
          const size_t aligned = at & ~static_cast<size_t>(3);
          uint32_t v = kValues[xorshift32(&rng) % (sizeof kValues / sizeof kValues[0])];
          if (xorshift32(&rng) % 3 == 0) v = static_cast<uint32_t>(model.size) + (xorshift32(&rng) % 64) - 32;
          if (aligned + 4 <= model.size) memcpy(model.data + aligned, &v, 4);
          break;
        }
      }
    }
    size_t len = model.size;
    if (xorshift32(&rng) % 8 == 0) len = xorshift32(&rng) % model.size;  // and sometimes truncate
    tt_interpreter it;
    const tt_status st = tt_init(&it, model.data, len, arena.data, arena.size);
    if (st != TT_OK) {
      if (!tt_error_message(&it)[0]) {
        printf("FAIL iteration %ld: status %s without a message\n", i, tt_status_name(st));
        ++failures;
      }
      ++rejected[st & 7];
      continue;
    }
    ++ok;
    // A model that passes validation must run without touching memory it does not own.
    for (size_t k = 0; k < tt_input_count(&it); ++k) {
      tt_tensor_info info;
      tt_input_info(&it, k, &info);
      in.assign(info.bytes, static_cast<uint8_t>(i));
      tt_set_input(&it, k, in.data(), in.size());
    }
    tt_invoke(&it);
    for (size_t k = 0; k < tt_output_count(&it); ++k) {
      tt_tensor_info info;
      tt_output_info(&it, k, &info);
      out.resize(info.bytes);
      tt_get_output(&it, k, out.data(), out.size());
    }
  }
  printf("fuzz: %ld iterations, %ld still valid and ran, rejected: malformed %ld, unsupported %ld, "
         "arena %ld, shape %ld, argument %ld\n",
         iterations, ok, rejected[TT_MALFORMED_MODEL], rejected[TT_UNSUPPORTED], rejected[TT_ARENA_TOO_SMALL],
         rejected[TT_SHAPE_MISMATCH], rejected[TT_INVALID_ARGUMENT]);
  return failures ? 1 : 0;
}


// ------------------------------------------------------------------ training

uint64_t fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

void expect_train(bool ok, const char* what, const tt_trainer* tr) {
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, tr ? " | " : "", tr ? tt_train_error_message(tr) : "");
  if (!ok) ++failures;
}

// Exact arena: ask with none, retry with what the runtime reports.
tt_status train_init_exact(tt_trainer* tr, const Aligned& model, Aligned** arena) {
  tt_status st = tt_train_init(tr, model.data, model.size, nullptr, 0);
  if (st != TT_ARENA_TOO_SMALL) return st;
  *arena = new Aligned(tt_train_arena_needed(tr));
  return tt_train_init(tr, model.data, model.size, (*arena)->data, (*arena)->size);
}

// A row source over a whole image (tt_train_step_rows): row r is bytes [r * row_bytes, ...);
// `fail_at` >= 0: that row cannot be delivered.
struct ImageRows {
  const uint8_t* image;
  int32_t fail_at;
  int32_t last_row;  // the previous row asked for: rows must come in ascending order, each once
  bool in_order;
};

int image_rows(void* context, int32_t row, int8_t* dst, size_t row_bytes) {
  ImageRows* src = static_cast<ImageRows*>(context);
  if (row <= src->last_row) src->in_order = false;
  src->last_row = row;
  if (row == src->fail_at) return 1;
  memcpy(dst, src->image + static_cast<size_t>(row) * row_bytes, row_bytes);
  return 0;
}

int cmd_train(const char* model_path, const char* images_path, const char* labels_path, long steps) {
  const std::vector<uint8_t> raw = read_file(model_path), images = read_file(images_path),
                             labels = read_file(labels_path);
  Aligned model(raw.data(), raw.size());
  tt_trainer tr;
  Aligned* arena = nullptr;
  tt_status st = train_init_exact(&tr, model, &arena);
  expect_train(st == TT_OK, "train init", &tr);
  if (st != TT_OK) return 1;
  tt_train_info info;
  tt_train_get_info(&tr, &info);
  const size_t n = labels.size() / 4;
  for (long k = 0; k < steps; ++k) {
    int32_t label;
    memcpy(&label, labels.data() + 4 * (k % n), 4);
    float loss = 0.0f;
    const uint8_t* image = images.data() + (k % n) * info.image.bytes;
    ImageRows rows = {image, -1, -1, true};
    // odd steps take the image row by row: the same bytes either way
    st = k % 2 ? tt_train_step_rows(&tr, image_rows, &rows, label, &loss)
               : tt_train_step(&tr, image, info.image.bytes, label, &loss);
    expect_train(st == TT_OK && rows.in_order, k % 2 ? "train step (rows)" : "train step", &tr);
    uint32_t bits;
    memcpy(&bits, &loss, 4);
    printf("loss %ld %08x\n", k, bits);
  }
  for (size_t i = 0; i < tt_parameter_count(&tr); ++i) {
    tt_parameter p;
    tt_parameter_info(&tr, i, &p);
    std::vector<uint8_t> value(p.bytes);
    st = tt_parameter_data(&tr, i, value.data(), value.size());
    expect_train(st == TT_OK, "parameter data", &tr);
    printf("param %.*s %016llx\n", static_cast<int>(p.name_length), p.name,
           static_cast<unsigned long long>(fnv1a(value.data(), value.size())));
  }
  std::vector<float> logits(static_cast<size_t>(info.num_classes)), by_rows(logits.size());
  st = tt_train_predict(&tr, images.data(), info.image.bytes, logits.data(), logits.size());
  expect_train(st == TT_OK, "predict", &tr);
  ImageRows rows = {images.data(), -1, -1, true};
  st = tt_train_predict_rows(&tr, image_rows, &rows, by_rows.data(), by_rows.size());
  expect_train(st == TT_OK && rows.in_order && memcmp(logits.data(), by_rows.data(), 4 * logits.size()) == 0,
               "predict (rows) = predict", &tr);
  delete arena;
  return failures ? 1 : 0;
}

int cmd_train_errors(const char* model_path, const char* image_path) {
  const std::vector<uint8_t> raw = read_file(model_path), image = read_file(image_path);
  Aligned model(raw.data(), raw.size());
  tt_trainer tr;
  float loss, logits[64];
  tt_status st = tt_train_init(&tr, model.data, model.size, nullptr, 0);
  expect_train(st == TT_ARENA_TOO_SMALL && tt_train_arena_needed(&tr) > 0, "empty arena -> TT_ARENA_TOO_SMALL", &tr);
  expect_train(tt_train_step(&tr, image.data(), image.size(), 0, &loss) == TT_NOT_READY, "step before init", &tr);
  const size_t needed = tt_train_arena_needed(&tr);
  {
    Aligned arena(needed);  // `needed` covers any alignment of the arena; 16-aligned needs 15 bytes less
    st = tt_train_init(&tr, model.data, model.size, arena.data, needed - 15 - 1);
    expect_train(st == TT_ARENA_TOO_SMALL, "arena one byte short -> TT_ARENA_TOO_SMALL", &tr);
    Aligned bigger(needed + 1);
    st = tt_train_init(&tr, model.data, model.size, bigger.data + 1, needed);  // misaligned start
    expect_train(st == TT_OK, "misaligned arena start is aligned internally", &tr);
  }
  Aligned arena(needed);
  st = tt_train_init(&tr, model.data, model.size, arena.data, arena.size);
  expect_train(st == TT_OK, "init", &tr);
  tt_train_info info;
  tt_train_get_info(&tr, &info);
  expect_train(tt_train_step(&tr, image.data(), image.size() - 1, 0, &loss) == TT_SHAPE_MISMATCH,
               "short image -> TT_SHAPE_MISMATCH", &tr);
  expect_train(tt_train_step(&tr, image.data(), image.size(), info.num_classes, &loss) == TT_INVALID_ARGUMENT,
               "label = num_classes -> TT_INVALID_ARGUMENT", &tr);
  expect_train(tt_train_step(&tr, image.data(), image.size(), -5, &loss) == TT_INVALID_ARGUMENT,
               "negative label -> TT_INVALID_ARGUMENT", &tr);
  expect_train(tt_train_step(&tr, nullptr, image.size(), 0, &loss) == TT_INVALID_ARGUMENT, "NULL image", &tr);
  expect_train(tt_train_predict(&tr, image.data(), image.size(), logits, static_cast<size_t>(info.num_classes) + 1) ==
                   TT_SHAPE_MISMATCH, "predict with a wrong logits count", &tr);
  expect_train(tt_parameter_info(&tr, 100000, nullptr) == TT_INVALID_ARGUMENT, "parameter index out of range", &tr);
  uint8_t small[2];
  expect_train(tt_parameter_data(&tr, 0, small, sizeof small) == TT_SHAPE_MISMATCH, "parameter buffer too small", &tr);
  ImageRows broken = {image.data(), 3, -1, true};
  expect_train(tt_train_step_rows(&tr, image_rows, &broken, 1, &loss) == TT_INVALID_ARGUMENT,
               "row source failing at row 3 -> TT_INVALID_ARGUMENT", &tr);
  expect_train(tt_train_step_rows(&tr, nullptr, nullptr, 1, &loss) == TT_INVALID_ARGUMENT, "NULL row source", &tr);
  tt_train_get_info(&tr, &info);
  expect_train(info.steps_done == 0, "failed steps changed nothing", &tr);
  expect_train(tt_train_step(&tr, image.data(), image.size(), 1, &loss) == TT_OK, "a step still works", &tr);
  // Every truncation (in steps) is rejected with a message, or (when the cut keeps every
  // byte the training step reads: the tail holds inference-only data) still trains.
  int bad = 0, valid = 0;
  const size_t stride = model.size / 700 + 1;
  for (size_t len = 0; len < model.size; len += stride) {
    Aligned cut(model.data, len);
    tt_trainer t2;
    const tt_status s2 = tt_train_init(&t2, cut.data, len, arena.data, arena.size);
    if (s2 == TT_OK) {
      ++valid;
      if (tt_train_step(&t2, image.data(), image.size(), 1, &loss) != TT_OK) ++bad;
    } else if (!tt_train_error_message(&t2)[0]) {
      ++bad;
    }
  }
  printf("truncations: %d still valid and trained\n", valid);
  expect_train(bad == 0, "every truncation -> an error with a message", nullptr);
  return failures ? 1 : 0;
}

int cmd_train_fuzz(const char* model_path, const char* image_path, long iterations, uint32_t seed, size_t begin,
                   size_t end) {
  const std::vector<uint8_t> raw = read_file(model_path), image = read_file(image_path);
  Aligned arena(4u << 20);
  uint32_t rng = seed ? seed : 1;
  long ok = 0, rejected[8] = {0};
  if (end > raw.size() || begin >= end) {
    printf("FAIL bad range\n");
    return 1;
  }
  for (long i = 0; i < iterations; ++i) {
    Aligned model(raw.data(), raw.size());
    const int edits = 1 + static_cast<int>(xorshift32(&rng) % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = begin + xorshift32(&rng) % (end - begin);
      switch (xorshift32(&rng) % 5) {
        case 0: model.data[at] = static_cast<uint8_t>(xorshift32(&rng)); break;
        case 1: model.data[at] ^= static_cast<uint8_t>(1u << (xorshift32(&rng) % 8)); break;
        case 2: model.data[at] = 0xFF; break;
        case 3: model.data[at] = 0; break;
        default: {
          static const uint32_t kValues[] = {0u, 1u, 2u, 4u, 16u, 0xFFFFFFFFu, 0x7FFFFFFFu, 0x80000000u, 0xFFFFu,
                                             0x10000u, 0xFFFFFFFCu, 0x40000000u};
          const size_t aligned = at & ~static_cast<size_t>(3);
          const uint32_t v = kValues[xorshift32(&rng) % (sizeof kValues / sizeof kValues[0])];
          if (aligned + 4 <= model.size) memcpy(model.data + aligned, &v, 4);
          break;
        }
      }
    }
    tt_trainer tr;
    const tt_status st = tt_train_init(&tr, model.data, model.size, arena.data, arena.size);
    if (st != TT_OK) {
      if (!tt_train_error_message(&tr)[0]) {
        printf("FAIL iteration %ld: status %s without a message\n", i, tt_status_name(st));
        ++failures;
      }
      ++rejected[st & 7];
      continue;
    }
    ++ok;
    // A file that passes validation must train without touching memory it does not own.
    tt_train_info info;
    tt_train_get_info(&tr, &info);
    if (info.image.bytes == image.size()) {
      float loss, logits[256];
      for (int k = 0; k < 2; ++k) tt_train_step(&tr, image.data(), image.size(), k % info.num_classes, &loss);
      if (info.num_classes <= 256)
        tt_train_predict(&tr, image.data(), image.size(), logits, static_cast<size_t>(info.num_classes));
    }
    for (size_t p = 0; p < tt_parameter_count(&tr); ++p) {
      tt_parameter param;
      if (tt_parameter_info(&tr, p, &param) != TT_OK) continue;
      std::vector<uint8_t> value(param.bytes);
      tt_parameter_data(&tr, p, value.data(), value.size());
    }
  }
  printf("train_fuzz: %ld iterations, %ld still valid and ran, rejected: malformed %ld, unsupported %ld, "
         "arena %ld, shape %ld, argument %ld\n",
         iterations, ok, rejected[TT_MALFORMED_MODEL], rejected[TT_UNSUPPORTED], rejected[TT_ARENA_TOO_SMALL],
         rejected[TT_SHAPE_MISMATCH], rejected[TT_INVALID_ARGUMENT]);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IONBF, 0);
  if (argc == 5 && strcmp(argv[1], "run") == 0) return cmd_run(argv[2], argv[3], argv[4]);
  if (argc == 4 && strcmp(argv[1], "errors") == 0) return cmd_errors(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "fuzz") == 0)
    return cmd_fuzz(argv[2], strtol(argv[3], nullptr, 10), static_cast<uint32_t>(strtoul(argv[4], nullptr, 10)));
  if (argc == 6 && strcmp(argv[1], "train") == 0)
    return cmd_train(argv[2], argv[3], argv[4], strtol(argv[5], nullptr, 10));
  if (argc == 4 && strcmp(argv[1], "train_errors") == 0) return cmd_train_errors(argv[2], argv[3]);
  if (argc == 8 && strcmp(argv[1], "train_fuzz") == 0)
    return cmd_train_fuzz(argv[2], argv[3], strtol(argv[4], nullptr, 10),
                          static_cast<uint32_t>(strtoul(argv[5], nullptr, 10)), strtoul(argv[6], nullptr, 10),
                          strtoul(argv[7], nullptr, 10));
  if (argc == 6 && strcmp(argv[1], "powercut") == 0)
    return cmd_powercut(argv[2], argv[3], static_cast<uint32_t>(strtoul(argv[4], nullptr, 10)),
                        static_cast<uint32_t>(strtoul(argv[5], nullptr, 10)));
  if (argc == 6 && strcmp(argv[1], "wrong_model") == 0)
    return cmd_wrong_model(argv[2], argv[3], static_cast<uint32_t>(strtoul(argv[4], nullptr, 10)),
                           static_cast<uint32_t>(strtoul(argv[5], nullptr, 10)));
  if (argc == 4 && strcmp(argv[1], "atomic") == 0) return cmd_atomic(argv[2], argv[3]);
  fprintf(stderr, "usage: runtime_check run MODEL INPUT EXPECTED | errors MODEL INPUT | fuzz MODEL N SEED | "
                  "train MODEL IMAGES LABELS STEPS | train_errors MODEL IMAGE | "
                  "train_fuzz MODEL IMAGE N SEED BEGIN END\n");
  return 2;
}
