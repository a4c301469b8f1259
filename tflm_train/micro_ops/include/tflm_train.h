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
  TT_INTERNAL_ERROR = 7,
  TT_NUMERIC_ERROR = 8,     /* tt_train_step: non-finite loss or logits; the step changed nothing */
  TT_STORAGE_ERROR = 9,     /* a tt_storage operation failed, or read back other bytes than written */
  TT_NO_CHECKPOINT = 10     /* no valid checkpoint of this model in the storage (empty, corrupted, another model) */
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
  TT_INT8 = 9,
  TT_UINT32 = 15
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

/* ------------------------------------------------------------------ training
 *
 * A training .tflite (tflm_train.export) carries the training step in its
 * "tflm_train.train" metadata: the training graph, its memory plan, the sparse
 * scheme, QAS tables and the RNG seed (docs/training_file_format.md). The
 * trainer runs that step on one sample at a time:
 *
 *     static uint8_t arena[200 * 1024] __attribute__((aligned(16)));
 *     tt_trainer tr;
 *     if (tt_train_init(&tr, model, model_len, arena, sizeof arena) != TT_OK)
 *         puts(tt_train_error_message(&tr));      // e.g. "arena too small: ..."
 *     float loss;
 *     tt_train_step(&tr, image, image_len, label, &loss);
 *     float logits[10];
 *     tt_train_predict(&tr, image, image_len, logits, 10);
 *
 * The arena holds the runtime state and the plan's arena: trainable parameters
 * (copied from the model once, updated in place by every step) and the RNG
 * state persist across steps; frozen weights are read from the model bytes,
 * which must outlive the trainer. Same model, seed and samples give the same
 * parameter bytes as the NumPy reference trainer (tflm_train.training).
 */
typedef struct tt_trainer {
  void* impl;            /* runtime state inside the arena; NULL unless tt_train_init succeeded */
  size_t arena_needed;   /* after TT_ARENA_TOO_SMALL: an arena size that is large enough */
  tt_status status;      /* status of the last call */
  char message[TT_MESSAGE_CAPACITY];
} tt_trainer;

typedef struct tt_train_info {
  tt_tensor_info image;        /* the int8 input */
  int32_t num_classes;
  int32_t head_is_float;       /* 1: float32 head (float logits); 0: int8 head */
  uint32_t op_count;           /* ops of the training graph (= steps of the plan) */
  uint32_t parameter_count;    /* trainable parameters + RNG state (tt_parameter_*) */
  size_t plan_arena_bytes;     /* the plan's arena, persistent region included */
  size_t persistent_bytes;     /* its persistent region: trained parameters + RNG state */
  size_t runtime_state_bytes;  /* interpreter state in front of the plan's arena */
  uint32_t steps_done;         /* successful tt_train_step calls */
  uint32_t rng_state;          /* current xorshift32 state (0 if nothing draws) */
  float logit_absmax;          /* largest |logit| seen by the steps (float head) */
  int32_t input_window_rows;   /* the plan streams the image (tt_train_step_rows): rows its window
                                  holds in the arena; 0: the image is held whole */
} tt_train_info;

typedef struct tt_parameter {
  const char* name;            /* in the model, NOT NUL-terminated: name_length bytes */
  uint32_t name_length;
  int32_t kind;                /* 0: trainable parameter, 1: state (the RNG) */
  int32_t type;                /* TT_INT8, TT_INT32, TT_FLOAT32, TT_UINT32 */
  int32_t rank;
  int32_t dims[TT_MAX_RANK];
  size_t bytes;                /* the whole tensor (tt_parameter_data) */
  size_t sram_bytes;           /* held in SRAM: only the trained channels of a split weight */
} tt_parameter;

/* 1 if `model` is a TFLite flatbuffer with a training metadata entry (valid or not), else 0. */
int tt_is_training_model(const uint8_t* model, size_t model_len);

/* Validate the training model and its plan, lay out the arena, load the initial
 * parameters. On TT_ARENA_TOO_SMALL, tt_train_arena_needed() is exact. */
tt_status tt_train_init(tt_trainer* tr, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len);

