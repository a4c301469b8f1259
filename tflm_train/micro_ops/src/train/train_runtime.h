// The training runtime: one training step of a training .tflite (the training
// graph, its memory plan, scheme and RNG seed in the "tflm_train.train"
// metadata entry, tflm_train/schema/train.fbs) executed from a caller's arena.
//
// Memory (no heap): the caller's arena holds
//   [TrainRuntime][StepRec x steps][planned arena: persistent region | step buffers]
// The planned arena is the plan's: every ARENA / PERSISTENT tensor at its stored
// offset, checked at init (inside the arena, 16-byte aligned, no two buffers alive
// at the same step on overlapping bytes unless the plan made them one buffer).
// Trainable parameters and the RNG state are copied from the model into the
// persistent region once (tt_train_init) and persist across steps; frozen weights
// are read in place from the model bytes (flash).
//
// Kernels (one per training-graph op type, kernels/*.cc) follow the forward
// kernels' shape: `prepare` validates the op, its tensors and its execution mode
// once at init; `eval` runs it. Neither keeps per-op state in RAM: op parameters
// are re-read from the model (flash) at eval, through the same `parse` function
// that `prepare` validated, so the runtime state stays a few bytes per step.
// Numerics: docs/training_graph.md (float32, sequential sums, no FMA: the
// library is compiled with -ffp-contract=off).
#ifndef TFLM_TRAIN_MICRO_TRAIN_TRAIN_RUNTIME_H_
#define TFLM_TRAIN_MICRO_TRAIN_TRAIN_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#include "../../include/tflm_train.h"
#include "../flatbuffer.h"
#include "../message.h"
#include "train_schema.h"

