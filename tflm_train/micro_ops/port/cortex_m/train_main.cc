// Training firmware for QEMU mps2-an386 (Cortex-M4F): trains the model embedded
// in flash for TT_FW_STEPS steps on the embedded samples (or, with
// TT_FW_SYNTHETIC, on images generated in place by xorshift32) with a static
// arena, then runs one inference (tt_train_predict). Reports over semihosting:
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
  for (uint32_t s = 0; !failed && s < TT_FW_STEPS; ++s) {
    const void* image = sample(s);
    float loss = 0.0f;
    tt_mark(6 + 2 * s);
    const tt_status r = tt_train_step(&g_trainer, image, TT_FW_INPUT_BYTES, tt_fw_labels[s % TT_FW_SAMPLES], &loss);
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
    const void* image = sample(0);
    tt_mark(6 + 2 * TT_FW_STEPS);
    const tt_status r = tt_train_predict(&g_trainer, image, TT_FW_INPUT_BYTES, g_logits, TT_FW_CLASSES);
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
