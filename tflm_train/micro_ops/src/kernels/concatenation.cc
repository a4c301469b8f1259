// CONCATENATION, int8: TFLite Micro's reference concatenation. Prepare checks
// what TFLite Micro's does (activation NONE, at most 10 inputs, every input's
// scale and zero point equal to the output's, so nothing is requantized) and
// the shapes; Eval copies, for each index of the dimensions before the axis,
// each input's contiguous block in input order.
#include <string.h>

#include "kernel_util.h"

namespace tt {
namespace {

constexpr int32_t kMaxInputs = 10;  // TFLite Micro's kMaxInputNum

struct ConcatenationData {
  int32_t output;
  int32_t count;
  int32_t outer;                   // product of the output dims before the axis
  int32_t inputs[kMaxInputs];
  int32_t block_bytes[kMaxInputs]; // per outer index: input dims from the axis on
};

tt_status parse(Context& ctx, const NodeRec& node, ConcatenationData* d) {
  if (node.input_count < 1 || node.input_count > kMaxInputs)
    return ctx.fail(TT_UNSUPPORTED, "has ", static_cast<int32_t>(node.input_count), " inputs, 1 to ", kMaxInputs,
                    " expected");
  tt_status st = check_arity(ctx, node, node.input_count, node.input_count, 1);
  if (st != TT_OK) return st;
  d->output = node.output(0);
  d->count = node.input_count;
  if ((st = check_type(ctx, d->output, schema::kInt8, "output")) != TT_OK) return st;
  const Table opts = ctx.options(node, schema::kOptionsConcatenation);
  const uint8_t activation = ctx.reader().u8(opts, schema::kConcatActivation, 0);
  if (activation != schema::kActNone) return ctx.fail(TT_UNSUPPORTED, "a fused activation (NONE expected)");
  const Shape out = ctx.shape(d->output);
  int32_t axis = ctx.reader().i32(opts, schema::kConcatAxis, 0);
  if (axis < 0) axis += out.rank;
  if (axis < 0 || axis >= out.rank) return ctx.fail(TT_MALFORMED_MODEL, "axis out of range for the output rank");
  int32_t along = 0;
  for (int32_t i = 0; i < d->count; ++i) {
    d->inputs[i] = node.input(i);
    if ((st = check_type(ctx, d->inputs[i], schema::kInt8, "input")) != TT_OK) return st;
    const Shape in = ctx.shape(d->inputs[i]);
    if (in.rank != out.rank) return ctx.fail(TT_SHAPE_MISMATCH, "input ", i, " has rank ", in.rank, ", output ", out.rank);
    int64_t block = 1;
    for (int32_t k = 0; k < out.rank; ++k) {
      if (k != axis && in.dim(k) != out.dim(k))
        return ctx.fail(TT_SHAPE_MISMATCH, "input ", i, " differs from the output in dimension ", k);
      if (k >= axis) block *= in.dim(k);
    }
    if (block > 0x7fffffff) return ctx.fail(TT_UNSUPPORTED, "input ", i, " is too large");
    d->block_bytes[i] = static_cast<int32_t>(block);
    along += in.dim(axis);
  }
  if (along != out.dim(axis))
    return ctx.fail(TT_SHAPE_MISMATCH, "inputs add up to ", along, " along the axis, the output has ", out.dim(axis));
  int64_t outer = 1;
  for (int32_t k = 0; k < axis; ++k) outer *= out.dim(k);
  d->outer = static_cast<int32_t>(outer);
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  ConcatenationData d;
  memory->op_data_bytes = sizeof(ConcatenationData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  ConcatenationData* d = static_cast<ConcatenationData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_out;
  int32_t zp_out;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &zp_out)) != TT_OK) return st;
  for (int32_t i = 0; i < d->count; ++i) {
    float s;
    int32_t zp;
    if ((st = per_tensor_quant(ctx, d->inputs[i], "input", &s, &zp)) != TT_OK) return st;
    if (s != s_out || zp != zp_out)
      return ctx.fail(TT_UNSUPPORTED, "input ", i, " is quantized unlike the output (equal scale and zero point "
                      "expected: int8 CONCATENATION does not requantize)");
  }
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const ConcatenationData& d = *static_cast<const ConcatenationData*>(node.op_data);
  uint8_t* y = ctx.data(d.output);
  for (int32_t k = 0; k < d.outer; ++k) {
    for (int32_t i = 0; i < d.count; ++i) {
      const int32_t n = d.block_bytes[i];
      memcpy(y, ctx.data(d.inputs[i]) + static_cast<size_t>(k) * n, static_cast<size_t>(n));
      y += n;
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kConcatenation = {schema::kOpConcatenation, nullptr, "CONCATENATION", size, prepare, eval};

}  // namespace tt
