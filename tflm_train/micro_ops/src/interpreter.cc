#include "interpreter.h"

#include <new>

#include "arena_poison.h"
#include "planner.h"
#include "profile_hook.h"

namespace tt {

namespace {

constexpr int32_t kMaxRank = TT_MAX_RANK;
constexpr int64_t kMaxTensorBytes = int64_t{1} << 31;

tt_status reader_error(const FlatReader& r, Message& msg) {
  msg.clear();
  msg.add_all("malformed model: ", r.error(), " (at byte ", r.error_pos(), ")");
  return TT_MALFORMED_MODEL;
}

tt_status open_model(Model* m, const uint8_t* data, size_t len, Message& msg) {
  if (len < 8) {
    msg.add_all("malformed model: ", static_cast<unsigned long long>(len),
                " bytes is too short for a TFLite flatbuffer");
    return TT_MALFORMED_MODEL;
  }
  if (len > 0x7FFFFFFFu) {
    msg.add("unsupported: model larger than 2 GB");
    return TT_UNSUPPORTED;
  }
  for (int i = 0; i < 4; ++i) {
    if (data[4 + i] != static_cast<uint8_t>(schema::kFileIdentifier[i])) {
      msg.add("malformed model: wrong file identifier \"");
      for (int k = 0; k < 4; ++k) {
        const char c = static_cast<char>(data[4 + k]);
        msg.add((c >= 32 && c < 127) ? c : '?');
      }
      msg.add("\" (expected \"TFL3\"): not a TFLite flatbuffer");
      return TT_MALFORMED_MODEL;
    }
  }
  m->reader = FlatReader(data, static_cast<uint32_t>(len));
  FlatReader& r = m->reader;
  const Table root = r.root();
  const Vector subgraphs = r.vector_field(root, schema::kModelSubgraphs, 4);
  if (r.failed()) return reader_error(r, msg);
  if (subgraphs.length == 0) {
    msg.add("malformed model: no subgraph");
    return TT_MALFORMED_MODEL;
  }
  m->subgraph = r.table_in(subgraphs, 0);
  m->buffers = r.vector_field(root, schema::kModelBuffers, 4);
  m->opcodes = r.vector_field(root, schema::kModelOperatorCodes, 4);
  m->tensors = r.vector_field(m->subgraph, schema::kSubGraphTensors, 4);
  m->operators = r.vector_field(m->subgraph, schema::kSubGraphOperators, 4);
  m->inputs = r.vector_field(m->subgraph, schema::kSubGraphInputs, 4);
  m->outputs = r.vector_field(m->subgraph, schema::kSubGraphOutputs, 4);
  if (r.failed()) return reader_error(r, msg);
  if (m->tensors.length > kMaxTensors || m->operators.length > kMaxOps) {
    msg.add_all("unsupported: ", m->tensors.length, " tensors and ", m->operators.length,
                " operators (at most 65534 each)");
    return TT_UNSUPPORTED;
  }
  return TT_OK;
}

// "tensor 5 (name)" in messages.
void add_tensor_ref(Message& msg, Model& m, int32_t t) { msg.add_all("tensor ", t, " (", m.tensor_name(t), ")"); }

template <typename... Parts>
tt_status tensor_error(Message& msg, Model& m, int32_t t, tt_status status, const Parts&... parts) {
  msg.clear();
  msg.add(status == TT_MALFORMED_MODEL ? "malformed model: " : "unsupported: ");
  add_tensor_ref(msg, m, t);
  msg.add(": ");
  msg.add_all(parts...);
  return status;
}

// Everything about one tensor that must hold before any kernel looks at it.
tt_status check_tensor(Model& m, int32_t t, Message& msg) {
  FlatReader& r = m.reader;
  const Table tensor = m.tensor(t);
  const Vector shape = r.vector_field(tensor, schema::kTensorShape, 4);
  const uint8_t type = r.u8(tensor, schema::kTensorType, schema::kFloat32);
  const uint32_t buffer_index = r.u32(tensor, schema::kTensorBuffer, 0);
  r.string_field(tensor, schema::kTensorName);
  const bool is_variable = r.u8(tensor, schema::kTensorIsVariable, 0) != 0;
  const Table sparsity = r.table_field(tensor, schema::kTensorSparsity);
  const Table quant = r.table_field(tensor, schema::kTensorQuantization);
  const Vector scales = r.vector_field(quant, schema::kQuantScale, 4);
  const Vector zero_points = r.vector_field(quant, schema::kQuantZeroPoint, 8);
  r.i32(quant, schema::kQuantizedDimension, 0);
  if (r.failed()) return reader_error(r, msg);

  if (shape.length > static_cast<uint32_t>(kMaxRank))
    return tensor_error(msg, m, t, TT_UNSUPPORTED, "rank ", shape.length, " (at most 6)");
  if (shape.length && (reinterpret_cast<uintptr_t>(r.bytes(shape)) & 3u) != 0)
    return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "shape vector is not 4-byte aligned");
  int64_t elements = 1;
  for (uint32_t i = 0; i < shape.length; ++i) {
    const int32_t d = r.i32_in(shape, i);
    if (d < 0) return tensor_error(msg, m, t, TT_UNSUPPORTED, "dynamic or negative dimension ", d);
    elements *= d;
    if (elements > kMaxTensorBytes) return tensor_error(msg, m, t, TT_UNSUPPORTED, "more than 2^31 elements");
  }
  const uint32_t elem_size = schema::type_size(type);
  const int64_t bytes = elements * elem_size;
  if (bytes > kMaxTensorBytes) return tensor_error(msg, m, t, TT_UNSUPPORTED, "larger than 2 GB");
  if (is_variable) return tensor_error(msg, m, t, TT_UNSUPPORTED, "variable tensors are not supported");
  if (sparsity.present()) return tensor_error(msg, m, t, TT_UNSUPPORTED, "sparse tensors are not supported");
  for (uint32_t i = 0; i < zero_points.length; ++i) {
    const int64_t zp = r.i64_in(zero_points, i);
    if (zp < -2147483647 - 1 || zp > 2147483647)
      return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "zero point out of int32 range");
  }
  (void)scales;

