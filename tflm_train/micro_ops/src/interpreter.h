// Interpreter internals behind the C API: model validation, sizing, arena
// layout, prepare, placement, invoke.
#ifndef TFLM_TRAIN_MICRO_INTERPRETER_H_
#define TFLM_TRAIN_MICRO_INTERPRETER_H_

#include "runtime.h"

namespace tt {

// `offsets` == nullptr: first-fit placement; otherwise the caller's plan.
tt_status initialize(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len,
                     const uint32_t* offsets, size_t offsets_count);

tt_status invoke(Runtime& rt, Message& msg);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_INTERPRETER_H_