/* One SGD step on one sample: int8 image (the model's input bytes), label in
 * [0, num_classes); `loss` (may be NULL) gets the loss before the update.
 *
 * Atomic: a step that fails changes no parameter byte, nor the RNG state, the
 * step count or the float head's logit range; the trainer stays usable.
 *   - wrong image length, label outside [0, num_classes), NULL image: refused
 *     before anything runs (TT_SHAPE_MISMATCH / TT_INVALID_ARGUMENT);
 *   - non-finite logits (float head) or loss: TT_NUMERIC_ERROR, detected right
 *     after the loss step. Init refuses a plan in which any step up to the loss
 *     step writes a persistent tensor, so no parameter or RNG draw happens first.
 * Limits: the step's activation buffers and the input buffer
 * (tt_train_input_buffer) are scratch and may have changed. Only the loss and
 * the logits are checked: a step with a finite loss whose update drives a float
 * head weight to inf/NaN (a learning rate near float32's range) succeeds, and
 * the next step then fails with TT_NUMERIC_ERROR. Kernels cannot fail after
 * init (every op was validated there); TT_INTERNAL_ERROR would be a bug. */
tt_status tt_train_step(tt_trainer* tr, const void* image, size_t image_len, int32_t label, float* loss);

/* The trainer's input (image) tensor in the arena, for zero-copy use: write the image
 * there and pass this pointer to tt_train_step / tt_train_predict (no copy is made).
 * A step overwrites it (in-place execution), so write the image before every call.
 * NULL when the plan streams the image (it is never whole in the arena). */
void* tt_train_input_buffer(tt_trainer* tr);

/* ------------------------------------------------------------------ images in rows
 *
 * A caller that has the image row by row (camera DMA, rows read from flash) hands the
 * trainer a row source instead of the whole image. Row `row` of the int8 input
 * (1xHxWxC: H rows of W*C bytes) goes to `dst` (`row_bytes` = W*C); return 0, or non-zero
 * if the row cannot be delivered (the call then fails with TT_INVALID_ARGUMENT, having
 * changed nothing: rows are read in the forward pass, before the loss).
 *
 * With a plan exported with stream_input (tflm_train.export(..., stream_input=True)) the
 * image never sits whole in the arena: its first band chain asks for the rows it needs,
 * in ascending order, each once per call, into a window of info.input_window_rows rows
 * (rows no output reads, e.g. below a VALID convolution's last window, may be skipped).
 * With any other plan the trainer asks for rows 0 .. H-1 first, into its input tensor.
 * tt_train_step / tt_train_predict also work with a streamed plan (rows copied from the
 * image); results are byte-identical either way. */
typedef int (*tt_row_source)(void* context, int32_t row, int8_t* dst, size_t row_bytes);

tt_status tt_train_step_rows(tt_trainer* tr, tt_row_source rows, void* context, int32_t label, float* loss);
tt_status tt_train_predict_rows(tt_trainer* tr, tt_row_source rows, void* context, float* logits, size_t count);

/* Forward pass with the current parameters: the real-valued logits
 * (`count` = num_classes; int8 logits are dequantized). */
tt_status tt_train_predict(tt_trainer* tr, const void* image, size_t image_len, float* logits, size_t count);

tt_status tt_train_get_info(tt_trainer* tr, tt_train_info* info);

/* Trainable parameters and state, in the training graph's tensor order. */
size_t tt_parameter_count(const tt_trainer* tr);
tt_status tt_parameter_info(tt_trainer* tr, size_t index, tt_parameter* info);
/* The whole tensor's current value (`len` must equal info.bytes). */
tt_status tt_parameter_data(tt_trainer* tr, size_t index, void* data, size_t len);
/* Replace parameter `index` with `len` bytes laid out as tt_parameter_data gives them (the
 * whole tensor): a server's aggregate, a backup. A split weight's frozen channels must hold
 * their model bytes (TT_INVALID_ARGUMENT otherwise); nothing is written unless all is valid. */
tt_status tt_parameter_set_data(tt_trainer* tr, size_t index, const void* data, size_t len);

size_t tt_train_arena_used(const tt_trainer* tr);
size_t tt_train_arena_needed(const tt_trainer* tr);
const char* tt_train_error_message(const tt_trainer* tr);

