/*
 * tflm-train micro runtime: the C API.
 *
 * The one interface of the C++ runtime for the Python binding, the Cortex-M
 * firmware and Arduino sketches. No heap, no exceptions: every buffer the
 * runtime needs comes from one caller-provided arena; the model bytes are read
 * in place (they may stay in flash) and must outlive the interpreter.
 *
 * Typical use:
 *
 *     static uint8_t arena[100 * 1024] __attribute__((aligned(16)));
 *     tt_interpreter it;
 *     if (tt_init(&it, model, model_len, arena, sizeof arena) != TT_OK)
 *         puts(tt_error_message(&it));
 *     tt_infer(&it, input, input_len, output, output_len);
 *
 * Every call returns a status; on failure tt_error_message() says what went
 * wrong in one line (which op, which tensor, how many bytes).
 */
#ifndef TFLM_TRAIN_H_
#define TFLM_TRAIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tt_status {
  TT_OK = 0,
  TT_MALFORMED_MODEL = 1,   /* not a valid TFLite flatbuffer, or inconsistent contents */
  TT_UNSUPPORTED = 2,       /* an operator, type or option this runtime does not implement */
  TT_ARENA_TOO_SMALL = 3,   /* see tt_arena_needed() */
  TT_SHAPE_MISMATCH = 4,    /* input/output buffer size, or tensor shapes that do not fit together */
  TT_INVALID_ARGUMENT = 5,  /* NULL pointer, index out of range, misaligned buffer */
  TT_NOT_READY = 6,         /* the interpreter was not (successfully) initialized */
  TT_INTERNAL_ERROR = 7
} tt_status;

enum { TT_MESSAGE_CAPACITY = 200, TT_MAX_RANK = 6 };

/* Caller-allocated interpreter handle. Its runtime state lives in the arena. */
typedef struct tt_interpreter {
  void* impl;            /* runtime state inside the arena; NULL unless tt_init succeeded */
  size_t arena_needed;   /* after TT_ARENA_TOO_SMALL: an arena size that is large enough */
  tt_status status;      /* status of the last call */
  char message[TT_MESSAGE_CAPACITY];
} tt_interpreter;

/* TFLite TensorType codes of the types the runtime handles. */
enum {
  TT_FLOAT32 = 0,
  TT_INT32 = 2,
  TT_UINT8 = 3,
  TT_INT64 = 4,
  TT_INT16 = 7,
  TT_INT8 = 9
};

typedef struct tt_tensor_info {
  int32_t type;                /* TT_INT8, TT_FLOAT32, ... */
  int32_t rank;
  int32_t dims[TT_MAX_RANK];
  size_t bytes;
  float scale;                 /* 0 when the tensor is not quantized */
  int32_t zero_point;
} tt_tensor_info;

/* Offset value meaning "this tensor gets no arena memory" in tt_init_planned(). */
#define TT_NO_OFFSET 0xFFFFFFFFu

/*
 * Parse the model (subgraph 0), resolve and prepare every operator and place
 * all non-constant tensors in the arena with a lifetime-aware first-fit plan.
 * `model` must be 4-byte aligned; `arena` is aligned internally. On
 * TT_ARENA_TOO_SMALL, tt_arena_needed() gives a size to retry with (exact when
 * the runtime state fits, otherwise an upper bound).
 */
tt_status tt_init(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena,
                  size_t arena_len);

/*
 * As tt_init, but tensors live at caller-planned offsets: `offsets[i]` is the
 * byte offset of tensor i of subgraph 0 inside the planned region (one entry per
 * tensor; constants and unused tensors ignore theirs; TT_NO_OFFSET for none).
 * The plan is checked: every buffer 16-byte aligned, and no two buffers that are
 * alive at the same time may overlap. Op scratch memory follows the plan.
 */
tt_status tt_init_planned(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena,
                          size_t arena_len, const uint32_t* offsets, size_t offsets_count);

/* Single-input, single-output models: copy `in` to input 0, run, copy output 0 to `out`. */
tt_status tt_infer(tt_interpreter* it, const void* in, size_t in_len, void* out, size_t out_len);

/* General form: set inputs, invoke, read outputs. Lengths must equal the tensor's bytes. */
tt_status tt_set_input(tt_interpreter* it, size_t index, const void* data, size_t len);
tt_status tt_invoke(tt_interpreter* it);
tt_status tt_get_output(tt_interpreter* it, size_t index, void* data, size_t len);

/* Zero-copy access to the input/output tensors in the arena (NULL on a bad index). */
void* tt_input_buffer(tt_interpreter* it, size_t index);
const void* tt_output_buffer(const tt_interpreter* it, size_t index);

size_t tt_input_count(const tt_interpreter* it);
size_t tt_output_count(const tt_interpreter* it);
tt_status tt_input_info(tt_interpreter* it, size_t index, tt_tensor_info* info);
tt_status tt_output_info(tt_interpreter* it, size_t index, tt_tensor_info* info);

/* Operators in execution order (for reports). NULL on a bad index. */
size_t tt_op_count(const tt_interpreter* it);
const char* tt_op_name(const tt_interpreter* it, size_t index);

/* Arena bytes in use after a successful tt_init (runtime state + op data + tensors). */
size_t tt_arena_used(const tt_interpreter* it);
/* After TT_ARENA_TOO_SMALL: bytes to retry with. */
size_t tt_arena_needed(const tt_interpreter* it);

/* One-line description of the last error ("" after success). */
const char* tt_error_message(const tt_interpreter* it);
const char* tt_status_name(tt_status status);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* TFLM_TRAIN_H_ */
