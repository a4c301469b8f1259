// Core structures of the micro runtime: the model view, tensor and node
// records, the kernel interface and the context kernels see.
//
// Memory: everything below lives in the caller's arena, laid out once by
// tt_init:  [Runtime][TensorRec x T][NodeRec x N][op data ...][planned tensors]
// Constant tensors are never copied: their data pointer points into the model.
//
// Kernels follow TFLite Micro's shape: per operator a `size` step (how many
// bytes of op data and of scratch it needs, so the whole arena requirement is
// known before anything is allocated), a `prepare` step (validates the node and
// computes op data once: multipliers, shifts, clamps) and an `eval` step.
// A new kernel (a backward or update op, a float op) is one file defining a
// `const Kernel` and one line in kernels/registry.cc.
#ifndef TFLM_TRAIN_MICRO_RUNTIME_H_
#define TFLM_TRAIN_MICRO_RUNTIME_H_

#include <stddef.h>
#include <stdint.h>

#include "../include/tflm_train.h"
#include "flatbuffer.h"
#include "message.h"
#include "schema.h"

namespace tt {

constexpr uint32_t kAlignment = 16;      // of every arena block
constexpr uint32_t kNoOffset = TT_NO_OFFSET;
constexpr uint16_t kNoOp = 0xFFFF;
constexpr uint32_t kMaxTensors = 0xFFFE;
constexpr uint32_t kMaxOps = 0xFFFE;

inline size_t align_up(size_t n) { return (n + (kAlignment - 1)) & ~static_cast<size_t>(kAlignment - 1); }

struct Shape {
  const int32_t* dims = nullptr;  // into the model (4-byte aligned, checked)
  int32_t rank = 0;
  // Out of range (or after a read error left the shape empty): 0, never a wild read.
  int32_t dim(int32_t i) const { return (dims && i >= 0 && i < rank) ? dims[i] : 0; }
  int64_t elements() const {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
};

// The parts of the model the runtime reads, located and validated by open_model().
struct Model {
  FlatReader reader;
  Table subgraph;
  Vector buffers, opcodes, tensors, operators, inputs, outputs;

  Table tensor(int32_t t) { return reader.table_in(tensors, static_cast<uint32_t>(t)); }
  Table quantization(int32_t t) { return reader.table_field(tensor(t), schema::kTensorQuantization); }
  Str tensor_name(int32_t t);
};

enum TensorFlags : uint8_t { kConstant = 1, kGraphInput = 2, kGraphOutput = 4 };

struct TensorRec {
  uint8_t* data;          // constants: into the model; others: into the arena, after placement
  const int32_t* dims;    // into the model
  uint32_t bytes;
  uint32_t offset;        // inside the planned region; kNoOffset: holds no arena memory
  uint16_t first_use;     // ops [first_use, last_use] need the value; kNoOp: never used
  uint16_t last_use;
  uint8_t type;
  uint8_t rank;
  uint8_t flags;
  uint8_t reserved;
  Shape shape() const {
    Shape s;
    s.dims = dims;
    s.rank = rank;
    return s;
  }
};

struct Kernel;

struct NodeRec {
  const Kernel* kernel;
  void* op_data;              // kernel's persistent data (size from Kernel::size)
  const uint8_t* inputs;      // int32 tensor indices, in the model (-1: optional input absent)
  const uint8_t* outputs;
  uint16_t input_count;
  uint16_t output_count;
  uint32_t op_table;          // position of the Operator table in the model
  uint32_t scratch_bytes;     // arena memory alive only while this node runs
  uint32_t scratch_offset;    // inside the planned region
  int32_t input(int32_t i) const { return i < input_count ? load_i32(inputs + 4 * i) : -1; }
  int32_t output(int32_t i) const { return i < output_count ? load_i32(outputs + 4 * i) : -1; }
};

struct Runtime {
  Model model;
  TensorRec* tensors = nullptr;  // nullptr while sizing (before the arena is laid out)
  NodeRec* nodes = nullptr;
  uint32_t tensor_count = 0;
  uint32_t node_count = 0;
  uint8_t* planned = nullptr;    // start of the planned region
  uint32_t planned_bytes = 0;
  size_t arena_used = 0;
};

class Context;

struct OpMemory {
  uint32_t op_data_bytes = 0;
  uint32_t scratch_bytes = 0;
};

struct Kernel {
  int32_t builtin;            // schema::BuiltinOperator (kOpCustom for custom kernels)
  const char* custom_name;    // custom kernels: the operator code's custom_code; builtins: nullptr
  const char* name;           // for reports and messages
  tt_status (*size)(Context& ctx, const NodeRec& node, OpMemory* memory);
  tt_status (*prepare)(Context& ctx, NodeRec& node);
  tt_status (*eval)(Context& ctx, const NodeRec& node);
};

// What kernels see. Tensor metadata comes from the model (so it is available
// while sizing, before the arena is laid out); tensor data from the records.
class Context {
 public:
  Context(Runtime& rt, Message& msg) : rt_(rt), msg_(msg) {}

  void set_op(int32_t index, const char* name) {
    op_index_ = index;
    op_name_ = name;
  }

  // --- tensor metadata (validated by tt_init before any kernel runs)
  int32_t tensor_count() const { return static_cast<int32_t>(rt_.tensor_count); }
  bool valid_tensor(int32_t t) const { return t >= 0 && t < tensor_count(); }
  Shape shape(int32_t t);
  uint8_t type(int32_t t);
  uint32_t bytes(int32_t t);
  bool is_constant(int32_t t);
  const uint8_t* constant_data(int32_t t);  // nullptr unless constant
  float scale(int32_t t);                   // first scale, 0 if not quantized
  int32_t zero_point(int32_t t);            // first zero point, 0 if not quantized
  uint32_t scale_count(int32_t t);
  int32_t quantized_dimension(int32_t t);
  // Per-channel parameters: read the vectors once, then index them
  // (reader().f32_in(q.scales, c), reader().i64_in(q.zero_points, c)).
  struct Quantization {
    Vector scales;       // float32
    Vector zero_points;  // int64
  };
  Quantization quantization(int32_t t);
  float scale_at(int32_t t, uint32_t i);
  Str tensor_name(int32_t t) { return rt_.model.tensor_name(t); }

  // The node's builtin options table, which must be of `expected_type`
  // (schema::BuiltinOptionsType). Absent: every field reads its default.
  Table options(const NodeRec& node, uint8_t expected_type);
  FlatReader& reader() { return rt_.model.reader; }

  // --- runtime data (eval)
  uint8_t* data(int32_t t) { return rt_.tensors[t].data; }
  uint8_t* scratch(const NodeRec& node) { return rt_.planned + node.scratch_offset; }

  // --- errors: "op 3 (CONV_2D): <parts>"
  template <typename... Parts>
  tt_status fail(tt_status status, const Parts&... parts) {
    msg_.clear();
    if (op_index_ >= 0) msg_.add_all("op ", op_index_, " (", op_name_ ? op_name_ : "?", "): ");
    msg_.add_all(parts...);
    return status;
  }
  Message& message() { return msg_; }
  Runtime& runtime() { return rt_; }

 private:
  Runtime& rt_;
  Message& msg_;
  int32_t op_index_ = -1;
  const char* op_name_ = nullptr;
};

// kernels/registry.cc: the kernel for a builtin code or custom name, nullptr if none.
const Kernel* find_kernel(int32_t builtin, Str custom_name);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_RUNTIME_H_
