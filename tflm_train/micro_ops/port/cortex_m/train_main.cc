// Training firmware for QEMU mps2-an386 (Cortex-M4F): trains the model embedded
// in flash for TT_FW_STEPS steps on the embedded samples (or, with
// TT_FW_SYNTHETIC, on images generated in place by xorshift32) with a static
// arena, then runs one inference (tt_train_predict). A plan that streams its image
// (export stream_input) gets it row by row (tt_train_step_rows / tt_train_predict_rows:
// rows copied from flash, or generated, as the runtime asks for them), so the image is
// never whole in RAM. Reports over semihosting:
//   TT init <status> arena_used=<bytes> arena_size=<bytes> <message>
//   TT loss <step> <float32 bits, hex>
//   TT logits <float32 values, little-endian hex bytes>
//   TT stack high_water=<bytes> reserved=<bytes>
//   TT end
// tt_mark(id): ids 0/1 bracket nothing, 2/3 the calibration loop (2001
// instructions), 4/5 tt_train_init, 6+2s / 7+2s training step s, then the
// next pair the inference. With TT_FW_PROFILE, every executed step of the
// runtime adds one reading in between (tt_profile_step_end).
#include <stdint.h>
#include <string.h>

#include "firmware_data.h"  // generated: model, samples, labels, TT_FW_ARENA_BYTES, TT_FW_STEPS
#include "semihosting.h"
#include "tflm_train.h"

extern "C" uint32_t tt_stack_high_water(void);
extern "C" uint32_t tt_stack_reserved(void);
extern "C" void tt_calibrate(void);
extern "C" void tt_mark(uint32_t id);

alignas(16) static uint8_t g_arena[TT_FW_ARENA_BYTES];
static tt_trainer g_trainer;
static float g_logits[TT_FW_CLASSES];

// The image of sample s: from flash, or generated into the trainer's input buffer
// (byte i = top byte of the i-th xorshift32 state from seed 0x9E3779B9 * (s + 1)).
static const void* sample(uint32_t s) {
#ifdef TT_FW_SYNTHETIC
  uint8_t* image = static_cast<uint8_t*>(tt_train_input_buffer(&g_trainer));
  uint32_t x = 0x9E3779B9u * (s + 1);
  if (x == 0) x = 1;
  for (uint32_t i = 0; i < TT_FW_INPUT_BYTES; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    image[i] = static_cast<uint8_t>(x >> 24);
  }
  return image;
#else
  return tt_fw_inputs + (s % TT_FW_SAMPLES) * TT_FW_INPUT_BYTES;
#endif
}

// Rows of sample s for a plan that streams its image: the bytes sample(s) would hold, row by
// row. The runtime asks for rows in ascending order, each once per call, so the synthetic
// generator only moves forward (through rows it skips too).
struct RowFeed {
  uint32_t s;
  int32_t next_row;  // synthetic: the row the generator state `x` is at
  uint32_t x;
};

static int feed_row(void* context, int32_t row, int8_t* dst, size_t row_bytes) {
  RowFeed* f = static_cast<RowFeed*>(context);
#ifdef TT_FW_SYNTHETIC
  if (row < f->next_row) return 1;  // never: rows only go forward
  for (; f->next_row <= row; ++f->next_row)
    for (size_t i = 0; i < row_bytes; ++i) {
      f->x ^= f->x << 13;
      f->x ^= f->x >> 17;
      f->x ^= f->x << 5;
      if (f->next_row == row) dst[i] = static_cast<int8_t>(f->x >> 24);
    }
#else
  memcpy(dst, tt_fw_inputs + (f->s % TT_FW_SAMPLES) * TT_FW_INPUT_BYTES + static_cast<size_t>(row) * row_bytes,
         row_bytes);
#endif
  return 0;
}

static RowFeed row_feed(uint32_t s) {
  RowFeed f = {s, 0, 0x9E3779B9u * (s + 1)};
  if (f.x == 0) f.x = 1;
  return f;
}

#ifdef TT_FW_PROFILE
// Per-op profile: the runtime calls this after every executed step (see
// train_interpreter.cc); each call is one more instruction-count reading.
extern "C" void tt_profile_step_end(uint32_t step) { tt_mark(0x100u + step); }
#endif

static void report_error(void) {
  sh_puts("TT error ");
  sh_puts(tt_train_error_message(&g_trainer));
  sh_puts("\n");
}

int main() {
  tt_calibrate();

  tt_mark(4);
  const tt_status st = tt_train_init(&g_trainer, tt_fw_model, tt_fw_model_len, g_arena, sizeof g_arena);
  tt_mark(5);
  sh_puts("TT init ");
  sh_put_int(st);
  sh_puts(" arena_used=");
  sh_put_uint(st == TT_OK ? static_cast<uint32_t>(tt_train_arena_used(&g_trainer))
                          : static_cast<uint32_t>(tt_train_arena_needed(&g_trainer)));
  sh_puts(" arena_size=");
  sh_put_uint(TT_FW_ARENA_BYTES);
  sh_puts(" ");
  sh_puts(tt_train_error_message(&g_trainer));
  sh_puts("\n");
  int failed = st != TT_OK;
  tt_train_info info;
  const bool rows = !failed && tt_train_get_info(&g_trainer, &info) == TT_OK && info.input_window_rows > 0;
  for (uint32_t s = 0; !failed && s < TT_FW_STEPS; ++s) {
    RowFeed feed = row_feed(s);
    const void* image = rows ? nullptr : sample(s);
    const int32_t label = tt_fw_labels[s % TT_FW_SAMPLES];
    float loss = 0.0f;
    tt_mark(6 + 2 * s);
    const tt_status r = rows ? tt_train_step_rows(&g_trainer, feed_row, &feed, label, &loss)
                             : tt_train_step(&g_trainer, image, TT_FW_INPUT_BYTES, label, &loss);
    tt_mark(7 + 2 * s);
    if (r != TT_OK) {
      report_error();
      failed = 1;
      break;
    }
    sh_puts("TT loss ");
    sh_put_uint(s);
    sh_puts(" ");
    sh_put_hex_bytes(reinterpret_cast<const uint8_t*>(&loss), sizeof loss);
    sh_puts("\n");
  }
  if (!failed) {
    RowFeed feed = row_feed(0);
    const void* image = rows ? nullptr : sample(0);
    tt_mark(6 + 2 * TT_FW_STEPS);
    const tt_status r = rows ? tt_train_predict_rows(&g_trainer, feed_row, &feed, g_logits, TT_FW_CLASSES)
                             : tt_train_predict(&g_trainer, image, TT_FW_INPUT_BYTES, g_logits, TT_FW_CLASSES);
    tt_mark(7 + 2 * TT_FW_STEPS);
    if (r != TT_OK) {
      report_error();
      failed = 1;
    } else {
      sh_puts("TT logits ");
      sh_put_hex_bytes(reinterpret_cast<const uint8_t*>(g_logits), sizeof g_logits);
      sh_puts("\n");
    }
  }
  sh_puts("TT stack high_water=");
  sh_put_uint(tt_stack_high_water());
  sh_puts(" reserved=");
  sh_put_uint(tt_stack_reserved());
  sh_puts("\nTT end\n");
  return failed;
}
