// The C API (include/tflm_train.h) over the interpreter internals.
#include <string.h>

#include "interpreter.h"

using tt::Context;
using tt::Message;
using tt::Runtime;

namespace {

Runtime* runtime_of(const tt_interpreter* it) { return it ? static_cast<Runtime*>(it->impl) : nullptr; }

tt_status finish(tt_interpreter* it, tt_status status) {
  it->status = status;
  return status;
}

tt_status not_ready(tt_interpreter* it) {
  Message msg(it->message, sizeof(it->message));
  msg.add("interpreter is not initialized (tt_init failed or was not called)");
  return finish(it, TT_NOT_READY);
}

// Tensor index of graph input/output `index`, or -1.
int32_t io_tensor(Runtime& rt, bool input, size_t index) {
  const tt::Vector& v = input ? rt.model.inputs : rt.model.outputs;
  if (index >= v.length) return -1;
  return rt.model.reader.i32_in(v, static_cast<uint32_t>(index));
}

tt_status io_size_error(Message& msg, Runtime& rt, bool input, size_t index, int32_t t, size_t len) {
  Context ctx(rt, msg);
  const tt::TensorRec& rec = rt.tensors[t];
  msg.clear();
  msg.add_all(input ? "input " : "output ", static_cast<unsigned long long>(index), " (",
              rt.model.tensor_name(t), ") is ", rec.bytes, " bytes (");
  for (int i = 0; i < rec.rank; ++i) msg.add_all(i ? "x" : "", rec.dims[i]);
  msg.add_all(rec.rank ? " " : "scalar ", tt::schema::type_name(rec.type), "), got ",
              static_cast<unsigned long long>(len));
  return TT_SHAPE_MISMATCH;
}

tt_status bad_index(tt_interpreter* it, bool input, size_t index) {
  Message msg(it->message, sizeof(it->message));
  Runtime* rt = runtime_of(it);
  msg.add_all("no ", input ? "input " : "output ", static_cast<unsigned long long>(index), " (model has ",
              input ? rt->model.inputs.length : rt->model.outputs.length, ")");
  return finish(it, TT_INVALID_ARGUMENT);
}

tt_status tensor_info(tt_interpreter* it, bool input, size_t index, tt_tensor_info* info) {
  Runtime* rt = runtime_of(it);
  if (!rt) return not_ready(it);
  const int32_t t = io_tensor(*rt, input, index);
  if (t < 0 || !info) return bad_index(it, input, index);
  Message msg(it->message, sizeof(it->message));
  Context ctx(*rt, msg);
  const tt::TensorRec& rec = rt->tensors[t];
  memset(info, 0, sizeof(*info));
  info->type = rec.type;
  info->rank = rec.rank;
  for (int i = 0; i < rec.rank; ++i) info->dims[i] = rec.dims[i];
  info->bytes = rec.bytes;
  info->scale = ctx.scale(t);
  info->zero_point = ctx.zero_point(t);
  return finish(it, TT_OK);
}

}  // namespace

