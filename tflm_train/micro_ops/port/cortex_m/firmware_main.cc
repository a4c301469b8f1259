// Firmware for QEMU mps2-an386 (Cortex-M4F): runs the model embedded in flash
// on the embedded input samples with a static arena, and reports over
// semihosting, one "TT ..." line per fact:
//   TT init <status> arena_used=<bytes> arena_size=<bytes> <message>
//   TT output <sample> <hex bytes>
//   TT stack high_water=<bytes> reserved=<bytes>
//   TT end
// tt_mark(id) is where the QEMU instruction-count plugin takes readings:
// ids 0/1 bracket nothing (the marker's own cost), 2/3 a calibration loop of
// exactly 2001 instructions, 4/5 tt_init, 6+2s / 7+2s inference of sample s.
#include <stdint.h>

#include "firmware_data.h"  // generated: the model, the samples, TT_FW_ARENA_BYTES
#include "semihosting.h"
#include "tflm_train.h"

extern "C" uint32_t tt_stack_high_water(void);
extern "C" uint32_t tt_stack_reserved(void);

alignas(16) static uint8_t g_arena[TT_FW_ARENA_BYTES];
static uint8_t g_output[TT_FW_OUTPUT_BYTES];
static tt_interpreter g_interpreter;

extern "C" void tt_calibrate(void);
extern "C" void tt_mark(uint32_t id);

int main() {
  tt_calibrate();

  tt_mark(4);
  const tt_status st = tt_init(&g_interpreter, tt_fw_model, tt_fw_model_len, g_arena, sizeof g_arena);
  tt_mark(5);
  sh_puts("TT init ");
  sh_put_int(st);
  sh_puts(" arena_used=");
  sh_put_uint(st == TT_OK ? static_cast<uint32_t>(tt_arena_used(&g_interpreter))
                          : static_cast<uint32_t>(tt_arena_needed(&g_interpreter)));
  sh_puts(" arena_size=");
  sh_put_uint(TT_FW_ARENA_BYTES);
  sh_puts(" ");
  sh_puts(tt_error_message(&g_interpreter));
  sh_puts("\n");
  int failed = st != TT_OK;
  for (uint32_t s = 0; !failed && s < TT_FW_SAMPLES; ++s) {
    tt_mark(6 + 2 * s);
    const tt_status r = tt_infer(&g_interpreter, tt_fw_inputs + s * TT_FW_INPUT_BYTES, TT_FW_INPUT_BYTES, g_output,
                                 sizeof g_output);
    tt_mark(7 + 2 * s);
    if (r != TT_OK) {
      sh_puts("TT error ");
      sh_puts(tt_error_message(&g_interpreter));
      sh_puts("\n");
      failed = 1;
      break;
    }
    sh_puts("TT output ");
    sh_put_uint(s);
    sh_puts(" ");
    sh_put_hex_bytes(g_output, sizeof g_output);
    sh_puts("\n");
  }
  sh_puts("TT stack high_water=");
  sh_put_uint(tt_stack_high_water());
  sh_puts(" reserved=");
  sh_put_uint(tt_stack_reserved());
  sh_puts("\nTT end\n");
  return failed;
}