namespace tt {
namespace train {

constexpr int32_t kMaxRank = TT_MAX_RANK;
constexpr uint32_t kArenaAlignment = 16;
// Limits that keep every index computation inside int32.
constexpr int64_t kMaxTensorBytes = int64_t{1} << 30;
constexpr uint32_t kMaxTensors = 0xFFFE;
constexpr uint32_t kMaxOps = 0xFFFE;

inline size_t align_up16(size_t n) { return (n + 15u) & ~static_cast<size_t>(15u); }

// One executed step of the plan, resolved at init.
struct StepRec {
  uint16_t op;       // index into TrainModel.ops
  uint8_t kernel;    // index into the kernel table (kernels/train_registry.cc)
  uint8_t flags;     // bits 0-2: tfmt::Mode; bit 3: a bitmask is written after this step
};
constexpr uint8_t kStepModeMask = 7;
constexpr uint8_t kStepWritesMask = 8;

// Where the image rows of the running call come from (tt_train_step_rows; tt_train_step
// with a streamed plan reads them from the caller's image).
struct RowSource {
  tt_row_source fn = nullptr;
  void* context = nullptr;
  int32_t failed_row = -1;  // the row the source could not deliver (the call fails)
};

// Interpreter state: lives at the start of the caller's arena.
struct TrainRuntime {
  FlatReader model;          // the whole .tflite (for TFLite buffers: constant data)
  // The whole .tflite too, with the TrainModel (inside a metadata buffer) as its root: every
  // Vector a kernel gets (from the metadata or an inference tensor it refers to) is read here.
  FlatReader meta;
  Table root;                // TrainModel
  Vector buffers;            // TFLite Model.buffers
  Vector tensors, ops, op_types, steps;
  Vector infer_tensors;      // TFLite tensors of the inference subgraph (shapes and scales referred to)
  Vector debug_tensor_names; // Debug.tensor_names (export --debug-names), or empty
  StepRec* step_recs = nullptr;
  uint8_t* arena = nullptr;          // planned arena, offset 0
  uint32_t arena_bytes = 0;      // plan.arena_bytes
  uint32_t persistent_bytes = 0; // plan.persistent_bytes
  uint32_t step_count = 0;
  int32_t image = -1, label = -1, loss = -1, logits = -1, rng = -1;  // tensor indices (rng: -1 if no weight update draws)
  int32_t num_classes = 0;
  int32_t mask_begin = 0;        // no bitmask below this tensor index (find_mask scans from it)
  uint8_t head_is_float = 0;
  float logit_absmax = 0.0f;       // largest |logit| seen by train steps (float head: quantizes it for inference)
  uint32_t steps_done = 0;
  int32_t loss_step = -1;        // the step that computes the loss (logits are read right after it)
  int32_t logits_step = -1;      // the step that writes the logits; -1 if predict cannot run
  size_t arena_used = 0;        // bytes of the caller's arena in use (alignment + state + plan)
  uint8_t stream_input = 0;     // plan.stream_input: the image is a window its first band chain fetches rows into
  RowSource rows;               // during a call with a streamed image: its row source
};

// One training tensor, decoded from the file. `check_tensor` (train_file.cc)
// validates every field once at init; afterwards decoding cannot fail.
struct TensorDesc {
  int32_t index = -1;
  Table table;
  uint8_t dtype = 0, kind = 0, storage = 0;
  int32_t rank = 0;
  int32_t dims[kMaxRank] = {0, 0, 0, 0, 0, 0};
  int64_t elements = 0;
  int64_t bytes = 0;          // logical: elements * dtype size
  int32_t buffer = -1;        // TFLite buffer with the constant / initial value
  int64_t offset = -1;        // ARENA / PERSISTENT
  int64_t arena_bytes = 0;
  int32_t source = -1;        // VIRTUAL_PAD / VIRTUAL_CROP
  int32_t pad[4] = {0, 0, 0, 0};  // [top, bottom, left, right]
  int32_t split_axis = -1;
  Vector split_channels;      // int32, ascending
  int32_t mask_of = -1, mask_min = 0, mask_max = 0, mask_producer = -1;
  int32_t first_step = -1, last_step = -1;
  Vector scales;              // float32
  Vector zero_points;         // int32
  int32_t quantized_dim = 0;
  uint8_t* data = nullptr;    // ARENA / PERSISTENT: in the arena; FLASH: in the model; otherwise nullptr
  int32_t dim(int32_t i) const { return i >= 0 && i < rank ? dims[i] : 0; }
};

// An op of the training graph.
struct OpView {
  int32_t index = -1;
  Table table;
  Vector inputs, outputs, attrs;
  uint8_t phase = 0;
  Str type = {nullptr, 0};
};

class TrainContext;
OpView decode_op(TrainRuntime& rt, int32_t op);

struct TrainKernel {
  const char* name;  // the training-graph op type ("CONV_2D", "CONV_2D_UPDATE", ...)
  tt_status (*prepare)(TrainContext& ctx);
  tt_status (*eval)(TrainContext& ctx);
};

// kernels/train_registry.cc
const TrainKernel* train_kernel(uint32_t id);
int32_t find_train_kernel(Str op_type);  // -1 if unknown

// What a kernel sees while it prepares or runs one step.
class TrainContext {
 public:
  TrainContext(TrainRuntime& rt, Message& msg, bool preparing) : rt_(rt), msg_(msg), preparing_(preparing) {}

  // --- the step being prepared / run
  tt_status begin_step(uint32_t k);
  uint32_t step() const { return step_; }
  const OpView& op() const { return op_; }
  uint8_t mode() const { return mode_; }
  int32_t inplace_input() const { return inplace_input_; }
  bool layout_is(const char* name) const;
  // The kernel's part of the step's scratch: the requantization tables of
  // requantization() take the top of it.
  uint32_t scratch_bytes() const { return scratch_bytes_ - reserved_; }
  uint8_t* scratch() const { return scratch_; }
  bool preparing() const { return preparing_; }
  // The step before this one that runs fused into it (mode FUSED), or -1.
  int32_t fused_op() const { return fused_op_; }
  void set_fused_op(int32_t op) { fused_op_ = op; }
  // Look at another op (a fused producer) through the same accessors; restore with the returned view.
  OpView switch_op(int32_t op) {
    const OpView previous = op_;
    op_ = decode_op(rt_, op);
    return previous;
  }
  void restore_op(const OpView& view) { op_ = view; }

