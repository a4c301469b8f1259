// Reading the training metadata (version 2): locating the "tflm_train.train"
// entry in a TFLite model and decoding / checking its tensors and ops. A
// training tensor that is also an inference tensor takes its shape and scales
// from the inference subgraph; forward requantization is computed from the
// scales. Every offset goes through FlatReader (bounds-checked); every value a
// kernel later trusts is checked here once.
#include <math.h>
#include <string.h>

#include "../quant.h"
#include "train_runtime.h"

namespace tt {
namespace train {

bool str_equal(Str a, const char* b) {
  const size_t n = strlen(b);
  return a.length == n && (n == 0 || (a.data && memcmp(a.data, b, n) == 0));
}

Str string_of(FlatReader& r, const Vector& v) {
  Str s;
  s.data = reinterpret_cast<const char*>(r.bytes(v));
  s.length = v.length;
  return s;
}

namespace {

tt_status reader_failed(const FlatReader& r, const char* where, Message& msg) {
  msg.clear();
  msg.add_all("malformed ", where, ": ", r.error(), " (at byte ", r.error_pos(), ")");
  return TT_MALFORMED_MODEL;
}


}  // namespace

tt_status locate_metadata(FlatReader& model, const uint8_t** meta, uint32_t* meta_len, Message& msg) {
  const Table root = model.root();
  const Vector metadata = model.vector_field(root, tfmt::kModelMetadata, 4);
  const Vector buffers = model.vector_field(root, tfmt::kModelBuffers, 4);
  if (model.failed()) return reader_failed(model, "model", msg);
  int32_t found = -1;
  uint32_t count = 0;
  for (uint32_t i = 0; i < metadata.length; ++i) {
    const Table entry = model.table_in(metadata, i);
    const Str name = string_of(model, model.string_field(entry, tfmt::kMetadataNameField));
    if (model.failed()) return reader_failed(model, "model metadata", msg);
    if (str_equal(name, tfmt::kMetadataName)) {
      ++count;
      found = static_cast<int32_t>(model.u32(entry, tfmt::kMetadataBuffer, 0));
    }
  }
  if (count == 0) {
    msg.add_all("not a training model: no '", tfmt::kMetadataName,
                "' metadata (an inference-only .tflite? export one with tflm_train.export)");
    return TT_UNSUPPORTED;
  }
  if (count > 1) {
    msg.add_all("malformed training model: ", count, " '", tfmt::kMetadataName, "' metadata entries");
    return TT_MALFORMED_MODEL;
  }
  if (found <= 0 || static_cast<uint32_t>(found) >= buffers.length) {
    msg.add_all("malformed training model: metadata buffer index ", found, " out of range (", buffers.length,
                " buffers)");
    return TT_MALFORMED_MODEL;
  }
  const Table buffer = model.table_in(buffers, static_cast<uint32_t>(found));
  const Vector data = model.vector_field(buffer, 0, 1);
  if (model.failed()) return reader_failed(model, "model buffers", msg);
  const uint8_t* p = model.bytes(data);
  uint64_t len = data.length;
  if (!len) {  // external buffer (offset, size)
    const uint64_t offset = model.u64(buffer, 1, 0), size = model.u64(buffer, 2, 0);
    if (offset > 1 && size && offset <= model.size() && size <= model.size() - offset) {
      p = model.base() + offset;
      len = size;
    }
  }
  if (len < 8) {
    msg.add("malformed training model: the training metadata buffer is empty or truncated");
    return TT_MALFORMED_MODEL;
  }
  if (memcmp(p + 4, tfmt::kFileIdentifier, 4) != 0) {
    msg.add("malformed training metadata: file identifier is not \"TFMT\"");
    return TT_MALFORMED_MODEL;
  }
  *meta = p;
  *meta_len = static_cast<uint32_t>(len);
  return TT_OK;
}

Str string_in(FlatReader& r, const Vector& strings, uint32_t i) {
  Str s = {nullptr, 0};
  if (i >= strings.length) return s;
  // A vector of strings: element i is an offset to a string (length, bytes).
  const uint32_t pos = strings.data + 4u * i;
  const uint64_t target = static_cast<uint64_t>(pos) + load_u32(r.base() + pos);
  if (target + 4 <= r.size()) {
    const uint32_t len = load_u32(r.base() + target);
    if (len <= r.size() - target - 4) {
      s.data = reinterpret_cast<const char*>(r.base() + target + 4);
      s.length = len;
    }
  }
  return s;
}

namespace {

// The inference tensor a training tensor refers to (absent if none or out of range).
Table infer_tensor_of(TrainRuntime& rt, const Table& t) {
  FlatReader& r = rt.meta;
  const int32_t i = r.i32(t, tfmt::kTensorInferTensor, -1);
  if (i < 0 || static_cast<uint32_t>(i) >= rt.infer_tensors.length) return Table();
  return r.table_in(rt.infer_tensors, static_cast<uint32_t>(i));
}

}  // namespace

Str tensor_name_of(TrainRuntime& rt, int32_t t) {
  FlatReader& r = rt.meta;
  Str s = {nullptr, 0};
  if (t < 0 || static_cast<uint32_t>(t) >= rt.tensors.length) return s;
  const Table table = r.table_in(rt.tensors, static_cast<uint32_t>(t));
  s = string_of(r, r.string_field(table, tfmt::kTensorName));
  if (!s.length) {
    const Table it = infer_tensor_of(rt, table);
    if (it.present()) s = string_of(r, r.string_field(it, tfmt::kTfliteTensorName));
  }
  if (!s.length) s = string_in(r, rt.debug_tensor_names, static_cast<uint32_t>(t));
  return s;
}

const uint8_t* buffer_data(TrainRuntime& rt, int32_t index, uint32_t* len) {
  *len = 0;
  if (index <= 0 || static_cast<uint32_t>(index) >= rt.buffers.length) return nullptr;
  FlatReader& r = rt.model;
  const Table buffer = r.table_in(rt.buffers, static_cast<uint32_t>(index));
  const Vector data = r.vector_field(buffer, 0, 1);
  if (data.length) {
    *len = data.length;
    return r.bytes(data);
  }
  const uint64_t offset = r.u64(buffer, 1, 0), size = r.u64(buffer, 2, 0);
  if (offset > 1 && size && offset <= r.size() && size <= r.size() - offset) {
    *len = static_cast<uint32_t>(size);
    return r.base() + offset;
  }
  return nullptr;
}

TensorDesc decode_tensor(TrainRuntime& rt, int32_t t) {
  FlatReader& r = rt.meta;
  TensorDesc d;
  d.index = t;
  d.table = r.table_in(rt.tensors, static_cast<uint32_t>(t));
  const Table infer = infer_tensor_of(rt, d.table);
  Vector shape = r.vector_field(d.table, tfmt::kTensorShape, 4);
  if (shape.data == 0 && infer.present()) shape = r.vector_field(infer, tfmt::kTfliteTensorShape, 4);
  d.rank = static_cast<int32_t>(shape.length < kMaxRank ? shape.length : kMaxRank);
  d.elements = 1;
  for (int32_t i = 0; i < d.rank; ++i) {
    d.dims[i] = r.i32_in(shape, static_cast<uint32_t>(i));
    const int64_t dim = d.dims[i] > 0 ? d.dims[i] : 0;
    // Saturates just above the limit check_tensor enforces, so a corrupt shape cannot overflow.
    d.elements = (dim && d.elements > kMaxTensorBytes / dim) ? kMaxTensorBytes + 1 : d.elements * dim;
  }
  d.dtype = r.u8(d.table, tfmt::kTensorDType, 0);
  d.kind = r.u8(d.table, tfmt::kTensorKind, 0);
  d.storage = r.u8(d.table, tfmt::kTensorStorage, 0);
  d.bytes = d.elements * tfmt::dtype_size(d.dtype);
  d.buffer = r.i32(d.table, tfmt::kTensorBuffer, -1);
  d.offset = r.i32(d.table, tfmt::kTensorArenaOffset, -1);
  d.arena_bytes = r.i32(d.table, tfmt::kTensorArenaBytes, -1);
  if (d.arena_bytes == -1) d.arena_bytes = d.bytes;  // absent: the data bytes
  d.source = r.i32(d.table, tfmt::kTensorSource, -1);
  const Vector pad = r.vector_field(d.table, tfmt::kTensorPad, 4);
  for (uint32_t i = 0; i < 4 && i < pad.length; ++i) d.pad[i] = r.i32_in(pad, i);
  d.split_axis = r.i32(d.table, tfmt::kTensorSplitAxis, -1);
  d.split_channels = r.vector_field(d.table, tfmt::kTensorSplitChannels, 4);
  d.mask_of = r.i32(d.table, tfmt::kTensorMaskOf, -1);
  d.mask_min = r.i32(d.table, tfmt::kTensorMaskMin, 0);
  d.mask_max = r.i32(d.table, tfmt::kTensorMaskMax, 0);
  d.mask_producer = r.i32(d.table, tfmt::kTensorMaskProducer, -1);
  d.first_step = r.i32(d.table, tfmt::kTensorFirstStep, -1);
  d.last_step = r.i32(d.table, tfmt::kTensorLastStep, -1);
  const Table q = r.table_field(d.table, tfmt::kTensorQuantization);
  d.scales = r.vector_field(q, tfmt::kQuantScale, 4);
  d.zero_points = r.vector_field(q, tfmt::kQuantZeroPoint, 4);
  d.quantized_dim = r.i32(q, tfmt::kQuantDim, -1);
  if (q.present() && d.scales.data == 0 && infer.present()) {  // the inference tensor's scales
    const Table iq = r.table_field(infer, tfmt::kTfliteTensorQuantization);
    d.scales = r.vector_field(iq, tfmt::kTfliteQuantScale, 4);
    if (d.quantized_dim < 0) d.quantized_dim = r.i32(iq, tfmt::kTfliteQuantizedDimension, 0);
  }
  if (d.quantized_dim < 0) d.quantized_dim = 0;
  if (d.storage == tfmt::kArena || d.storage == tfmt::kPersistent || d.storage == tfmt::kBand) {
    d.data = (rt.arena && d.offset >= 0 && d.offset < static_cast<int64_t>(rt.arena_bytes)) ? rt.arena + d.offset
                                                                                             : nullptr;
  } else if (d.storage == tfmt::kFlash) {
    uint32_t len;
    d.data = const_cast<uint8_t*>(buffer_data(rt, d.buffer, &len));  // kernels never write FLASH tensors
  }
  return d;
}

OpView decode_op(TrainRuntime& rt, int32_t op) {
  FlatReader& r = rt.meta;
  OpView v;
  v.index = op;
  v.table = r.table_in(rt.ops, static_cast<uint32_t>(op));
  v.inputs = r.vector_field(v.table, tfmt::kOpInputs, 4);
  v.outputs = r.vector_field(v.table, tfmt::kOpOutputs, 4);
  v.attrs = r.vector_field(v.table, tfmt::kOpAttrs, 4);
  v.phase = r.u8(v.table, tfmt::kOpPhase, 0);
  const int32_t opcode = r.i32(v.table, tfmt::kOpOpcode, 0);
  if (opcode >= 0) v.type = string_in(r, rt.op_types, static_cast<uint32_t>(opcode));
  return v;
}

int32_t find_mask(TrainRuntime& rt, int32_t y) {
  // Only the tensors from mask_begin on (the exporter appends the bitmasks after the graph's
  // tensors), from the last down: a kernel looking for its activation's mask every step scans a
  // few entries (init checks that an activation has at most one, so the first found is the one).
  FlatReader& r = rt.meta;
  const uint32_t begin = rt.mask_begin > 0 ? static_cast<uint32_t>(rt.mask_begin) : 0u;
  for (uint32_t i = rt.tensors.length; i-- > begin;)
    if (r.i32(r.table_in(rt.tensors, i), tfmt::kTensorMaskOf, -1) == y) return static_cast<int32_t>(i);
  return -1;
}

namespace {

template <typename... Parts>
tt_status tensor_error(Message& msg, TrainRuntime& rt, int32_t t, const Parts&... parts) {
  msg.clear();
  msg.add_all("malformed training metadata: tensor ", t, " (", short_name(tensor_name_of(rt, t)), "): ");
  msg.add_all(parts...);
  return TT_MALFORMED_MODEL;
}

bool spatial_4d(const TensorDesc& d) { return d.rank == 4 && d.dims[0] >= 1; }

}  // namespace

tt_status check_tensor(TrainRuntime& rt, int32_t t, Message& msg) {
  FlatReader& r = rt.meta;
  const TensorDesc d = decode_tensor(rt, t);
  r.string_field(d.table, tfmt::kTensorName);
  Vector shape = r.vector_field(d.table, tfmt::kTensorShape, 4);
  const int32_t infer = r.i32(d.table, tfmt::kTensorInferTensor, -1);
  const Table q = r.table_field(d.table, tfmt::kTensorQuantization);
  const bool shared_scales = q.present() && r.vector_field(q, tfmt::kQuantScale, 4).data == 0;
  if (r.failed()) return reader_failed(r, "training metadata", msg);
  if (infer < -1 || (infer >= 0 && static_cast<uint32_t>(infer) >= rt.infer_tensors.length))
    return tensor_error(msg, rt, t, "inference tensor ", infer, " out of range (", rt.infer_tensors.length,
                        " tensors)");
  if (infer < 0 && (shape.data == 0 || shared_scales))
    return tensor_error(msg, rt, t, "no shape or scales of its own and no inference tensor to take them from");
  if (shape.data == 0) shape = r.vector_field(infer_tensor_of(rt, d.table), tfmt::kTfliteTensorShape, 4);
  if (r.failed()) return reader_failed(r, "training metadata", msg);
  if (shared_scales && d.scales.length == 0)
    return tensor_error(msg, rt, t, "takes its scales from inference tensor ", infer, ", which has none");
  if (shape.length > static_cast<uint32_t>(kMaxRank)) return tensor_error(msg, rt, t, "rank ", shape.length, " > 6");
  int64_t elements = 1;
  for (int32_t i = 0; i < d.rank; ++i) {
    if (d.dims[i] < 0) return tensor_error(msg, rt, t, "negative dimension ", d.dims[i]);
    elements *= d.dims[i];
    if (elements > kMaxTensorBytes) return tensor_error(msg, rt, t, "more than 2^30 elements");
  }
  if (tfmt::dtype_size(d.dtype) == 0) return tensor_error(msg, rt, t, "unknown dtype ", d.dtype);
  if (d.bytes > kMaxTensorBytes) return tensor_error(msg, rt, t, "larger than 1 GB");
  if (d.kind > tfmt::kScratch) return tensor_error(msg, rt, t, "unknown kind ", d.kind);
  if (d.storage > tfmt::kBand) return tensor_error(msg, rt, t, "unknown storage ", d.storage);
  if (d.zero_points.length > 1 && d.zero_points.length != d.scales.length)
    return tensor_error(msg, rt, t, d.zero_points.length, " zero points for ", d.scales.length, " scales");
  if (d.scales.length > 1 && (d.quantized_dim < 0 || d.quantized_dim >= d.rank ||
                              d.scales.length != static_cast<uint32_t>(d.dims[d.quantized_dim])))
    return tensor_error(msg, rt, t, d.scales.length, " scales along dimension ", d.quantized_dim);
  for (uint32_t i = 0; i < d.scales.length; ++i) {
    const float s = r.f32_in(d.scales, i);
    if (!(s > 0.0f) || s > 3.0e38f) return tensor_error(msg, rt, t, "scale ", i, " is not positive and finite");
  }
  if (d.buffer < -1 || (d.buffer >= 0 && static_cast<uint32_t>(d.buffer) >= rt.buffers.length))
    return tensor_error(msg, rt, t, "buffer index ", d.buffer, " out of range (", rt.buffers.length, " buffers)");
  uint32_t have = 0;
  if (d.buffer > 0) buffer_data(rt, d.buffer, &have);
  if (rt.model.failed()) return reader_failed(rt.model, "model buffers", msg);
  if (d.buffer > 0 && have != static_cast<uint64_t>(d.bytes))
    return tensor_error(msg, rt, t, "buffer ", d.buffer, " holds ", have, " bytes, the tensor needs ",
                        static_cast<long long>(d.bytes));
  const bool has_data = d.buffer > 0 && have == d.bytes;
  switch (d.storage) {
    case tfmt::kArena:
    case tfmt::kPersistent: {
      const bool persistent = d.storage == tfmt::kPersistent;
      if (d.offset < 0 || d.offset % kArenaAlignment != 0)
        return tensor_error(msg, rt, t, "arena offset ", static_cast<long long>(d.offset),
                            " is not a 16-byte aligned offset");
      const int64_t limit = persistent ? rt.persistent_bytes : rt.arena_bytes;
      if (d.arena_bytes < 0 || d.offset + d.arena_bytes > limit)
        return tensor_error(msg, rt, t, "bytes [", static_cast<long long>(d.offset), ", ",
                            static_cast<long long>(d.offset + d.arena_bytes), ") are outside the ",
                            persistent ? "persistent region (" : "arena (", static_cast<long long>(limit),
                            " bytes)");
      if (!persistent && d.offset < rt.persistent_bytes)
        return tensor_error(msg, rt, t, "a step buffer inside the persistent region");
      if (persistent) {
        if (d.kind != tfmt::kParameter && d.kind != tfmt::kState)
          return tensor_error(msg, rt, t, "persistent storage for a tensor that is not a parameter or state");
        if (!has_data) return tensor_error(msg, rt, t, "a persistent tensor without an initial value");
        int64_t expected = d.bytes;
        if (d.split_axis != -1 || d.split_channels.length) {
          if (d.split_axis != d.rank - 1 || d.rank < 1 || d.dims[d.split_axis] < 1)
            return tensor_error(msg, rt, t, "split along axis ", d.split_axis,
                                " (the runtime holds trained channels of the last axis only)");
          if (d.split_channels.length == 0)
            return tensor_error(msg, rt, t, "split without channels");
          int32_t prev = -1;
          for (uint32_t i = 0; i < d.split_channels.length; ++i) {
            const int32_t c = r.i32_in(d.split_channels, i);
            if (c <= prev || c >= d.dims[d.split_axis])
              return tensor_error(msg, rt, t, "split channels not ascending inside [0, ", d.dims[d.split_axis], ")");
            prev = c;
          }
          expected = d.bytes / d.dims[d.split_axis] * d.split_channels.length;
        }
        if (d.arena_bytes != expected)
          return tensor_error(msg, rt, t, static_cast<long long>(d.arena_bytes), " persistent bytes, expected ",
                              static_cast<long long>(expected));
      } else {
        if (d.arena_bytes < d.bytes)
          return tensor_error(msg, rt, t, "holds ", static_cast<long long>(d.arena_bytes), " arena bytes for ",
                              static_cast<long long>(d.bytes), " bytes of data");
        if (d.first_step < 0 || d.last_step < d.first_step || static_cast<uint32_t>(d.last_step) >= rt.step_count)
          return tensor_error(msg, rt, t, "planned life [", d.first_step, ", ", d.last_step, "] outside the ",
                              rt.step_count, " steps");
      }
      break;
    }
    case tfmt::kFlash:
      if (!has_data) return tensor_error(msg, rt, t, "stored in flash without data");
      break;
    case tfmt::kBand: {  // a window of whole rows of a 1xHxWxC int8 activation, written and read at one step
      // (or of the streamed image, plan.stream_input: rows fetched from the caller)
      const bool streamed = rt.stream_input && t == rt.image && d.kind == tfmt::kInput;
      if (t == rt.image && !rt.stream_input)
        return tensor_error(msg, rt, t, "the image is a band window, but the plan does not stream its input");
      if (!spatial_4d(d) || d.dims[0] != 1 || d.dtype != tfmt::kInt8 || (d.kind != tfmt::kActivation && !streamed))
        return tensor_error(msg, rt, t, "a band window needs a 1xHxWxC int8 activation");
      const int64_t row = static_cast<int64_t>(d.dims[2]) * d.dims[3];
      if (d.offset < 0 || d.offset % kArenaAlignment != 0 || d.offset < rt.persistent_bytes || row < 1 ||
          d.arena_bytes < row || d.arena_bytes % row != 0 || d.arena_bytes > d.bytes ||
          d.offset + d.arena_bytes > rt.arena_bytes)
        return tensor_error(msg, rt, t, "band window of ", static_cast<long long>(d.arena_bytes), " bytes at ",
                            static_cast<long long>(d.offset), " is not whole rows of ", static_cast<long long>(row),
                            " bytes inside the step region");
      if (d.first_step < 0 || d.last_step != d.first_step || static_cast<uint32_t>(d.last_step) >= rt.step_count)
        return tensor_error(msg, rt, t, "a band window must live at exactly one step");
      break;
    }
    case tfmt::kVirtualPad:
    case tfmt::kVirtualCrop: {
      if (d.source < 0 || static_cast<uint32_t>(d.source) >= rt.tensors.length || d.source == t)
        return tensor_error(msg, rt, t, "source tensor ", d.source, " out of range");
      const TensorDesc s = decode_tensor(rt, d.source);
      const bool pad = d.storage == tfmt::kVirtualPad;
      if (pad ? (s.storage != tfmt::kArena && s.storage != tfmt::kChannel && s.storage != tfmt::kBand)
              : s.storage != tfmt::kArena)
        return tensor_error(msg, rt, t, "virtual tensor whose source is not an arena", pad ? " or channel" : "",
                            " tensor");
      if (!spatial_4d(d) || !spatial_4d(s) || s.dtype != d.dtype)
        return tensor_error(msg, rt, t, "virtual pad/crop needs 4-D tensors of one dtype");
      for (int i = 0; i < 4; ++i)
        if (d.pad[i] < 0 || d.pad[i] > 65535) return tensor_error(msg, rt, t, "pad ", d.pad[i], " out of range");
      if (r.vector_field(d.table, tfmt::kTensorPad, 4).length != 4)
        return tensor_error(msg, rt, t, "pad needs 4 values [top, bottom, left, right]");
      if (d.dims[0] != s.dims[0] || d.dims[3] != s.dims[3] || d.dims[1] != s.dims[1] + d.pad[0] + d.pad[1] ||
          d.dims[2] != s.dims[2] + d.pad[2] + d.pad[3])
        return tensor_error(msg, rt, t, "shape does not equal its source's padded by [", d.pad[0], ", ", d.pad[1],
                            ", ", d.pad[2], ", ", d.pad[3], "]");
      break;
    }
    case tfmt::kChannel:
      if (!spatial_4d(d) || d.dims[0] != 1 || d.dtype != tfmt::kInt8)
        return tensor_error(msg, rt, t, "channel storage needs a 1xHxWxC int8 tensor");
      break;
    default:
      break;
  }
  if (d.mask_of >= 0) {
    if (static_cast<uint32_t>(d.mask_of) >= rt.tensors.length || d.mask_of == t)
      return tensor_error(msg, rt, t, "mask of tensor ", d.mask_of, " out of range");
    const TensorDesc y = decode_tensor(rt, d.mask_of);
    if (d.dtype != tfmt::kUInt8 || d.storage != tfmt::kArena || d.elements != (y.elements + 7) / 8)
      return tensor_error(msg, rt, t, "a bitmask must be ", static_cast<long long>((y.elements + 7) / 8),
                          " uint8 in the arena");
    if (y.dtype != tfmt::kInt8) return tensor_error(msg, rt, t, "bitmask of a tensor that is not int8");
    if (d.mask_producer < 0 || static_cast<uint32_t>(d.mask_producer) >= rt.ops.length)
      return tensor_error(msg, rt, t, "mask producer op ", d.mask_producer, " out of range");
  }
  if (r.failed()) return reader_failed(r, "training metadata", msg);
  return TT_OK;
}

// ------------------------------------------------------------------ TrainContext

tt_status TrainContext::begin_step(uint32_t k) {
  FlatReader& r = rt_.meta;
  step_ = k;
  const Table st = r.table_in(rt_.steps, k);
  const int32_t op = r.i32(st, tfmt::kStepOp, 0);
  op_ = OpView();
  if (op < 0 || static_cast<uint32_t>(op) >= rt_.ops.length) {
    msg_.clear();
    msg_.add_all("malformed training metadata: step ", k, " runs op ", op, " (", rt_.ops.length, " ops)");
    return TT_MALFORMED_MODEL;
  }
  op_ = decode_op(rt_, op);
  mode_ = r.u8(st, tfmt::kStepMode, 0);
  inplace_input_ = r.i32(st, tfmt::kStepInplaceInput, -1);
  layout_ = string_of(r, r.string_field(st, tfmt::kStepLayout));
  const int64_t scratch_offset = r.i32(st, tfmt::kStepScratchOffset, -1);
  const int64_t scratch_bytes = r.i32(st, tfmt::kStepScratchBytes, 0);
  scratch_ = nullptr;
  scratch_bytes_ = 0;
  table_op_[0] = table_op_[1] = -1;
  reserved_ = 0;
  if (r.failed()) {
    msg_.clear();
    msg_.add_all("malformed training metadata (step ", k, "): ", r.error(), " (at byte ", r.error_pos(), ")");
    return TT_MALFORMED_MODEL;
  }
  if (scratch_bytes) {
    if (scratch_offset < rt_.persistent_bytes || scratch_bytes < 0 ||
        scratch_offset + scratch_bytes > static_cast<int64_t>(rt_.arena_bytes) || scratch_offset % 4 != 0)
      return fail(TT_MALFORMED_MODEL, "scratch [", static_cast<long long>(scratch_offset), ", +",
                  static_cast<long long>(scratch_bytes), ") is outside the step region of the arena");
    // Validation runs before the arena exists: no pointer then (null + offset is undefined).
    scratch_ = rt_.arena ? rt_.arena + scratch_offset : nullptr;
    scratch_bytes_ = static_cast<uint32_t>(scratch_bytes);
  }
  return TT_OK;
}

bool TrainContext::layout_is(const char* name) const { return str_equal(layout_, name); }

int32_t TrainContext::input(int32_t i) const {
  if (i < 0 || static_cast<uint32_t>(i) >= op_.inputs.length) return -1;
  return load_i32(rt_.meta.base() + op_.inputs.data + 4u * static_cast<uint32_t>(i));
}

int32_t TrainContext::output(int32_t i) const {
  if (i < 0 || static_cast<uint32_t>(i) >= op_.outputs.length) return -1;
  return load_i32(rt_.meta.base() + op_.outputs.data + 4u * static_cast<uint32_t>(i));
}

TensorDesc TrainContext::tensor(int32_t t) { return decode_tensor(rt_, t); }

tt_status TrainContext::check_live(const TensorDesc& t, bool write) {
  const TensorDesc* d = &t;
  TensorDesc source;
  if (t.storage == tfmt::kVirtualPad || t.storage == tfmt::kVirtualCrop) {
    source = decode_tensor(rt_, t.source);
    d = &source;
  }
  switch (d->storage) {
    case tfmt::kPersistent:
      if (write && d->kind != tfmt::kParameter && d->kind != tfmt::kState)
        return fail(TT_MALFORMED_MODEL, "writes persistent tensor ", d->index, " that is not a parameter");
      // Atomic steps: nothing persistent changes until the loss (and logits) are known to be finite.
      if (write && static_cast<int32_t>(step_) <= rt_.loss_step)
        return fail(TT_MALFORMED_MODEL, "writes persistent tensor ", d->index, " before the loss step ",
                    rt_.loss_step);
      return TT_OK;
    case tfmt::kFlash:
      if (write) return fail(TT_MALFORMED_MODEL, "writes tensor ", d->index, ", a constant in flash");
      return TT_OK;
    case tfmt::kChannel:
      return TT_OK;
    case tfmt::kArena:
    case tfmt::kBand: {
      const int32_t k = static_cast<int32_t>(step_);
      const bool ok = write ? d->first_step == k : (d->first_step <= k && k <= d->last_step);
      if (!ok)
        return fail(TT_MALFORMED_MODEL, write ? "writes" : "reads", " tensor ", d->index, " outside its planned life [",
                    d->first_step, ", ", d->last_step, "] (", short_name(tensor_name_of(rt_, d->index)), ")");
      return TT_OK;
    }
    default:
      return fail(TT_MALFORMED_MODEL, write ? "writes" : "reads", " tensor ", d->index,
                  ", which has no storage in the plan (", short_name(tensor_name_of(rt_, d->index)), ")");
  }
}

tt_status TrainContext::reads(const TensorDesc& t) { return preparing_ ? check_live(t, false) : TT_OK; }
tt_status TrainContext::writes(const TensorDesc& t) { return preparing_ ? check_live(t, true) : TT_OK; }

bool TrainContext::find_attr(const char* name, Table* attr) {
  FlatReader& r = rt_.meta;
  for (uint32_t i = 0; i < op_.attrs.length; ++i) {
    const Table a = r.table_in(op_.attrs, i);
    if (str_equal(string_of(r, r.string_field(a, tfmt::kAttrName)), name)) {
      *attr = a;
      return true;
    }
  }
  return false;
}

bool TrainContext::has_attr(const char* name) {
  Table a;
  return find_attr(name, &a);
}

tt_status TrainContext::attr_int(const char* name, int32_t* value) {
  Table a;
  FlatReader& r = rt_.meta;
  if (find_attr(name, &a)) {
    const uint8_t type = r.u8(a, tfmt::kAttrType, 0);
    const Vector ints = r.vector_field(a, tfmt::kAttrIntsF, 4);
    if ((type == tfmt::kAttrInt || type == tfmt::kAttrBool) && ints.length == 1) {
      *value = r.i32_in(ints, 0);
      return TT_OK;
    }
  }
  return fail(TT_MALFORMED_MODEL, "attr '", name, "' is missing or not an integer");
}

tt_status TrainContext::attr_float_or_none(const char* name, float* value, bool* none) {
  Table a;
  FlatReader& r = rt_.meta;
  *none = false;
  if (find_attr(name, &a)) {
    const uint8_t type = r.u8(a, tfmt::kAttrType, 0);
    const Vector floats = r.vector_field(a, tfmt::kAttrFloatsF, 4);
    if (type == tfmt::kAttrFloat && floats.length == 1) {
      *value = r.f32_in(floats, 0);
      return TT_OK;
    }
    if (type == tfmt::kAttrNone) {
      *none = true;
      return TT_OK;
    }
  }
  return fail(TT_MALFORMED_MODEL, "attr '", name, "' is missing or not a float32");
}

tt_status TrainContext::attr_float(const char* name, float* value) {
  bool none;
  const tt_status st = attr_float_or_none(name, value, &none);
  if (st == TT_OK && none) return fail(TT_MALFORMED_MODEL, "attr '", name, "' is None, expected a float32");
  return st;
}

tt_status TrainContext::attr_string(const char* name, Str* value) {
  Table a;
  FlatReader& r = rt_.meta;
  if (find_attr(name, &a) && r.u8(a, tfmt::kAttrType, 0) == tfmt::kAttrString) {
    *value = string_of(r, r.string_field(a, tfmt::kAttrStr));
    return TT_OK;
  }
  return fail(TT_MALFORMED_MODEL, "attr '", name, "' is missing or not a string");
}

tt_status TrainContext::attr_ints(const char* name, Vector* values) {
  Table a;
  FlatReader& r = rt_.meta;
  if (find_attr(name, &a) && r.u8(a, tfmt::kAttrType, 0) == tfmt::kAttrInts) {
    *values = r.vector_field(a, tfmt::kAttrIntsF, 4);
    return TT_OK;
  }
  return fail(TT_MALFORMED_MODEL, "attr '", name, "' is missing or not a list of integers");
}

tt_status TrainContext::attr_floats(const char* name, Vector* values) {
  Table a;
  FlatReader& r = rt_.meta;
  if (find_attr(name, &a) && r.u8(a, tfmt::kAttrType, 0) == tfmt::kAttrFloats) {
    *values = r.vector_field(a, tfmt::kAttrFloatsF, 4);
    return TT_OK;
  }
  if (a.present() && r.u8(a, tfmt::kAttrType, 0) == tfmt::kAttrScales) {
    // The scales of one of the op's inputs (checked positive and finite with the tensor).
    const Vector ints = r.vector_field(a, tfmt::kAttrIntsF, 4);
    const int32_t t = ints.length == 1 ? r.i32_in(ints, 0) : -1;
    for (int32_t i = 0; t >= 0 && i < input_count(); ++i) {
      if (input(i) != t) continue;
      *values = tensor(t).scales;
      if (values->length) return TT_OK;
    }
    return fail(TT_MALFORMED_MODEL, "attr '", name, "' refers to the scales of tensor ", t,
                ", which is not a quantized input of the op");
  }
  return fail(TT_MALFORMED_MODEL, "attr '", name, "' is missing or not a list of float32");
}

tt_status TrainContext::requantization(int32_t channels, const uint8_t** multipliers, const uint8_t** shifts,
                                       uint32_t* count) {
  FlatReader& r = rt_.meta;
  *multipliers = *shifts = nullptr;
  *count = 0;
  if (input_count() < 2 || output_count() < 1) return fail(TT_MALFORMED_MODEL, "requantization needs x, w and y");
  const TensorDesc x = tensor(input(0)), w = tensor(input(1)), y = tensor(output(0));
  const uint32_t n = w.scales.length;
  if (x.scales.length != 1 || y.scales.length != 1 || (n != 1 && n != static_cast<uint32_t>(channels)))
    return fail(TT_MALFORMED_MODEL, "requantization needs one input and output scale and 1 or ", channels,
                " filter scales (has ", x.scales.length, ", ", y.scales.length, ", ", n, ")");
  const int32_t step_op = r.i32(r.table_in(rt_.steps, step_), tfmt::kStepOp, -1);
  const bool check_only = mode_ == tfmt::kFused && op_.index == step_op;  // runs inside the next step
  uint8_t* table = nullptr;
  if (!check_only) {
    int slot = 0;
    while (slot < 2 && table_op_[slot] != op_.index && table_op_[slot] >= 0) ++slot;
    if (slot == 2) return fail(TT_MALFORMED_MODEL, "more than two requantization tables in one step");
    if (table_op_[slot] != op_.index) {
      const uint64_t need = uint64_t{8} * n;
      const uint32_t top = (scratch_bytes_ - reserved_) & ~3u;
      if (need > top)
        return fail(TT_MALFORMED_MODEL, "needs ", static_cast<unsigned long long>(need),
                    " bytes of scratch for the requantization of op ", op_.index, ", the plan leaves ", top);
      table_op_[slot] = op_.index;
      table_offset_[slot] = top - static_cast<uint32_t>(need);
      reserved_ = scratch_bytes_ - table_offset_[slot];
    }
    // While validating before the arena exists (init sizes it first) only the room is checked.
    if (rt_.arena) table = scratch_ + table_offset_[slot];
  }
  const float f_x = r.f32_in(x.scales, 0), f_y = r.f32_in(y.scales, 0);
  const double s_x = static_cast<double>(f_x), s_y = static_cast<double>(f_y);
  for (uint32_t c = 0; c < n; ++c) {
    // TFLite Micro's conv Prepare: the product and quotient of the float32 scales in double
    // (quantize_scale_ratio: the same integers without double arithmetic, every step cheap).
    const float f_w = r.f32_in(w.scales, c);
    int32_t m;
    int sh;
    if (!quantize_scale_ratio(f_x, f_w, f_y, &m, &sh)) {
      const double real = s_x * static_cast<double>(f_w) / s_y;
      if (!(real > 0.0) || !isfinite(real))
        return fail(TT_MALFORMED_MODEL, "rescale factor of channel ", c, " is not positive and finite");
      quantize_multiplier(real, &m, &sh);
    }
    if (m < 0 || sh < -31 || sh > 31)
      return fail(TT_UNSUPPORTED, "requantization of channel ", c, " out of range (", m, ", ", sh, ")");
    if (table) {
      const int32_t shift = sh;
      memcpy(table + 4u * c, &m, 4);
      memcpy(table + 4u * (n + c), &shift, 4);
    }
  }
  if (r.failed()) return fail(TT_MALFORMED_MODEL, "reading the scales: ", r.error());
  *multipliers = table;
  *shifts = table ? table + 4u * n : nullptr;
  *count = n;
  return TT_OK;
}

}  // namespace train
}  // namespace tt