  if (buffer_index >= m.buffers.length && buffer_index != 0)
    return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "buffer index ", buffer_index, " out of range (",
                        m.buffers.length, " buffers)");
  if (buffer_index != 0) {
    const Table buffer = r.table_in(m.buffers, buffer_index);
    const Vector data = r.vector_field(buffer, schema::kBufferData, 1);
    const uint64_t offset = r.u64(buffer, schema::kBufferOffset, 0);
    const uint64_t size = r.u64(buffer, schema::kBufferSize, 0);
    if (r.failed()) return reader_error(r, msg);
    uint64_t have = data.length;
    if (!data.length && offset > 1) {
      if (offset > r.size() || size > r.size() - offset)
        return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "external buffer outside the file");
      have = size;
    }
    if (have != 0 && elem_size == 0)
      return tensor_error(msg, m, t, TT_UNSUPPORTED, "constant of type ", schema::type_name(type));
    if (have != 0 && have != static_cast<uint64_t>(bytes))
      return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "buffer holds ", static_cast<unsigned long long>(have),
                          " bytes, its shape and type need ", static_cast<long long>(bytes));
  }
  return TT_OK;
}

// Op index `op` of the model as a NodeRec (op_data and scratch left empty).
tt_status read_node(Model& m, uint32_t op, NodeRec* node, Message& msg) {
  FlatReader& r = m.reader;
  const Table table = r.table_in(m.operators, op);
  const uint32_t opcode_index = r.u32(table, schema::kOperatorOpcodeIndex, 0);
  const Vector inputs = r.vector_field(table, schema::kOperatorInputs, 4);
  const Vector outputs = r.vector_field(table, schema::kOperatorOutputs, 4);
  if (r.failed()) return reader_error(r, msg);
  if (opcode_index >= m.opcodes.length) {
    msg.add_all("malformed model: op ", op, " has operator code index ", opcode_index, " (model has ",
                m.opcodes.length, " codes)");
    return TT_MALFORMED_MODEL;
  }
  const Table code = r.table_in(m.opcodes, opcode_index);
  const int32_t deprecated = r.i8(code, schema::kOpCodeDeprecatedBuiltin, 0);
  const int32_t builtin_field = r.i32(code, schema::kOpCodeBuiltin, 0);
  const Vector custom = r.string_field(code, schema::kOpCodeCustomCode);
  if (r.failed()) return reader_error(r, msg);
  // Models before schema v3a only fill the int8 field; later ones both.
  const int32_t builtin = deprecated > builtin_field ? deprecated : builtin_field;
  Str custom_name;
  custom_name.data = reinterpret_cast<const char*>(r.bytes(custom));
  custom_name.length = custom.length;
  const Kernel* kernel = find_kernel(builtin, custom_name);
  if (!kernel) {
    msg.add_all("unsupported operator ");
    if (builtin == schema::kOpCustom) {
      msg.add_all("custom \"", custom_name, "\"");
    } else {
      const char* name = schema::builtin_name(builtin);
      if (name)
        msg.add(name);
      else
        msg.add_all("with builtin code ", builtin);
    }
    msg.add_all(" (op ", op, ")");
    return TT_UNSUPPORTED;
  }
  if (inputs.length > 0xFFFF || outputs.length > 0xFFFF || outputs.length == 0) {
    msg.add_all("malformed model: op ", op, " (", kernel->name, ") has ", inputs.length, " inputs and ",
                outputs.length, " outputs");
    return TT_MALFORMED_MODEL;
  }
  node->kernel = kernel;
  node->op_data = nullptr;
  node->inputs = r.bytes(inputs);
  node->outputs = r.bytes(outputs);
  node->input_count = static_cast<uint16_t>(inputs.length);
  node->output_count = static_cast<uint16_t>(outputs.length);
  node->op_table = table.pos;
  node->scratch_bytes = 0;
  node->scratch_offset = kNoOffset;
  return TT_OK;
}

