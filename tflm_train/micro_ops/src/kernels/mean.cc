// MEAN over constant axes, int8: TFLite Micro's integer mean. The int32 sums
// over the reduced axes (scratch memory) become
//   y = clamp(MBQM(sum - zp_in * n, M') + zp_out)
// where M' folds the division by the element count n into the rescale
// M = s_in / s_out: with k = min(floor(log2 n), 32, 31 + shift),
// multiplier' = (multiplier << k) / n and shift' = shift - k.
#include "int8_common.h"
#include "kernel_util.h"

namespace tt {
namespace {

struct MeanData {
  int32_t input, output;
  int32_t rank;
  int32_t in_dims[TT_MAX_RANK];
  int32_t out_stride[TT_MAX_RANK];  // output element stride per input dim, 0 along reduced dims
  int32_t in_elements, out_elements;
  int64_t count;                    // elements reduced into each output
  int32_t multiplier, shift;
  int32_t input_zero_point, output_zero_point;
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
  d->rank = in.rank;
  bool reduced[TT_MAX_RANK] = {false, false, false, false, false, false};
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
  d->count = 1;
  for (int32_t k = 0; k < in.rank; ++k) {
    d->in_dims[k] = in.dim(k);
    if (reduced[k]) {
      d->count *= in.dim(k);
      if (keep_dims) expected[out_rank++] = 1;
    } else {
      expected[out_rank++] = in.dim(k);
    }
  }
  if ((st = check_shape(ctx, d->output, expected, out_rank, "output")) != TT_OK) return st;
  int32_t stride = 1;
  for (int32_t k = in.rank - 1; k >= 0; --k) {
    d->out_stride[k] = reduced[k] ? 0 : stride;
    if (!reduced[k]) stride *= in.dim(k);
  }
  d->in_elements = static_cast<int32_t>(in.elements());
  d->out_elements = static_cast<int32_t>(ctx.shape(d->output).elements());
  if (d->count > 65000) return ctx.fail(TT_UNSUPPORTED, "mean over more than 65000 elements");
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  MeanData d;
  const tt_status st = parse(ctx, node, &d);
  if (st != TT_OK) return st;
  memory->op_data_bytes = sizeof(MeanData);
  memory->scratch_bytes = static_cast<uint32_t>(d.out_elements) * 4;  // int32 sums
  return TT_OK;
}

tt_status prepare(Context& ctx, NodeRec& node) {
  MeanData* d = static_cast<MeanData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_in, s_out;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &d->input_zero_point)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &d->output_zero_point)) != TT_OK) return st;
  const double real = static_cast<double>(s_in) / static_cast<double>(s_out);
  if (!(real > 0.0) || !isfinite(real)) return ctx.fail(TT_MALFORMED_MODEL, "output rescale factor is not positive");
  int32_t multiplier, shift;
  mean_rescale(s_in, s_out, d->count, &multiplier, &shift);  // int8_common.h, shared with training
  if (shift > 31) return ctx.fail(TT_UNSUPPORTED, "output rescale factor is too large (2^", shift, ")");
  d->multiplier = multiplier;
  d->shift = shift;
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const MeanData& d = *static_cast<const MeanData*>(node.op_data);
  const int8_t* x = as_i8(ctx.data(d.input));
  int8_t* y = as_i8(ctx.data(d.output));
  int32_t* sums = reinterpret_cast<int32_t*>(ctx.scratch(node));
  for (int32_t i = 0; i < d.out_elements; ++i) sums[i] = 0;
  if (d.count == 0) {
    for (int32_t i = 0; i < d.out_elements; ++i) y[i] = 0;
    return TT_OK;
  }
  int32_t index[TT_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  int32_t out = 0;  // output index of the current input element
  for (int32_t i = 0; i < d.in_elements; ++i) {
    sums[out] += x[i];
    for (int32_t k = d.rank - 1; k >= 0; --k) {  // odometer over the input dims
      out += d.out_stride[k];
      if (++index[k] < d.in_dims[k]) break;
      out -= d.out_stride[k] * d.in_dims[k];
      index[k] = 0;
    }
  }
  for (int32_t i = 0; i < d.out_elements; ++i) {
    const int32_t centered = static_cast<int32_t>(sums[i] - static_cast<int64_t>(d.input_zero_point) * d.count);
    const int32_t v = multiply_by_quantized_multiplier(centered, d.multiplier, d.shift) + d.output_zero_point;
    y[i] = static_cast<int8_t>(clamp_i32(v, -128, 127));
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kMean = {schema::kOpMean, nullptr, "MEAN", size, prepare, eval};

}  // namespace tt
