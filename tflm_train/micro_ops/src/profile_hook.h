#ifndef TFLM_TRAIN_MICRO_PROFILE_HOOK_H_
#define TFLM_TRAIN_MICRO_PROFILE_HOOK_H_

#include <stdint.h>

// Profiling hook (like TFLite Micro's MicroProfiler, without a heap or a clock):
// when a port defines it, both interpreters call it after every executed op
// (training: every executed step of the plan) with its index. The Cortex-M4
// profile firmware turns it into an instruction-count marker; the host binding
// (port/python) into a thread CPU-time reading. Weak and undefined elsewhere
// (the address is then null and the call is skipped).
extern "C" __attribute__((weak)) void tt_profile_step_end(uint32_t step);

#endif  // TFLM_TRAIN_MICRO_PROFILE_HOOK_H_