bool vector_contains(FlatReader& r, const Vector& v, int32_t value) {
  for (uint32_t i = 0; i < v.length; ++i)
    if (r.i32_in(v, i) == value) return true;
  return false;
}

// The op (before `before`) that writes tensor t, or -1.
int32_t producer_before(Model& m, int32_t t, uint32_t before) {
  FlatReader& r = m.reader;
  for (uint32_t op = 0; op < before; ++op) {
    const Table table = r.table_in(m.operators, op);
    const Vector outputs = r.vector_field(table, schema::kOperatorOutputs, 4);
    if (vector_contains(r, outputs, t)) return static_cast<int32_t>(op);
  }
  return -1;
}

// Graph-level checks of node `op`: valid tensor indices, supported types,
// SSA form (each tensor written once, never a constant or a graph input, and
// written before it is read).
tt_status check_node_tensors(Context& ctx, Model& m, uint32_t op, const NodeRec& node) {
  const int32_t count = ctx.tensor_count();
  for (int32_t i = 0; i < node.input_count; ++i) {
    const int32_t t = node.input(i);
    if (t == -1) continue;
    if (t < -1 || t >= count)
      return ctx.fail(TT_MALFORMED_MODEL, "input ", i, " is tensor index ", t, " (model has ", count, " tensors)");
    if (schema::type_size(ctx.type(t)) == 0)
      return ctx.fail(TT_UNSUPPORTED, "input ", i, " has type ", schema::type_name(ctx.type(t)));
    if (!ctx.is_constant(t) && !vector_contains(m.reader, m.inputs, t) && producer_before(m, t, op) < 0)
      return ctx.fail(TT_MALFORMED_MODEL, "input ", i, " (tensor ", t, ", ", ctx.tensor_name(t),
                      ") is read before any op writes it");
  }
  for (int32_t i = 0; i < node.output_count; ++i) {
    const int32_t t = node.output(i);
    if (t < 0 || t >= count)
      return ctx.fail(TT_MALFORMED_MODEL, "output ", i, " is tensor index ", t, " (model has ", count, " tensors)");
    if (schema::type_size(ctx.type(t)) == 0)
      return ctx.fail(TT_UNSUPPORTED, "output ", i, " has type ", schema::type_name(ctx.type(t)));
    if (ctx.is_constant(t)) return ctx.fail(TT_MALFORMED_MODEL, "output ", i, " is a constant tensor");
    if (vector_contains(m.reader, m.inputs, t))
      return ctx.fail(TT_MALFORMED_MODEL, "output ", i, " is a graph input");
    const int32_t earlier = producer_before(m, t, op);
    if (earlier >= 0)
      return ctx.fail(TT_MALFORMED_MODEL, "output ", i, " (tensor ", t, ") is also written by op ", earlier);
    for (int32_t k = 0; k < i; ++k)
      if (node.output(k) == t) return ctx.fail(TT_MALFORMED_MODEL, "writes tensor ", t, " twice");
  }
  return TT_OK;
}

