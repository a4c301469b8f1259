// MEAN over constant axes, int8: TFLite Micro's integer mean (the compute core
// pool_core.h, shared with training). The int32 sum over the reduced axes becomes
//   y = clamp(MBQM(sum - zp_in * n, M') + zp_out)
// where M' folds the division by the element count n into the rescale
// M = s_in / s_out: with k = min(floor(log2 n), 32, 31 + shift),
// multiplier' = (multiplier << k) / n and shift' = shift - k.
#include "int8_common.h"
#include "kernel_util.h"
#include "pool_core.h"

namespace tt {
namespace {

struct MeanData {
  int32_t input, output;
  MeanCore core;  // everything but the data pointers
};

tt_status parse(Context& ctx, const NodeRec& node, MeanData* d) {
  tt_status st = check_arity(ctx, node, 2, 2, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  const int32_t axis = node.input(1);
  d->output = node.output(0);
  if ((st = check_type(ctx, d->input, schema::kInt8, "input")) != TT_OK) return st;
  if ((st = check_type(ctx, d->output, schema::kInt8, "output")) != TT_OK) return st;
  if ((st = check_type(ctx, axis, schema::kInt32, "axis")) != TT_OK) return st;
  const uint8_t* axis_data = ctx.constant_data(axis);
  if (!axis_data) return ctx.fail(TT_UNSUPPORTED, "axis must be a constant");
  const bool keep_dims = ctx.reader().u8(ctx.options(node, schema::kOptionsReducer), schema::kReducerKeepDims, 0);
  const Shape in = ctx.shape(d->input);
  MeanCore& c = d->core;
  c = MeanCore();
  c.rank = in.rank;
  bool* reduced = c.reduced;
  const int64_t axis_count = ctx.shape(axis).elements();
  for (int64_t i = 0; i < axis_count; ++i) {
    int32_t a = load_i32(axis_data + 4 * i);
    if (a < -in.rank || a >= in.rank)
      return ctx.fail(TT_MALFORMED_MODEL, "axis ", a, " out of range for rank ", in.rank);
    if (a < 0) a += in.rank;
    reduced[a] = true;
  }
  int32_t expected[TT_MAX_RANK];
  int32_t out_rank = 0;
  for (int32_t k = 0; k < in.rank; ++k) {
    c.dims[k] = in.dim(k);
    if (reduced[k]) {
      c.count *= in.dim(k);
      if (keep_dims) expected[out_rank++] = 1;
    } else {
      expected[out_rank++] = in.dim(k);
    }
  }
  if ((st = check_shape(ctx, d->output, expected, out_rank, "output")) != TT_OK) return st;
  c.out_elements = ctx.shape(d->output).elements();
  if (c.count > 65000) return ctx.fail(TT_UNSUPPORTED, "mean over more than 65000 elements");
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  MeanData d;
  memory->op_data_bytes = sizeof(MeanData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  MeanData* d = static_cast<MeanData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_in, s_out;
  MeanCore& c = d->core;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &c.zp_in)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &c.zp_out)) != TT_OK) return st;
  const double real = static_cast<double>(s_in) / static_cast<double>(s_out);
  if (!(real > 0.0) || !isfinite(real)) return ctx.fail(TT_MALFORMED_MODEL, "output rescale factor is not positive");
  int32_t multiplier, shift;
  mean_rescale(s_in, s_out, c.count, &multiplier, &shift);  // int8_common.h, shared with training
  if (shift > 31) return ctx.fail(TT_UNSUPPORTED, "output rescale factor is too large (2^", shift, ")");
  c.multiplier = multiplier;
  c.shift = shift;
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const MeanData& d = *static_cast<const MeanData*>(node.op_data);
  MeanCore c = d.core;
  c.x = as_i8(ctx.data(d.input));
  c.y = as_i8(ctx.data(d.output));
  mean(c);
  return TT_OK;
}

}  // namespace

extern const Kernel kMean = {schema::kOpMean, nullptr, "MEAN", size, prepare, eval};

}  // namespace tt