extern "C" {

tt_status tt_init(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len) {
  if (!it) return TT_INVALID_ARGUMENT;
  return finish(it, tt::initialize(it, model, model_len, arena, arena_len, nullptr, 0));
}

tt_status tt_init_planned(tt_interpreter* it, const uint8_t* model, size_t model_len, uint8_t* arena,
                          size_t arena_len, const uint32_t* offsets, size_t offsets_count) {
  if (!it) return TT_INVALID_ARGUMENT;
  if (!offsets) {
    it->impl = nullptr;
    Message msg(it->message, sizeof(it->message));
    msg.add("memory plan offsets are NULL");
    return finish(it, TT_INVALID_ARGUMENT);
  }
  return finish(it, tt::initialize(it, model, model_len, arena, arena_len, offsets, offsets_count));
}

tt_status tt_set_input(tt_interpreter* it, size_t index, const void* data, size_t len) {
  if (!it) return TT_INVALID_ARGUMENT;
  Runtime* rt = runtime_of(it);
  if (!rt) return not_ready(it);
  const int32_t t = io_tensor(*rt, true, index);
  if (t < 0) return bad_index(it, true, index);
  Message msg(it->message, sizeof(it->message));
  if (!data && len) {
    msg.add("input data is NULL");
    return finish(it, TT_INVALID_ARGUMENT);
  }
  if (len != rt->tensors[t].bytes) return finish(it, io_size_error(msg, *rt, true, index, t, len));
  if (len) memcpy(rt->tensors[t].data, data, len);
  return finish(it, TT_OK);
}

tt_status tt_invoke(tt_interpreter* it) {
  if (!it) return TT_INVALID_ARGUMENT;
  Runtime* rt = runtime_of(it);
  if (!rt) return not_ready(it);
  Message msg(it->message, sizeof(it->message));
  return finish(it, tt::invoke(*rt, msg));
}

tt_status tt_get_output(tt_interpreter* it, size_t index, void* data, size_t len) {
  if (!it) return TT_INVALID_ARGUMENT;
  Runtime* rt = runtime_of(it);
  if (!rt) return not_ready(it);
  const int32_t t = io_tensor(*rt, false, index);
  if (t < 0) return bad_index(it, false, index);
  Message msg(it->message, sizeof(it->message));
  if (!data && len) {
    msg.add("output buffer is NULL");
    return finish(it, TT_INVALID_ARGUMENT);
  }
  if (len != rt->tensors[t].bytes) return finish(it, io_size_error(msg, *rt, false, index, t, len));
  if (len) memcpy(data, rt->tensors[t].data, len);
  return finish(it, TT_OK);
}

tt_status tt_infer(tt_interpreter* it, const void* in, size_t in_len, void* out, size_t out_len) {
  if (!it) return TT_INVALID_ARGUMENT;
  Runtime* rt = runtime_of(it);
  if (!rt) return not_ready(it);
  if (rt->model.inputs.length != 1 || rt->model.outputs.length != 1) {
    Message msg(it->message, sizeof(it->message));
    msg.add_all("tt_infer needs one input and one output; the model has ", rt->model.inputs.length, " and ",
                rt->model.outputs.length, " (use tt_set_input / tt_invoke / tt_get_output)");
    return finish(it, TT_INVALID_ARGUMENT);
  }
  tt_status st = tt_set_input(it, 0, in, in_len);
  if (st != TT_OK) return st;
  st = tt_invoke(it);
  if (st != TT_OK) return st;
  return tt_get_output(it, 0, out, out_len);
}

void* tt_input_buffer(tt_interpreter* it, size_t index) {
  Runtime* rt = runtime_of(it);
  if (!rt) return nullptr;
  const int32_t t = io_tensor(*rt, true, index);
  return t < 0 ? nullptr : rt->tensors[t].data;
}

const void* tt_output_buffer(const tt_interpreter* it, size_t index) {
  Runtime* rt = runtime_of(it);
  if (!rt) return nullptr;
  const int32_t t = io_tensor(*rt, false, index);
  return t < 0 ? nullptr : rt->tensors[t].data;
}

size_t tt_input_count(const tt_interpreter* it) {
  Runtime* rt = runtime_of(it);
  return rt ? rt->model.inputs.length : 0;
}

size_t tt_output_count(const tt_interpreter* it) {
  Runtime* rt = runtime_of(it);
  return rt ? rt->model.outputs.length : 0;
}

tt_status tt_input_info(tt_interpreter* it, size_t index, tt_tensor_info* info) {
  if (!it) return TT_INVALID_ARGUMENT;
  return tensor_info(it, true, index, info);
}

tt_status tt_output_info(tt_interpreter* it, size_t index, tt_tensor_info* info) {
  if (!it) return TT_INVALID_ARGUMENT;
  return tensor_info(it, false, index, info);
}

size_t tt_op_count(const tt_interpreter* it) {
  Runtime* rt = runtime_of(it);
  return rt ? rt->node_count : 0;
}

const char* tt_op_name(const tt_interpreter* it, size_t index) {
  Runtime* rt = runtime_of(it);
  if (!rt || index >= rt->node_count) return nullptr;
  return rt->nodes[index].kernel->name;
}

size_t tt_arena_used(const tt_interpreter* it) {
  Runtime* rt = runtime_of(it);
  return rt ? rt->arena_used : 0;
}

size_t tt_arena_needed(const tt_interpreter* it) { return it ? it->arena_needed : 0; }

const char* tt_error_message(const tt_interpreter* it) { return it ? it->message : "interpreter handle is NULL"; }

const char* tt_status_name(tt_status status) {
  switch (status) {
    case TT_OK: return "TT_OK";
    case TT_MALFORMED_MODEL: return "TT_MALFORMED_MODEL";
    case TT_UNSUPPORTED: return "TT_UNSUPPORTED";
    case TT_ARENA_TOO_SMALL: return "TT_ARENA_TOO_SMALL";
    case TT_SHAPE_MISMATCH: return "TT_SHAPE_MISMATCH";
    case TT_INVALID_ARGUMENT: return "TT_INVALID_ARGUMENT";
    case TT_NOT_READY: return "TT_NOT_READY";
    case TT_INTERNAL_ERROR: return "TT_INTERNAL_ERROR";
    case TT_NUMERIC_ERROR: return "TT_NUMERIC_ERROR";
    case TT_STORAGE_ERROR: return "TT_STORAGE_ERROR";
    case TT_NO_CHECKPOINT: return "TT_NO_CHECKPOINT";
  }
  return "TT_UNKNOWN_STATUS";
}

}  // extern "C"