tt_status check_graph_io(Context& ctx, Model& m, Message& msg) {
  FlatReader& r = m.reader;
  for (int pass = 0; pass < 2; ++pass) {
    const Vector& v = pass == 0 ? m.inputs : m.outputs;
    for (uint32_t i = 0; i < v.length; ++i) {
      const int32_t t = r.i32_in(v, i);
      const char* what = pass == 0 ? "graph input " : "graph output ";
      if (t < 0 || t >= ctx.tensor_count()) {
        msg.clear();
        msg.add_all("malformed model: ", what, i, " is tensor index ", t);
        return TT_MALFORMED_MODEL;
      }
      if (schema::type_size(ctx.type(t)) == 0) return tensor_error(msg, m, t, TT_UNSUPPORTED, "graph I/O of type ",
                                                                   schema::type_name(ctx.type(t)));
      if (pass == 0 && ctx.is_constant(t))
        return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "a graph input is a constant");
      if (pass == 1 && !ctx.is_constant(t) && !vector_contains(r, m.inputs, t) &&
          producer_before(m, t, m.operators.length) < 0)
        return tensor_error(msg, m, t, TT_MALFORMED_MODEL, "a graph output that no op writes");
    }
  }
  return TT_OK;
}

struct Sizes {
  size_t state = 0;           // Runtime + records + op data
  size_t tensors_upper = 0;   // every non-constant tensor and scratch, unshared
};

// Validate the whole model and compute how much arena it needs, without
// touching the arena (the runtime `sizing` lives on the stack).
tt_status size_model(Runtime& sizing, Message& msg, Sizes* sizes) {
  Model& m = sizing.model;
  FlatReader& r = m.reader;
  for (uint32_t t = 0; t < sizing.tensor_count; ++t) {
    const tt_status st = check_tensor(m, static_cast<int32_t>(t), msg);
    if (st != TT_OK) return st;
  }
  Context ctx(sizing, msg);
  tt_status st = check_graph_io(ctx, m, msg);
  if (st != TT_OK) return st;
  sizes->state = align_up(sizeof(Runtime)) + align_up(sizing.tensor_count * sizeof(TensorRec)) +
                 align_up(sizing.node_count * sizeof(NodeRec));
  for (uint32_t t = 0; t < sizing.tensor_count; ++t)
    if (!ctx.is_constant(static_cast<int32_t>(t))) sizes->tensors_upper += align_up(ctx.bytes(static_cast<int32_t>(t)));
  for (uint32_t op = 0; op < sizing.node_count; ++op) {
    NodeRec node;
    msg.clear();
    st = read_node(m, op, &node, msg);
    if (st != TT_OK) return st;
    ctx.set_op(static_cast<int32_t>(op), node.kernel->name);
    st = check_node_tensors(ctx, m, op, node);
    if (st != TT_OK) return st;
    OpMemory memory;
    st = node.kernel->size(ctx, node, &memory);
    if (r.failed()) return reader_error(r, msg);
    if (st != TT_OK) return st;
    sizes->state += align_up(memory.op_data_bytes);
    sizes->tensors_upper += align_up(memory.scratch_bytes);
  }
  return TT_OK;
}