/* ------------------------------------------------------------------ checkpoints
 *
 * Trained parameters survive a reset: tt_checkpoint_save writes the trainer's
 * state (every trained parameter byte held in SRAM, the RNG state, the step
 * count, the float head's logit range) to flash-like storage the caller
 * describes; tt_checkpoint_restore loads the newest valid one after a restart.
 *
 * The storage is split into two slots (A: first half, B: second half, each a
 * whole number of pages). A slot is [header | payload]; the header holds
 * "TTCK", the format version, the model's CRC32 and length (the model hash),
 * a sequence number, the payload length and a CRC32 over header fields and
 * payload. A save erases the slot NOT holding the newest valid checkpoint,
 * programs the payload, then the header last, and reads the slot back. Power
 * lost at any point of a save leaves the other slot untouched: restore then
 * gives the previous checkpoint, byte for byte, or the new one if the header
 * was complete - never a mix (tests/test_micro_sanitizers.py cuts power at
 * every erase and program, and inside page writes).
 *
 * Storage semantics (MCU flash): erase sets a page to `erased_value`; program
 * writes `len` bytes at `offset`, both multiples of `write_size`, into erased
 * bytes only; read may read any range. Callbacks return 0 on success. */
enum { TT_CHECKPOINT_VERSION = 1, TT_CHECKPOINT_HEADER_BYTES = 32, TT_CHECKPOINT_MAX_WRITE_SIZE = 256 };

typedef struct tt_storage {
  void* context;            /* passed to the callbacks */
  uint32_t size;            /* bytes available (both slots) */
  uint32_t page_size;       /* erase unit; a multiple of write_size */
  uint32_t write_size;      /* program granularity: 1 .. TT_CHECKPOINT_MAX_WRITE_SIZE, a power of two */
  uint8_t erased_value;     /* what an erased byte reads as (0xFF for NOR flash) */
  int (*erase_page)(void* context, uint32_t offset);
  int (*program)(void* context, uint32_t offset, const void* data, uint32_t len);
  int (*read)(void* context, uint32_t offset, void* data, uint32_t len);
} tt_storage;

typedef struct tt_checkpoint_info {
  uint32_t sequence;        /* of the restored / saved checkpoint (1 = first save) */
  uint32_t slot;            /* 0: A, 1: B */
  uint32_t payload_bytes;
  uint32_t steps_done;      /* the trainer's step count stored in it */
} tt_checkpoint_info;

/* Storage bytes a trainer's checkpoints need (both slots) for this page / write size; 0 on bad sizes. */
size_t tt_checkpoint_storage_bytes(tt_trainer* tr, uint32_t page_size, uint32_t write_size);

/* Save the trainer's state into the slot not holding the newest valid checkpoint
 * (info may be NULL). TT_STORAGE_ERROR: a callback failed or the read-back differs;
 * the newest valid checkpoint before the call is then still intact. */
tt_status tt_checkpoint_save(tt_trainer* tr, const tt_storage* storage, tt_checkpoint_info* info);

/* Load the newest valid checkpoint of this trainer's model. TT_NO_CHECKPOINT (message:
 * why each slot was refused: empty, bad CRC, another model, other format version)
 * leaves the trainer unchanged. A storage read error while the verified payload is
 * copied in (the payload is read twice: verified, then copied) can leave a mix:
 * TT_STORAGE_ERROR, and the trainer refuses to step until a restore succeeds or it
 * is re-initialized. */
tt_status tt_checkpoint_restore(tt_trainer* tr, const tt_storage* storage, tt_checkpoint_info* info);

/* A RAM-backed tt_storage with NOR-flash semantics (erase to erased_value, program
 * only clears bits and only in whole write units): the host binding's file / memory
 * checkpoints and the tests' power-cut simulation. `memory` holds `size` bytes. */
typedef struct tt_ram_flash {
  uint8_t* memory;
  uint32_t size, page_size, write_size;
  uint32_t erase_count, program_count;  /* operations so far */
} tt_ram_flash;
void tt_ram_flash_storage(tt_ram_flash* flash, uint8_t* memory, uint32_t size, uint32_t page_size,
                          uint32_t write_size, tt_storage* storage);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* TFLM_TRAIN_H_ */