  // --- tensors
  int32_t input(int32_t i) const;   // tensor index of op input i (-1 if absent)
  int32_t output(int32_t i) const;
  int32_t input_count() const { return static_cast<int32_t>(op_.inputs.length); }
  int32_t output_count() const { return static_cast<int32_t>(op_.outputs.length); }
  TensorDesc tensor(int32_t t);     // decoded (validated at init)
  // Declare an access of this step (checked against the planned lifetimes while
  // preparing; no-op when running). Virtual tensors resolve to what is touched.
  tt_status reads(const TensorDesc& t);
  tt_status writes(const TensorDesc& t);

  // --- attributes (missing / wrong type: TT_MALFORMED_MODEL naming the attr)
  tt_status attr_int(const char* name, int32_t* value);
  tt_status attr_float(const char* name, float* value);
  tt_status attr_float_or_none(const char* name, float* value, bool* none);
  tt_status attr_string(const char* name, Str* value);
  tt_status attr_ints(const char* name, Vector* values);    // INTS (int32)
  tt_status attr_floats(const char* name, Vector* values);  // FLOATS (float32)
  bool has_attr(const char* name);
  // The requantization of a forward int8 conv-like op (this step's, or the fused
  // producer's after switch_op): `count` (1 or `channels`) int32 multipliers and
  // int32 shifts, computed from the float32 scales as TFLite Micro's Prepare does
  // (multiplier and shift of f64(s_in) * f64(s_w[c]) / f64(s_out)) into the top
  // of the step's scratch (the plan sizes it: 8 bytes per entry); the same op
  // gets the same table within a step. For a FUSED step itself (which runs inside
  // the next step) the values are only checked and the pointers are null.
  tt_status requantization(int32_t channels, const uint8_t** multipliers, const uint8_t** shifts,
                           uint32_t* count);

  FlatReader& meta() { return rt_.meta; }
  TrainRuntime& runtime() { return rt_; }
  Message& message() { return msg_; }

  template <typename... Parts>
  tt_status fail(tt_status status, const Parts&... parts) {
    msg_.clear();
    if (op_.index >= 0) msg_.add_all("step ", step_, ", op ", op_.index, " (", op_.type, "): ");
    msg_.add_all(parts...);
    return status;
  }

 private:
  bool find_attr(const char* name, Table* attr);
  tt_status check_live(const TensorDesc& t, bool write);