tt_status arena_too_small(tt_interpreter* it, Message& msg, size_t given, size_t needed, size_t state,
                          bool exact) {
  it->arena_needed = needed;
  msg.clear();
  msg.add_all("arena too small: ", static_cast<unsigned long long>(given), " bytes given, ");
  if (exact) {
    msg.add_all(static_cast<unsigned long long>(needed), " needed (",
                static_cast<unsigned long long>(state), " runtime state and op data + ",
                static_cast<unsigned long long>(needed - state), " tensors)");
  } else {
    msg.add_all("the runtime state and op data alone need ", static_cast<unsigned long long>(state),
                "; retry with ", static_cast<unsigned long long>(needed), " (enough for every tensor)");
  }
  return TT_ARENA_TOO_SMALL;
}

}  // namespace

tt_status initialize(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len,
                     const uint32_t* offsets, size_t offsets_count) {
  it->impl = nullptr;
  it->arena_needed = 0;
  Message msg(it->message, sizeof(it->message));
  if (!model) {
    msg.add("model is NULL");
    return TT_INVALID_ARGUMENT;
  }
  if (!arena && arena_len) {
    msg.add("arena is NULL");
    return TT_INVALID_ARGUMENT;
  }
  if ((reinterpret_cast<uintptr_t>(model) & 3u) != 0) {
    msg.add("model bytes must be 4-byte aligned (shapes are read in place)");
    return TT_INVALID_ARGUMENT;
  }

  // 1. Validate and size, with the runtime on the stack.
  Runtime sizing;
  tt_status st = open_model(&sizing.model, model, model_len, msg);
  if (st != TT_OK) return st;
  sizing.tensor_count = sizing.model.tensors.length;
  sizing.node_count = sizing.model.operators.length;
  Sizes sizes;
  st = size_model(sizing, msg, &sizes);
  if (st != TT_OK) return st;

  const uintptr_t raw = reinterpret_cast<uintptr_t>(arena);
  const size_t pad = static_cast<size_t>(((raw + (kAlignment - 1)) & ~static_cast<uintptr_t>(kAlignment - 1)) - raw);
  if (arena_len < pad + sizes.state)
    return arena_too_small(it, msg, arena_len, pad + sizes.state + sizes.tensors_upper, pad + sizes.state, false);

  // 2. Lay out the runtime state in the arena.
  uint8_t* base = arena + pad;
  size_t used = 0;
  auto take = [&](size_t bytes) {
    uint8_t* p = base + used;
    used += align_up(bytes);
    return p;
  };
  Runtime* rt = new (take(sizeof(Runtime))) Runtime(sizing);
  // Records are filled while rt->tensors is still null, so that the context
  // reads tensor metadata from the model until they are complete.
  TensorRec* records = reinterpret_cast<TensorRec*>(take(rt->tensor_count * sizeof(TensorRec)));
  rt->nodes = reinterpret_cast<NodeRec*>(take(rt->node_count * sizeof(NodeRec)));
  Context ctx(*rt, msg);
  for (uint32_t i = 0; i < rt->tensor_count; ++i) {
    const int32_t t = static_cast<int32_t>(i);
    TensorRec& rec = records[i];
    const uint8_t* constant = ctx.constant_data(t);
    const Shape shape = ctx.shape(t);
    rec.data = const_cast<uint8_t*>(constant);  // kernels never write constants
    rec.dims = shape.dims;
    rec.bytes = ctx.bytes(t);
    rec.offset = kNoOffset;
    rec.first_use = rec.last_use = kNoOp;
    rec.type = ctx.type(t);
    rec.rank = static_cast<uint8_t>(shape.rank);
    rec.flags = static_cast<uint8_t>((constant ? kConstant : 0) |
                                     (vector_contains(rt->model.reader, rt->model.inputs, t) ? kGraphInput : 0) |
                                     (vector_contains(rt->model.reader, rt->model.outputs, t) ? kGraphOutput : 0));
    rec.reserved = 0;
  }
  rt->tensors = records;
  for (uint32_t op = 0; op < rt->node_count; ++op) {
    NodeRec& node = rt->nodes[op];
    st = read_node(rt->model, op, &node, msg);
    if (st != TT_OK) return st;
    ctx.set_op(static_cast<int32_t>(op), node.kernel->name);
    OpMemory memory;
    st = node.kernel->size(ctx, node, &memory);
    if (st != TT_OK) return st;
    node.op_data = memory.op_data_bytes ? take(memory.op_data_bytes) : nullptr;
    node.scratch_bytes = memory.scratch_bytes;
  }
  if (used != sizes.state) {
    msg.clear();
    msg.add("internal error: arena layout differs from its sizing");
    return TT_INTERNAL_ERROR;
  }

  // 3. Prepare every op (op data computed once).
  for (uint32_t op = 0; op < rt->node_count; ++op) {
    NodeRec& node = rt->nodes[op];
    ctx.set_op(static_cast<int32_t>(op), node.kernel->name);
    st = node.kernel->prepare(ctx, node);
    if (rt->model.reader.failed()) return reader_error(rt->model.reader, msg);
    if (st != TT_OK) return st;
  }

  // 4. Place tensors and scratch memory; bind data pointers.
  compute_lifetimes(*rt);
  uint32_t planned = 0;
  msg.clear();
  st = offsets ? place_at_offsets(*rt, offsets, offsets_count, &planned, msg) : place_first_fit(*rt, &planned, msg);
  if (st != TT_OK) return st;
  const size_t needed = pad + used + planned;
  if (arena_len < needed) return arena_too_small(it, msg, arena_len, needed, pad + used, true);
  rt->planned = base + used;
  rt->planned_bytes = planned;
  rt->arena_used = needed;
  for (uint32_t i = 0; i < rt->tensor_count; ++i) {
    TensorRec& rec = rt->tensors[i];
    if (!(rec.flags & kConstant)) rec.data = rec.offset == kNoOffset ? nullptr : rt->planned + rec.offset;
  }
  msg.clear();
  it->impl = rt;
  return TT_OK;
}

