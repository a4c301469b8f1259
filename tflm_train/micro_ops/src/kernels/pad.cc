// PAD with constant paddings [rank, 2] (int32 or int64): the output is the
// input surrounded by the pad value, which is the output zero point for
// quantized tensors (real zero) and 0 otherwise. Any element type.
#include <string.h>

#include "kernel_util.h"

namespace tt {
namespace {

struct PadData {
  int32_t input, output;
  uint32_t elem_size;
  int32_t in_dims[TT_MAX_RANK];   // extended to 6 dims
  int32_t out_dims[TT_MAX_RANK];
  int32_t before[TT_MAX_RANK];
  uint8_t pad_value[8];           // one element
};

tt_status parse(Context& ctx, const NodeRec& node, PadData* d) {
  tt_status st = check_arity(ctx, node, 2, 2, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  const int32_t paddings = node.input(1);
  d->output = node.output(0);
  if (ctx.type(d->input) != ctx.type(d->output))
    return ctx.fail(TT_SHAPE_MISMATCH, "input is ", schema::type_name(ctx.type(d->input)), ", output is ",
                    schema::type_name(ctx.type(d->output)));
  d->elem_size = schema::type_size(ctx.type(d->input));
  const uint8_t pad_type = ctx.type(paddings);
  if (pad_type != schema::kInt32 && pad_type != schema::kInt64)
    return ctx.fail(TT_UNSUPPORTED, "paddings of type ", schema::type_name(pad_type));
  const uint8_t* pads = ctx.constant_data(paddings);
  if (!pads) return ctx.fail(TT_UNSUPPORTED, "paddings must be a constant");
  const Shape in = ctx.shape(d->input), ps = ctx.shape(paddings);
  if (ps.rank != 2 || ps.dim(0) != in.rank || ps.dim(1) != 2)
    return ctx.fail(TT_SHAPE_MISMATCH, "paddings must have shape [", in.rank, ", 2]");
  int32_t expected[TT_MAX_RANK];
  const int32_t lead = TT_MAX_RANK - in.rank;
  for (int32_t i = 0; i < TT_MAX_RANK; ++i) {
    d->in_dims[i] = d->out_dims[i] = 1;
    d->before[i] = 0;
  }
  for (int32_t k = 0; k < in.rank; ++k) {
    int64_t lo, hi;
    if (pad_type == schema::kInt32) {
      lo = load_i32(pads + 8 * k);
      hi = load_i32(pads + 8 * k + 4);
    } else {
      lo = load_i64(pads + 16 * k);
      hi = load_i64(pads + 16 * k + 8);
    }
    if (lo < 0 || hi < 0 || lo > 65535 || hi > 65535)
      return ctx.fail(TT_UNSUPPORTED, "padding ", static_cast<long long>(lo), ", ", static_cast<long long>(hi),
                      " of dimension ", k, " (0..65535 supported)");
    const int64_t padded = in.dim(k) + lo + hi;
    if (padded > 0x7FFFFFFF) return ctx.fail(TT_UNSUPPORTED, "padded dimension ", k, " exceeds int32");
    expected[k] = static_cast<int32_t>(padded);
    d->in_dims[lead + k] = in.dim(k);
    d->out_dims[lead + k] = expected[k];
    d->before[lead + k] = static_cast<int32_t>(lo);
  }
  if ((st = check_shape(ctx, d->output, expected, in.rank, "output")) != TT_OK) return st;
  memset(d->pad_value, 0, sizeof d->pad_value);
  if (ctx.scale_count(d->output) > 0) {
    const int32_t zp = ctx.zero_point(d->output);
    switch (ctx.type(d->output)) {
      case schema::kInt8: d->pad_value[0] = static_cast<uint8_t>(static_cast<int8_t>(zp)); break;
      case schema::kUInt8: d->pad_value[0] = static_cast<uint8_t>(zp); break;
      case schema::kInt16: {
        const int16_t v = static_cast<int16_t>(zp);
        memcpy(d->pad_value, &v, 2);
        break;
      }
      default: break;
    }
  }
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  PadData d;
  memory->op_data_bytes = sizeof(PadData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) { return parse(ctx, node, static_cast<PadData*>(node.op_data)); }

void fill(uint8_t* dst, int32_t count, const PadData& d) {
  if (d.elem_size == 1) {
    memset(dst, d.pad_value[0], static_cast<size_t>(count));
    return;
  }
  for (int32_t i = 0; i < count; ++i) memcpy(dst + i * d.elem_size, d.pad_value, d.elem_size);
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const PadData& d = *static_cast<const PadData*>(node.op_data);
  const uint8_t* x = ctx.data(d.input);
  uint8_t* y = ctx.data(d.output);
  const int32_t es = static_cast<int32_t>(d.elem_size);
  const int32_t inner_out = d.out_dims[TT_MAX_RANK - 1];
  const int32_t inner_in = d.in_dims[TT_MAX_RANK - 1];
  const int32_t before = d.before[TT_MAX_RANK - 1];
  int32_t rows = 1;
  for (int32_t k = 0; k < TT_MAX_RANK - 1; ++k) rows *= d.out_dims[k];
  int32_t index[TT_MAX_RANK - 1] = {0, 0, 0, 0, 0};
  for (int32_t row = 0; row < rows; ++row) {
    uint8_t* dst = y + static_cast<size_t>(row) * inner_out * es;
    // Input row of this output row, if every outer coordinate is inside the input.
    bool inside = true;
    int32_t in_row = 0;
    for (int32_t k = 0; k < TT_MAX_RANK - 1; ++k) {
      const int32_t i = index[k] - d.before[k];
      if (i < 0 || i >= d.in_dims[k]) {
        inside = false;
        break;
      }
      in_row = in_row * d.in_dims[k] + i;
    }
    if (!inside || inner_in == 0) {
      fill(dst, inner_out, d);
    } else {
      fill(dst, before, d);
      memcpy(dst + before * es, x + static_cast<size_t>(in_row) * inner_in * es, static_cast<size_t>(inner_in) * es);
      fill(dst + (before + inner_in) * es, inner_out - before - inner_in, d);
    }
    for (int32_t k = TT_MAX_RANK - 2; k >= 0; --k) {
      if (++index[k] < d.out_dims[k]) break;
      index[k] = 0;
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kPad = {schema::kOpPad, nullptr, "PAD", size, prepare, eval};

}  // namespace tt
