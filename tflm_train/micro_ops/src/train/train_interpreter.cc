// The training interpreter: validation of a training .tflite, arena layout,
// the training step, forward-only prediction and parameter access.
//
// Init validates everything with the runtime on the stack (so the arena size it
// reports is exact), then lays out [TrainRuntime][StepRec x S][plan arena] in
// the caller's arena, checks the plan's offsets (inside the arena, no two
// buffers alive at one step on overlapping bytes unless the plan made them one
// buffer), copies trainable parameters and the RNG state into the persistent
// region and zeroes the rest.
#include "train_interpreter.h"

#include <math.h>
#include <new>
#include <string.h>

#include "../arena_poison.h"
#include "../profile_hook.h"
#include "band_chain.h"


namespace tt {
namespace train {

namespace {

constexpr char kTfliteIdentifier[4] = {'T', 'F', 'L', '3'};

tt_status reader_error(FlatReader& r, const char* what, Message& msg) {
  msg.clear();
  msg.add_all("malformed ", what, ": ", r.error(), " (at byte ", r.error_pos(), ")");
  return TT_MALFORMED_MODEL;
}

template <typename... Parts>
tt_status malformed(Message& msg, const Parts&... parts) {
  msg.clear();
  msg.add("malformed training metadata: ");
  msg.add_all(parts...);
  return TT_MALFORMED_MODEL;
}

Str tensor_name(TrainRuntime& rt, int32_t t) { return short_name(tensor_name_of(rt, t)); }

// The model's TrainModel root and the vectors every later step reads.
tt_status open_train(TrainRuntime& rt, const uint8_t* model, size_t model_len, Message& msg) {
  if (model_len < 8 || model_len > 0x7FFFFFFFu) {
    msg.add_all("malformed model: ", static_cast<unsigned long long>(model_len), " bytes is not a TFLite model size");
    return TT_MALFORMED_MODEL;
  }
  if (memcmp(model + 4, kTfliteIdentifier, 4) != 0) {
    msg.add("malformed model: wrong file identifier (expected \"TFL3\"): not a TFLite flatbuffer");
    return TT_MALFORMED_MODEL;
  }
  rt.model = FlatReader(model, static_cast<uint32_t>(model_len));
  const uint8_t* meta;
  uint32_t meta_len;
  tt_status st = locate_metadata(rt.model, &meta, &meta_len, msg);
  if (st != TT_OK) return st;
  rt.buffers = rt.model.vector_field(rt.model.root(), tfmt::kModelBuffers, 4);
  if (rt.model.failed()) return reader_error(rt.model, "model", msg);
  // One reader over the whole file, rooted at the TrainModel: the metadata's vectors and the
  // inference tensors' shapes and scales it refers to are then read the same way.
  rt.meta = FlatReader(model, static_cast<uint32_t>(model_len));
  FlatReader& r = rt.meta;
  const uint32_t meta_pos = static_cast<uint32_t>(meta - model);
  const uint32_t root_offset = load_u32(meta);
  if (root_offset > meta_len - 4)
    return malformed(msg, "root offset ", root_offset, " past the end (", meta_len, " bytes)");
  rt.root = r.table_at_pos(meta_pos + root_offset);
  const int32_t major = r.i32(rt.root, tfmt::kTmVersionMajor, 1), minor = r.i32(rt.root, tfmt::kTmVersionMinor, 0);
  if (r.failed()) return reader_error(r, "training metadata", msg);
  if (major != tfmt::kVersionMajor) {
    msg.add_all("unsupported: training metadata version ", major, ".", minor, "; this runtime reads version ",
                tfmt::kVersionMajor, ".x (export the model again)");
    return TT_UNSUPPORTED;
  }
  const Vector subgraphs = rt.model.vector_field(rt.model.root(), tfmt::kModelSubgraphs, 4);
  const int32_t infer_subgraph = r.i32(rt.root, tfmt::kTmInferSubgraph, 0);
  if (rt.model.failed()) return reader_error(rt.model, "model", msg);
  if (infer_subgraph < 0 || static_cast<uint32_t>(infer_subgraph) >= subgraphs.length)
    return malformed(msg, "inference subgraph ", infer_subgraph, " does not exist (", subgraphs.length, ")");
  rt.infer_tensors =
      r.vector_field(r.table_in(subgraphs, static_cast<uint32_t>(infer_subgraph)), tfmt::kSubGraphTensors, 4);
  rt.debug_tensor_names = r.vector_field(r.table_field(rt.root, tfmt::kTmDebug), tfmt::kDebugTensorNames, 4);
  rt.tensors = r.vector_field(rt.root, tfmt::kTmTensors, 4);
  rt.ops = r.vector_field(rt.root, tfmt::kTmOps, 4);
  rt.op_types = r.vector_field(rt.root, tfmt::kTmOpTypes, 4);
  const Table plan = r.table_field(rt.root, tfmt::kTmPlan);
  rt.steps = r.vector_field(plan, tfmt::kPlanSteps, 4);
  const uint64_t arena_bytes = r.u64(plan, tfmt::kPlanArenaBytes, 0);
  const uint64_t persistent_bytes = r.u64(plan, tfmt::kPlanPersistentBytes, 0);
  rt.num_classes = r.i32(rt.root, tfmt::kTmNumClasses, 0);
  const Table sig = r.table_field(rt.root, tfmt::kTmSignature);
  const Vector sig_in = r.vector_field(sig, tfmt::kSigInputs, 4), sig_out = r.vector_field(sig, tfmt::kSigOutputs, 4);
  const Str key = string_of(r, r.string_field(sig, tfmt::kSigKey));
  if (r.failed()) return reader_error(r, "training metadata", msg);
  if (!plan.present() || rt.steps.length == 0) return malformed(msg, "no memory plan");
  if (rt.tensors.length > kMaxTensors || rt.ops.length > kMaxOps)
    return malformed(msg, rt.tensors.length, " tensors and ", rt.ops.length, " ops (at most 65534 each)");
  if (rt.steps.length != rt.ops.length)
    return malformed(msg, "the plan has ", rt.steps.length, " steps for ", rt.ops.length, " ops");
  if (arena_bytes > (uint64_t{1} << 30) || persistent_bytes > arena_bytes || arena_bytes % kArenaAlignment)
    return malformed(msg, "plan arena of ", static_cast<unsigned long long>(arena_bytes), " bytes (persistent ",
                     static_cast<unsigned long long>(persistent_bytes), ")");
  rt.arena_bytes = static_cast<uint32_t>(arena_bytes);
  rt.persistent_bytes = static_cast<uint32_t>(persistent_bytes);
  rt.step_count = rt.steps.length;
  if (!str_equal(key, "train") || sig_in.length != 2 || sig_out.length != 1)
    return malformed(msg, "the signature is not 'train' (image, label) -> (loss)");
  rt.image = r.i32_in(sig_in, 0);
  rt.stream_input = r.u8(plan, tfmt::kPlanStreamInput, 0) ? 1 : 0;
  rt.label = r.i32_in(sig_in, 1);
  rt.loss = r.i32_in(sig_out, 0);
  const int32_t n = static_cast<int32_t>(rt.tensors.length);
  if (rt.image < 0 || rt.image >= n || rt.label < 0 || rt.label >= n || rt.loss < 0 || rt.loss >= n)
    return malformed(msg, "signature tensor index out of range");
  return TT_OK;
}

// Image, label, loss: what the caller reads and writes.
tt_status check_io(TrainRuntime& rt, Message& msg) {
  const TensorDesc image = decode_tensor(rt, rt.image), label = decode_tensor(rt, rt.label),
                   loss = decode_tensor(rt, rt.loss);
  // Any input of batch 1: an image (1xHxWxC), a signal (1xN or 1x1xNxC) or a feature vector (1xN).
  if (rt.stream_input && image.storage != tfmt::kBand)
    return malformed(msg, "the plan streams its input, which is not a band window");
  if (image.dtype != tfmt::kInt8 || image.storage != (rt.stream_input ? tfmt::kBand : tfmt::kArena) ||
      image.rank < 2 || image.dims[0] != 1)
    return malformed(msg, "the input must be an int8 arena tensor of batch 1 (1xN to 1xHxWxC)");
  if (label.dtype != tfmt::kInt32 || label.elements != 1 || label.storage != tfmt::kArena)
    return malformed(msg, "the label must be an int32 [1] arena tensor");
  if (loss.dtype != tfmt::kFloat32 || loss.elements != 1 || loss.storage != tfmt::kArena ||
      static_cast<uint32_t>(loss.last_step) != rt.step_count - 1)
    return malformed(msg, "the loss must be a float32 [1] arena tensor alive to the last step");
  if ((image.first_step != 0 && !rt.stream_input) || label.first_step != 0)
    return malformed(msg, "the image and label must be alive from step 0");
  if (rt.num_classes < 1) return malformed(msg, "num_classes ", rt.num_classes);
  return TT_OK;
}

// Each op runs in exactly one step.
tt_status check_order(TrainRuntime& rt, Message& msg) {
  FlatReader& r = rt.meta;
  for (uint32_t k = 0; k < rt.step_count; ++k) {
    const int32_t op = r.i32(r.table_in(rt.steps, k), tfmt::kStepOp, 0);
    if (op < 0 || static_cast<uint32_t>(op) >= rt.ops.length) return malformed(msg, "step ", k, " runs op ", op);
    for (uint32_t j = 0; j < k; ++j)
      if (r.i32(r.table_in(rt.steps, j), tfmt::kStepOp, 0) == op)
        return malformed(msg, "op ", op, " runs in steps ", j, " and ", k);
  }
  if (r.failed()) return reader_error(r, "training metadata", msg);
  return TT_OK;
}

int32_t step_of_op(TrainRuntime& rt, int32_t op) {
  FlatReader& r = rt.meta;
  for (uint32_t k = 0; k < rt.step_count; ++k)
    if (r.i32(r.table_in(rt.steps, k), tfmt::kStepOp, 0) == op) return static_cast<int32_t>(k);
  return -1;
}

// The loss op, the logits and the step writing them.
tt_status find_head(TrainRuntime& rt, Message& msg) {
  int32_t loss_op = -1;
  for (uint32_t i = 0; i < rt.ops.length; ++i) {
    const OpView op = decode_op(rt, static_cast<int32_t>(i));
    if (!str_equal(op.type, "SOFTMAX_CROSS_ENTROPY")) continue;
    if (loss_op >= 0) return malformed(msg, "more than one loss op");
    loss_op = static_cast<int32_t>(i);
  }
  if (loss_op < 0) return malformed(msg, "no SOFTMAX_CROSS_ENTROPY op");
  const OpView loss = decode_op(rt, loss_op);
  if (loss.inputs.length != 2) return malformed(msg, "the loss op needs (logits, label)");
  rt.logits = rt.meta.i32_in(loss.inputs, 0);
  if (rt.logits < 0 || static_cast<uint32_t>(rt.logits) >= rt.tensors.length) return malformed(msg, "logits index");
  const TensorDesc logits = decode_tensor(rt, rt.logits);
  if ((logits.dtype != tfmt::kFloat32 && logits.dtype != tfmt::kInt8) || logits.elements != rt.num_classes ||
      logits.storage != tfmt::kArena)
    return malformed(msg, "logits must be ", rt.num_classes, " float32 or int8 values in the arena");
  if (logits.dtype == tfmt::kInt8 && logits.scales.length != 1) return malformed(msg, "int8 logits need one scale");
  rt.head_is_float = logits.dtype == tfmt::kFloat32;
  rt.loss_step = step_of_op(rt, loss_op);
  rt.logits_step = logits.first_step;
  // Prediction runs the steps up to the one writing the logits: all of them must be forward steps.
  FlatReader& r = rt.meta;
  for (int32_t k = 0; k <= rt.logits_step && k >= 0; ++k) {
    const int32_t op = r.i32(r.table_in(rt.steps, static_cast<uint32_t>(k)), tfmt::kStepOp, 0);
    if (decode_op(rt, op).phase != tfmt::kPhaseForward) {
      rt.logits_step = -1;
      break;
    }
  }
  return TT_OK;
}

// Kernel of every step and the mask flags; with `ctx.preparing()` each kernel validates its step.
tt_status prepare_steps(TrainRuntime& rt, Message& msg, StepRec* recs) {
  TrainContext ctx(rt, msg, true);
  int32_t pending_fused = -1;
  bool pending_band = false;  // inside a band chain not yet closed by its last step
  for (uint32_t k = 0; k < rt.step_count; ++k) {
    tt_status st = ctx.begin_step(k);
    if (st != TT_OK) return st;
    const OpView& op = ctx.op();
    if (op.type.data == nullptr) return malformed(msg, "op ", op.index, " has no valid op type");
    const int32_t kernel = find_train_kernel(op.type);
    if (kernel < 0) {
      msg.clear();
      msg.add_all("unsupported: training op type '", op.type, "' (op ", op.index, ")");
      return TT_UNSUPPORTED;
    }
    const uint8_t mode = ctx.mode();
    if (mode > tfmt::kBandStep) return ctx.fail(TT_MALFORMED_MODEL, "unknown execution mode ", mode);
    const int32_t band_rows = band_rows_of(rt, k);
    if (band_rows != 0 && mode != tfmt::kBandStep)
      return ctx.fail(TT_MALFORMED_MODEL, "band rows ", band_rows, " on a step that is not a band step");
    if (mode != tfmt::kBandStep && mode != tfmt::kSkip) {
      if (pending_band) return ctx.fail(TT_MALFORMED_MODEL, "a band chain ends without band rows on its last step");
      // Only a band chain's last step touches its windows.
      for (int32_t i = 0; i < ctx.input_count() + ctx.output_count(); ++i) {
        const int32_t t = i < ctx.input_count() ? ctx.input(i) : ctx.output(i - ctx.input_count());
        if (t < 0 || static_cast<uint32_t>(t) >= rt.tensors.length) continue;
        TensorDesc d = decode_tensor(rt, t);
        if (d.storage == tfmt::kVirtualPad || d.storage == tfmt::kVirtualCrop) d = decode_tensor(rt, d.source);
        if (d.storage == tfmt::kBand)
          return ctx.fail(TT_MALFORMED_MODEL, "touches tensor ", t, ", a band window, outside its band chain");
      }
    }
    if (mode == tfmt::kBandStep) {
      if (pending_fused >= 0) return ctx.fail(TT_MALFORMED_MODEL, "a fused convolution before a band step");
      pending_band = band_rows == 0;
      if (band_rows != 0 && (st = prepare_band_chain(ctx)) != TT_OK) return st;
      if (rt.meta.failed()) return reader_error(rt.meta, "training metadata", msg);
      if (recs) {
        recs[k].op = static_cast<uint16_t>(op.index);
        recs[k].kernel = static_cast<uint8_t>(kernel);
        recs[k].flags = mode;
      }
      continue;
    }
    if (mode != tfmt::kSkip && mode != tfmt::kFused) {
      ctx.set_fused_op(pending_fused);
      if (pending_fused >= 0 && !str_equal(op.type, "DEPTHWISE_CONV_2D"))
        return ctx.fail(TT_MALFORMED_MODEL, "a fused convolution must be followed by the depthwise step that reads it");
    } else {
      ctx.set_fused_op(-1);
    }
    st = train_kernel(static_cast<uint32_t>(kernel))->prepare(ctx);
    if (st != TT_OK) return st;
    if (rt.meta.failed()) return reader_error(rt.meta, "training metadata", msg);
    if (mode == tfmt::kFused) {
      if (pending_fused >= 0) return ctx.fail(TT_MALFORMED_MODEL, "two fused steps in a row");
      pending_fused = op.index;
    } else if (mode != tfmt::kSkip) {
      pending_fused = -1;
    }
    if (recs) {
      recs[k].op = static_cast<uint16_t>(op.index);
      recs[k].kernel = static_cast<uint8_t>(kernel);
      recs[k].flags = mode;
    }
  }
  if (pending_fused >= 0) return malformed(msg, "the last step is a fused convolution");
  if (pending_band) return malformed(msg, "the last step is inside an unclosed band chain");
  // Bitmasks: written right after the step producing their activation.
  for (uint32_t t = 0; t < rt.tensors.length; ++t) {
    const TensorDesc m = decode_tensor(rt, static_cast<int32_t>(t));
    if (m.mask_of < 0) continue;
    const int32_t k = step_of_op(rt, m.mask_producer);
    const TensorDesc y = decode_tensor(rt, m.mask_of);
    if (k < 0 || m.first_step != k || y.storage != tfmt::kArena || y.first_step != k)
      return malformed(msg, "bitmask ", t, " (", tensor_name(rt, static_cast<int32_t>(t)),
                       ") is not written by the step producing its activation");
    if (find_mask(rt, m.mask_of) != static_cast<int32_t>(t)) return malformed(msg, "two bitmasks of one activation");
    if (recs) recs[k].flags |= kStepWritesMask;
  }
  return TT_OK;
}

// The tensor whose buffer `t` shares through in-place / alias steps (itself if none).
int32_t buffer_root(TrainRuntime& rt, int32_t t) {
  FlatReader& r = rt.meta;
  for (uint32_t hops = 0; hops <= rt.step_count; ++hops) {
    int32_t next = -1;
    for (uint32_t k = 0; k < rt.step_count && next < 0; ++k) {
      const Table st = r.table_in(rt.steps, k);
      const uint8_t mode = r.u8(st, tfmt::kStepMode, 0);
      if (mode != tfmt::kInPlace && mode != tfmt::kAlias) continue;
      const OpView op = decode_op(rt, r.i32(st, tfmt::kStepOp, 0));
      if (op.outputs.length && r.i32_in(op.outputs, 0) == t) next = r.i32(st, tfmt::kStepInplaceInput, -1);
    }
    if (next < 0 || next == t) return t;
    t = next;
  }
  return t;
}

struct Span {
  int64_t begin, end;
  int32_t first, last;
  int32_t root;  // buffer_root of the tensor (workspace only; -1 unknown)
};

bool overlap(const Span& a, const Span& b) {
  return a.begin < b.end && b.begin < a.end && a.first <= b.last && b.first <= a.last;
}

// No two step buffers alive at one step share bytes unless they are one buffer
// (the same offset, joined by in-place / alias steps); no step's scratch overlaps
// a buffer alive at that step. `temp`: workspace for one Span per tensor, or nullptr.
tt_status check_overlaps(TrainRuntime& rt, Message& msg, Span* temp) {
  const uint32_t n = rt.tensors.length;
  auto span_of = [&](uint32_t t) {
    if (temp) return temp[t];
    const TensorDesc d = decode_tensor(rt, static_cast<int32_t>(t));
    Span s = {0, 0, 0, -1, -1};
    if (d.storage == tfmt::kArena || d.storage == tfmt::kBand)
      s = {d.offset, d.offset + d.arena_bytes, d.first_step, d.last_step, -1};
    return s;
  };
  FlatReader& r = rt.meta;
  if (temp) {
    for (uint32_t t = 0; t < n; ++t) {
      const TensorDesc d = decode_tensor(rt, static_cast<int32_t>(t));
      temp[t] = {0, 0, 0, -1, static_cast<int32_t>(t)};
      if (d.storage == tfmt::kArena || d.storage == tfmt::kBand)
        temp[t] = {d.offset, d.offset + d.arena_bytes, d.first_step, d.last_step, static_cast<int32_t>(t)};
    }
    // Buffer roots in one pass: an in-place / alias output joins its input's buffer, whose
    // root is final because the input was written by an earlier step.
    for (uint32_t k = 0; k < rt.step_count; ++k) {
      const Table st = r.table_in(rt.steps, k);
      const uint8_t mode = r.u8(st, tfmt::kStepMode, 0);
      if (mode != tfmt::kInPlace && mode != tfmt::kAlias) continue;
      const OpView op = decode_op(rt, r.i32(st, tfmt::kStepOp, 0));
      const int32_t in = r.i32(st, tfmt::kStepInplaceInput, -1);
      const int32_t out = op.outputs.length ? r.i32_in(op.outputs, 0) : -1;
      if (in >= 0 && out >= 0 && static_cast<uint32_t>(in) < n && static_cast<uint32_t>(out) < n)
        temp[out].root = temp[in].root;
    }
  }
  auto root_of = [&](uint32_t t) { return temp ? temp[t].root : buffer_root(rt, static_cast<int32_t>(t)); };
  for (uint32_t a = 0; a < n; ++a) {
    const Span sa = span_of(a);
    if (sa.last < sa.first || sa.end == sa.begin) continue;
    for (uint32_t b = a + 1; b < n; ++b) {
      const Span sb = span_of(b);
      if (sb.last < sb.first || !overlap(sa, sb)) continue;
      if (sa.begin == sb.begin && root_of(a) == root_of(b)) continue;
      if (band_writes_over(rt, static_cast<int32_t>(a), static_cast<int32_t>(b)) ||
          band_writes_over(rt, static_cast<int32_t>(b), static_cast<int32_t>(a)))
        continue;  // prepare_band_chain checked the gap
      return malformed(msg, "tensors ", a, " and ", b, " are alive at the same step on overlapping bytes (",
                       tensor_name(rt, static_cast<int32_t>(a)), ", ", tensor_name(rt, static_cast<int32_t>(b)), ")");
    }
  }
  for (uint32_t k = 0; k < rt.step_count; ++k) {
    const Table st = r.table_in(rt.steps, k);
    const int64_t bytes = r.i32(st, tfmt::kStepScratchBytes, 0);
    if (!bytes) continue;
    const int64_t offset = r.i32(st, tfmt::kStepScratchOffset, 0);
    const int32_t at = static_cast<int32_t>(scratch_step_of(rt, k));  // a band step's: its chain's last step
    const Span s = {offset, offset + bytes, at, at, -1};
    for (uint32_t t = 0; t < n; ++t) {
      const Span sp = span_of(t);
      if (sp.last >= sp.first && overlap(s, sp))
        return malformed(msg, "the scratch of step ", k, " overlaps tensor ", t, ", alive at that step (",
                         tensor_name(rt, static_cast<int32_t>(t)), ")");
    }
  }
  return TT_OK;
}

// Everything except the arena-dependent checks, with `rt` on the stack.
tt_status validate(TrainRuntime& rt, Message& msg) {
  tt_status st;
  for (uint32_t t = 0; t < rt.tensors.length; ++t)
    if ((st = check_tensor(rt, static_cast<int32_t>(t), msg)) != TT_OK) return st;
  rt.mask_begin = static_cast<int32_t>(rt.tensors.length);
  for (uint32_t t = rt.tensors.length; t-- > 0;)
    if (decode_tensor(rt, static_cast<int32_t>(t)).mask_of >= 0) rt.mask_begin = static_cast<int32_t>(t);
  for (uint32_t i = 0; i < rt.ops.length; ++i) {
    const OpView op = decode_op(rt, static_cast<int32_t>(i));
    if (rt.meta.failed()) return reader_error(rt.meta, "training metadata", msg);
    if (!op.type.data) return malformed(msg, "op ", i, " has an opcode outside op_types");
    if (op.phase > tfmt::kPhaseUpdate) return malformed(msg, "op ", i, " has unknown phase ", op.phase);
  }
  if ((st = check_order(rt, msg)) != TT_OK) return st;
  if ((st = check_io(rt, msg)) != TT_OK) return st;
  if ((st = find_head(rt, msg)) != TT_OK) return st;
  rt.rng = -1;
  for (uint32_t t = 0; t < rt.tensors.length; ++t)
    if (decode_tensor(rt, static_cast<int32_t>(t)).kind == tfmt::kState) rt.rng = static_cast<int32_t>(t);
  return prepare_steps(rt, msg, nullptr);
}

// Copy a persistent tensor's initial value (trained channels only if split).
void load_persistent(TrainRuntime& rt, const TensorDesc& d) {
  uint32_t len;
  const uint8_t* src = buffer_data(rt, d.buffer, &len);
  uint8_t* dst = rt.arena + d.offset;
  if (!d.split_channels.length) {
    memcpy(dst, src, static_cast<size_t>(d.bytes));
    return;
  }
  const uint32_t es = tfmt::dtype_size(d.dtype), nsel = d.split_channels.length;
  const int32_t last = d.dims[d.rank - 1];
  const int64_t rows = d.elements / last;
  for (int64_t row = 0; row < rows; ++row)
    for (uint32_t j = 0; j < nsel; ++j) {
      const int32_t c = rt.meta.i32_in(d.split_channels, j);
      memcpy(dst + (row * nsel + j) * es, src + (row * last + c) * es, es);
    }
}

void write_masks(TrainRuntime& rt, int32_t op) {
  FlatReader& r = rt.meta;
  for (uint32_t t = 0; t < rt.tensors.length; ++t) {
    const Table table = r.table_in(rt.tensors, t);
    if (r.i32(table, tfmt::kTensorMaskOf, -1) < 0 || r.i32(table, tfmt::kTensorMaskProducer, -1) != op) continue;
    const TensorDesc m = decode_tensor(rt, static_cast<int32_t>(t));
    const TensorDesc y = decode_tensor(rt, m.mask_of);
    const int8_t* v = reinterpret_cast<const int8_t*>(y.data);
    for (int64_t i = 0; i < m.elements; ++i) m.data[i] = 0;
    for (int64_t i = 0; i < y.elements; ++i)
      if (m.mask_min < v[i] && v[i] < m.mask_max) m.data[i >> 3] |= static_cast<uint8_t>(1u << (i & 7));
  }
}

// TT_POISON_ARENA builds (arena_poison.h): only the persistent region, the step buffers alive at
// step k and its scratch are addressable while step k runs.
void poison_all_but_live(TrainRuntime& rt, uint32_t k, const TrainContext& ctx) {
  arena_poison(rt.arena + rt.persistent_bytes, rt.arena_bytes - rt.persistent_bytes);
  FlatReader& r = rt.meta;  // only the fields needed (a full decode_tensor per tensor and step is slow)
  for (uint32_t t = 0; t < rt.tensors.length; ++t) {
    const Table table = r.table_in(rt.tensors, t);
    const uint8_t storage = r.u8(table, tfmt::kTensorStorage, 0);
    if (storage != tfmt::kArena && storage != tfmt::kBand) continue;
    const int32_t first = r.i32(table, tfmt::kTensorFirstStep, -1), last = r.i32(table, tfmt::kTensorLastStep, -1);
    if (first <= static_cast<int32_t>(k) && static_cast<int32_t>(k) <= last) {
      const TensorDesc d = decode_tensor(rt, static_cast<int32_t>(t));  // arena bytes may be implied
      arena_unpoison(rt.arena + d.offset, static_cast<size_t>(d.arena_bytes));
    }
  }
  arena_unpoison(ctx.scratch(), ctx.scratch_bytes());
  // A band chain's last step also uses the scratch (requantization tables) of its other steps.
  for (uint32_t j = k; j-- > 0 && (r.u8(r.table_in(rt.steps, j), tfmt::kStepMode, 0) == tfmt::kBandStep ||
                                   r.u8(r.table_in(rt.steps, j), tfmt::kStepMode, 0) == tfmt::kSkip);) {
    const Table st = r.table_in(rt.steps, j);
    if (scratch_step_of(rt, j) != k) continue;
    const int32_t bytes = r.i32(st, tfmt::kStepScratchBytes, 0);
    if (bytes > 0) arena_unpoison(rt.arena + r.i32(st, tfmt::kStepScratchOffset, 0), static_cast<size_t>(bytes));
  }
}

tt_status run_step(TrainRuntime& rt, TrainContext& ctx, uint32_t k) {
  const StepRec& rec = rt.step_recs[k];
  tt_status st = ctx.begin_step(k);
  if (st != TT_OK) return st;
  if (kArenaPoisoning) poison_all_but_live(rt, k, ctx);
  const uint8_t mode = rec.flags & kStepModeMask;
  if (mode == tfmt::kBandStep) {  // a band chain runs at its last step; the others do nothing
    if (band_rows_of(rt, k) > 0) st = eval_band_chain(ctx);
    if (st != TT_OK) return st;
    if (rec.flags & kStepWritesMask) write_masks(rt, rec.op);
    if (tt_profile_step_end) tt_profile_step_end(k);
    return TT_OK;
  }
  if (mode == tfmt::kSkip || mode == tfmt::kFused) {
    if (mode == tfmt::kFused) ctx.set_fused_op(rec.op);
    st = train_kernel(rec.kernel)->eval(ctx);
    if (st == TT_OK && tt_profile_step_end) tt_profile_step_end(k);
    return st;
  }
  st = train_kernel(rec.kernel)->eval(ctx);
  ctx.set_fused_op(-1);
  if (st != TT_OK) return st;
  if (rec.flags & kStepWritesMask) write_masks(rt, rec.op);
  if (tt_profile_step_end) tt_profile_step_end(k);
  return TT_OK;
}

// Right after the loss step, before any parameter changes: a non-finite loss or logit abandons the
// step. Otherwise the largest |logit| (float head) is kept: it quantizes the float head for inference.
tt_status check_loss_and_logits(TrainRuntime& rt, Message& msg) {
  float absmax = rt.logit_absmax;
  if (rt.head_is_float) {
    const float* z = reinterpret_cast<const float*>(decode_tensor(rt, rt.logits).data);
    for (int32_t i = 0; i < rt.num_classes; ++i) {
      if (!isfinite(z[i])) {
        msg.clear();
        msg.add_all("non-finite logit ", i, ": step abandoned, no parameter changed");
        return TT_NUMERIC_ERROR;
      }
      absmax = fmaxf(absmax, fabsf(z[i]));
    }
  }
  const float loss = *reinterpret_cast<const float*>(decode_tensor(rt, rt.loss).data);
  if (!isfinite(loss)) {
    msg.clear();
    msg.add("non-finite loss: step abandoned, no parameter changed");
    return TT_NUMERIC_ERROR;
  }
  rt.logit_absmax = absmax;
  return TT_OK;
}

}  // namespace

tt_status train_initialize(tt_trainer* it, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len) {
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
  // 1. Validate with the runtime on the stack.
  TrainRuntime sizing;
  tt_status st = open_train(sizing, model, model_len, msg);
  if (st == TT_OK) st = validate(sizing, msg);
  if (st != TT_OK) return st;

  // 2. Arena: [TrainRuntime][StepRec x S][plan arena], 16-byte aligned.
  const uintptr_t raw = reinterpret_cast<uintptr_t>(arena);
  const size_t pad = static_cast<size_t>(((raw + 15u) & ~static_cast<uintptr_t>(15u)) - raw);
  const size_t state = align_up16(sizeof(TrainRuntime)) + align_up16(sizing.step_count * sizeof(StepRec));
  const size_t needed = pad + state + sizing.arena_bytes;
  if (arena_len < needed) {
    it->arena_needed = needed + 15;  // enough for any alignment of the next arena
    msg.clear();
    msg.add_all("arena too small: ", static_cast<unsigned long long>(arena_len), " bytes given, ",
                static_cast<unsigned long long>(needed), " needed (plan arena ", sizing.arena_bytes, " + runtime state ",
                static_cast<unsigned long long>(state), ")");
    return TT_ARENA_TOO_SMALL;
  }
  uint8_t* base = arena + pad;
  TrainRuntime* rt = new (base) TrainRuntime(sizing);
  rt->step_recs = reinterpret_cast<StepRec*>(base + align_up16(sizeof(TrainRuntime)));
  rt->arena = base + state;
  rt->arena_used = needed;
  rt->logit_absmax = 0.0f;
  rt->steps_done = 0;

  // 3. Offsets: overlap checks, with the step region as workspace when it is large enough.
  const size_t step_region = rt->arena_bytes - rt->persistent_bytes;
  Span* temp = step_region >= rt->tensors.length * sizeof(Span) && (rt->persistent_bytes % alignof(Span)) == 0
                   ? reinterpret_cast<Span*>(rt->arena + rt->persistent_bytes)
                   : nullptr;
  if ((st = check_overlaps(*rt, msg, temp)) != TT_OK) return st;
  if ((st = prepare_steps(*rt, msg, rt->step_recs)) != TT_OK) return st;

  // 4. Initial values.
  memset(rt->arena, 0, rt->arena_bytes);
  for (uint32_t t = 0; t < rt->tensors.length; ++t) {
    const TensorDesc d = decode_tensor(*rt, static_cast<int32_t>(t));
    if (d.storage == tfmt::kPersistent) load_persistent(*rt, d);
  }
  if (rt->rng >= 0 && *reinterpret_cast<uint32_t*>(decode_tensor(*rt, rt->rng).data) == 0)
    return malformed(msg, "the RNG state is 0 (xorshift32 would stay at 0)");
  msg.clear();
  it->impl = rt;
  return TT_OK;
}

namespace {

// The rows of a whole image in the caller's memory (tt_train_step with a streamed plan).
int image_row(void* context, int32_t row, int8_t* dst, size_t row_bytes) {
  memcpy(dst, static_cast<const uint8_t*>(context) + static_cast<size_t>(row) * row_bytes, row_bytes);
  return 0;
}

// The call's input: a streamed plan's band chain fetches its rows from `fn` as it runs; any
// other plan gets its input tensor filled now, rows 0 .. H-1 (row = the bytes of one index of
// dimension 1).
tt_status load_rows(TrainRuntime& rt, Message& msg, tt_row_source fn, void* context) {
  rt.rows = RowSource();
  if (rt.stream_input) {
    rt.rows.fn = fn;
    rt.rows.context = context;
    return TT_OK;
  }
  const TensorDesc in = decode_tensor(rt, rt.image);
  const size_t row = static_cast<size_t>(in.bytes / in.dims[1]);
  for (int32_t r = 0; r < in.dims[1]; ++r) {
    if (fn(context, r, reinterpret_cast<int8_t*>(in.data) + r * row, row)) {
      msg.clear();
      msg.add_all("the row source failed at input row ", r, ": call abandoned, no parameter changed");
      return TT_INVALID_ARGUMENT;
    }
  }
  return TT_OK;
}

// The whole image as the call's input (zero-copy when written in place).
tt_status load_image(TrainRuntime& rt, Message& msg, const void* image, size_t image_len) {
  const TensorDesc in = decode_tensor(rt, rt.image);
  if (image_len != static_cast<size_t>(in.bytes)) {
    msg.clear();
    msg.add_all("image is ", static_cast<long long>(in.bytes), " bytes (");
    for (int32_t i = 0; i < in.rank; ++i) msg.add_all(i ? "x" : "", in.dims[i]);
    msg.add_all(" int8), got ", static_cast<unsigned long long>(image_len));
    return TT_SHAPE_MISMATCH;
  }
  if (rt.stream_input) return load_rows(rt, msg, image_row, const_cast<void*>(image));
  if (in.data != image) memcpy(in.data, image, image_len);
  return TT_OK;
}

tt_status check_label(TrainRuntime& rt, Message& msg, int32_t label) {
  if (label >= 0 && label < rt.num_classes) return TT_OK;
  msg.clear();
  msg.add_all("label ", label, " outside [0, ", rt.num_classes, ")");
  return TT_INVALID_ARGUMENT;
}

tt_status check_logits(TrainRuntime& rt, Message& msg, size_t count) {
  if (count != static_cast<size_t>(rt.num_classes)) {
    msg.clear();
    msg.add_all("logits buffer holds ", static_cast<unsigned long long>(count), " values, the model has ",
                rt.num_classes, " classes");
    return TT_SHAPE_MISMATCH;
  }
  if (rt.logits_step < 0) {
    msg.clear();
    msg.add("unsupported: the plan does not compute the logits in a forward-only prefix of its steps");
    return TT_UNSUPPORTED;
  }
  return TT_OK;
}

tt_status run_train(TrainRuntime& rt, Message& msg, int32_t label, float* loss);
tt_status run_predict(TrainRuntime& rt, Message& msg, float* logits, size_t count);

}  // namespace

tt_status train_step(TrainRuntime& rt, Message& msg, const void* image, size_t image_len, int32_t label,
                     float* loss) {
  tt_status st = load_image(rt, msg, image, image_len);
  if (st == TT_OK) st = check_label(rt, msg, label);
  if (st == TT_OK) st = run_train(rt, msg, label, loss);
  rt.rows = RowSource();
  return st;
}

tt_status train_step_rows(TrainRuntime& rt, Message& msg, tt_row_source rows, void* context, int32_t label,
                          float* loss) {
  tt_status st = check_label(rt, msg, label);  // before any row is read
  if (st == TT_OK) st = load_rows(rt, msg, rows, context);
  if (st == TT_OK) st = run_train(rt, msg, label, loss);
  rt.rows = RowSource();
  return st;
}

tt_status train_predict(TrainRuntime& rt, Message& msg, const void* image, size_t image_len, float* logits,
                        size_t count) {
  tt_status st = load_image(rt, msg, image, image_len);
  if (st == TT_OK) st = check_logits(rt, msg, count);
  if (st == TT_OK) st = run_predict(rt, msg, logits, count);
  rt.rows = RowSource();
  return st;
}

tt_status train_predict_rows(TrainRuntime& rt, Message& msg, tt_row_source rows, void* context, float* logits,
                             size_t count) {
  tt_status st = check_logits(rt, msg, count);
  if (st == TT_OK) st = load_rows(rt, msg, rows, context);
  if (st == TT_OK) st = run_predict(rt, msg, logits, count);
  rt.rows = RowSource();
  return st;
}

namespace {

// One training step on the loaded input.
tt_status run_train(TrainRuntime& rt, Message& msg, int32_t label, float* loss) {
  const TensorDesc lab = decode_tensor(rt, rt.label);
  memcpy(lab.data, &label, sizeof label);
  TrainContext ctx(rt, msg, false);
  tt_status st = TT_OK;
  for (uint32_t k = 0; k < rt.step_count && st == TT_OK; ++k) {
    st = run_step(rt, ctx, k);
    // The loss step comes before every step that writes a parameter or the RNG (checked at
    // init), so a step abandoned here leaves the trainer exactly as it was (atomic steps).
    if (st == TT_OK && static_cast<int32_t>(k) == rt.loss_step) st = check_loss_and_logits(rt, msg);
  }
  if (kArenaPoisoning) arena_unpoison(rt.arena, rt.arena_bytes);
  if (st != TT_OK) return st;
  *loss = *reinterpret_cast<const float*>(decode_tensor(rt, rt.loss).data);
  ++rt.steps_done;
  return TT_OK;
}

// The forward pass up to the logits on the loaded input.
tt_status run_predict(TrainRuntime& rt, Message& msg, float* logits, size_t count) {
  TrainContext ctx(rt, msg, false);
  tt_status st = TT_OK;
  for (int32_t k = 0; k <= rt.logits_step && st == TT_OK; ++k) st = run_step(rt, ctx, static_cast<uint32_t>(k));
  if (kArenaPoisoning) arena_unpoison(rt.arena, rt.arena_bytes);
  if (st != TT_OK) return st;
  const TensorDesc z = decode_tensor(rt, rt.logits);
  if (rt.head_is_float) {
    memcpy(logits, z.data, count * sizeof(float));
  } else {
    const float scale = rt.meta.f32_in(z.scales, 0);
    const int32_t zp = z.zero_points.length ? rt.meta.i32_in(z.zero_points, 0) : 0;
    for (size_t i = 0; i < count; ++i) logits[i] = static_cast<float>(static_cast<int8_t>(z.data[i]) - zp) * scale;
  }
  return TT_OK;
}

}  // namespace

int32_t parameter_tensor(TrainRuntime& rt, size_t index) {
  size_t seen = 0;
  for (uint32_t t = 0; t < rt.tensors.length; ++t) {
    const uint8_t kind = rt.meta.u8(rt.meta.table_in(rt.tensors, t), tfmt::kTensorKind, 0);
    if (kind != tfmt::kParameter && kind != tfmt::kState) continue;
    if (seen++ == index) return static_cast<int32_t>(t);
  }
  return -1;
}

size_t parameter_count(TrainRuntime& rt) {
  size_t n = 0;
  while (parameter_tensor(rt, n) >= 0) ++n;
  return n;
}

void parameter_bytes(TrainRuntime& rt, const TensorDesc& d, uint8_t* out) {
  if (!d.split_channels.length) {
    memcpy(out, d.data, static_cast<size_t>(d.bytes));
    return;
  }
  uint32_t len;
  const uint8_t* flash = buffer_data(rt, d.buffer, &len);
  memcpy(out, flash, static_cast<size_t>(d.bytes));  // frozen channels
  const uint32_t es = tfmt::dtype_size(d.dtype), nsel = d.split_channels.length;
  const int32_t last = d.dims[d.rank - 1];
  const int64_t rows = d.elements / last;
  for (int64_t row = 0; row < rows; ++row)
    for (uint32_t j = 0; j < nsel; ++j) {
      const int32_t c = rt.meta.i32_in(d.split_channels, j);
      memcpy(out + (row * last + c) * es, d.data + (row * nsel + j) * es, es);
    }
}

}  // namespace train
}  // namespace tt