  TrainRuntime& rt_;
  Message& msg_;
  bool preparing_;
  uint32_t step_ = 0;
  OpView op_;
  uint8_t mode_ = 0;
  int32_t inplace_input_ = -1;
  Str layout_ = {nullptr, 0};
  uint8_t* scratch_ = nullptr;
  uint32_t scratch_bytes_ = 0;
  int32_t fused_op_ = -1;
  // Requantization tables of this step (its op and a fused producer): op index and offset.
  int32_t table_op_[2] = {-1, -1};
  uint32_t table_offset_[2] = {0, 0};
  uint32_t reserved_ = 0;
};

// --- file access (train_file.cc)
// The TrainModel metadata inside a TFLite model: its bytes, or a message why not.
tt_status locate_metadata(FlatReader& model, const uint8_t** meta, uint32_t* meta_len, Message& msg);
// Decode tensor t (no checks beyond the reader's bounds checks).
TensorDesc decode_tensor(TrainRuntime& rt, int32_t t);
// Every field of tensor t consistent (shape, storage, offsets, buffers, virtual sources, masks, split).
tt_status check_tensor(TrainRuntime& rt, int32_t t, Message& msg);
// A tensor's name for messages and the API: the stored one, the inference tensor's, the
// Debug section's, or empty (version 2 stores names only where the API needs them).
Str tensor_name_of(TrainRuntime& rt, int32_t t);
// The bitmask tensor kept for activation y (mask_of == y), or -1.
int32_t find_mask(TrainRuntime& rt, int32_t y);
bool str_equal(Str a, const char* b);
Str string_of(FlatReader& r, const Vector& v);
// Element i of a vector of strings (empty if out of range or malformed).
Str string_in(FlatReader& r, const Vector& strings, uint32_t i);
// A tensor name for a one-line message: its first 40 characters (TFLite names can be hundreds long).
inline Str short_name(Str s) {
  if (s.length > 40) s.length = 40;
  return s;
}
// The constant bytes of a TFLite buffer (nullptr and 0 if it has none).
const uint8_t* buffer_data(TrainRuntime& rt, int32_t buffer, uint32_t* len);

// --- shared numerics (train_math.cc, docs/training_graph.md)
// xorshift32: x ^= x << 13; x ^= x >> 17; x ^= x << 5; u = f32(x >> 8) * 2^-24.
inline float next_uniform(uint32_t* state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}
// QAS stochastic-rounding update of one int8 weight (draws one uniform):
//   v = f32(w) - (lr * grad) / weight_scale;  w <- clamp(floor(v) + (u < v - floor(v)), -127, 127)
// and w unchanged when v is not finite. Inline: the fused updates call it once per element with
// the RNG state in a register. Below 2^23 in magnitude the truncation through int32 is exact and
// floor(v) = t or t - 1, v - floor(v) exact; from 2^23 on v is an integer (v - floor(v) = 0, so
// the result is v clamped: +-127). floor(-0.0f) = -0.0f or +0.0f cannot change the result.
inline int8_t qas_update_weight(int8_t w, float grad, float lr, float weight_scale, uint32_t* rng) {
  const float step = (lr * grad) / weight_scale;
  const float v = static_cast<float>(w) - step;
  const float u = next_uniform(rng);  // drawn for every updated element, finite or not
  const float a = v < 0.0f ? -v : v;
  if (a < 8388608.0f) {
    const int32_t t = static_cast<int32_t>(v);
    const float tf = static_cast<float>(t);
    const bool below = tf > v;
    const float f = below ? tf - 1.0f : tf;
    int32_t r = (below ? t - 1 : t) + (u < v - f ? 1 : 0);
    if (r < -127) r = -127;
    if (r > 127) r = 127;
    return static_cast<int8_t>(r);
  }
  if (!(a <= 3.40282347e38f)) return w;  // inf or NaN
  return v < 0.0f ? static_cast<int8_t>(-127) : static_cast<int8_t>(127);
}
// b - lround((lr * g) / bias_scale), saturated to int32; non-finite steps leave b.
int32_t qas_update_bias(int32_t b, float grad, float lr, float bias_scale);
// lround of a finite float (half away from zero) with magnitudes from 2^31 on saturated to
// +-2^31: floor(|v| + 0.5) with the sign of v, in float and integer operations only (no
// software double on the Cortex-M4). Below 2^23, |v| = t + (|v| - t) exactly (t its integer
// part; the difference is exact), and the half-way test is exact; from 2^23 every float is
// an integer.
inline int64_t lround_saturated(float v) {
  const float a = v < 0.0f ? -v : v;
  int64_t n;
  if (a < 8388608.0f) {
    const uint32_t t = static_cast<uint32_t>(a);
    n = static_cast<int64_t>(t) + (a - static_cast<float>(t) >= 0.5f ? 1 : 0);
  } else {
    n = a < 2147483648.0f ? static_cast<int64_t>(static_cast<uint32_t>(a)) : int64_t{1} << 31;
  }
  return v < 0.0f ? -n : n;
}

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_TRAIN_RUNTIME_H_