namespace {

// TT_POISON_ARENA builds (arena_poison.h): only the buffers alive at `op` and its scratch are addressable.
void poison_all_but_live(Runtime& rt, uint32_t op) {
  arena_poison(rt.planned, rt.planned_bytes);
  for (uint32_t i = 0; i < rt.tensor_count; ++i) {
    const TensorRec& rec = rt.tensors[i];
    if ((rec.flags & kConstant) || rec.offset == kNoOffset || rec.first_use == kNoOp) continue;
    if (rec.first_use <= op && op <= rec.last_use) arena_unpoison(rt.planned + rec.offset, rec.bytes);
  }
  const NodeRec& node = rt.nodes[op];
  if (node.scratch_bytes) arena_unpoison(rt.planned + node.scratch_offset, node.scratch_bytes);
}

}  // namespace

tt_status invoke(Runtime& rt, Message& msg) {
  Context ctx(rt, msg);
  tt_status st = TT_OK;
  for (uint32_t op = 0; op < rt.node_count && st == TT_OK; ++op) {
    const NodeRec& node = rt.nodes[op];
    ctx.set_op(static_cast<int32_t>(op), node.kernel->name);
    if (kArenaPoisoning) poison_all_but_live(rt, op);
    st = node.kernel->eval(ctx, node);
    if (st == TT_OK && tt_profile_step_end) tt_profile_step_end(op);
  }
  if (kArenaPoisoning) arena_unpoison(rt.planned, rt.planned_bytes);
  return st;
}

}  // namespace tt
