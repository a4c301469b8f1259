// SOFTMAX, int8 input, int8 (scale 1/256, zero point -128) or int16 (scale
// 1/65536, zero point -32768) output: TFLite's
// fixed-point algorithm. Per row, each difference to the row maximum is scaled
// by beta * s_in into 5 integer bits, exponentiated in fixed point, summed with
// 12 integer bits; the outputs are exp / sum via a normalized reciprocal.
// Differences below diff_min contribute nothing (their exp rounds to zero).
// A row whose exps sum to 512 or more is an error, as in the NumPy reference:
// TFLite Micro aborts there (its output shift would exceed 31 bits).
#include <math.h>

#include "../fixedpoint.h"
#include "kernel_util.h"

namespace tt {
namespace {

constexpr int kScaledDiffIntegerBits = 5;
constexpr int kAccumulationIntegerBits = 12;

struct SoftmaxData {
  int32_t input, output;
  int32_t rows, depth;
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
  int32_t output_min, output_max;
  int32_t output_bits;  // 8 or 16
};

tt_status parse(Context& ctx, const NodeRec& node, SoftmaxData* d) {
  tt_status st = check_arity(ctx, node, 1, 1, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  d->output = node.output(0);
  if ((st = check_type(ctx, d->input, schema::kInt8, "input")) != TT_OK) return st;
  const uint8_t out_type = ctx.type(d->output);
  if (out_type != schema::kInt8 && out_type != schema::kInt16)
    return ctx.fail(TT_UNSUPPORTED, "output type ", schema::type_name(out_type), " (int8 or int16 expected)");
  const Shape in = ctx.shape(d->input);
  if (in.rank < 1) return ctx.fail(TT_UNSUPPORTED, "scalar input");
  const int32_t in_dims_count = in.rank;
  if ((st = check_shape(ctx, d->output, in.dims, in_dims_count, "output")) != TT_OK) return st;
  d->depth = in.dim(in.rank - 1);
  d->rows = d->depth ? static_cast<int32_t>(in.elements() / d->depth) : 0;
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  SoftmaxData d;
  memory->op_data_bytes = sizeof(SoftmaxData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  SoftmaxData* d = static_cast<SoftmaxData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_in, s_out;
  int32_t zp_in, zp_out;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &zp_in)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &zp_out)) != TT_OK) return st;
  if (ctx.type(d->output) == schema::kInt8) {
    d->output_bits = 8;
    d->output_min = -128;
    d->output_max = 127;
    if (zp_out != -128 || fabsf(s_out - 1.0f / 256) > 0.001f / 256)
      return ctx.fail(TT_UNSUPPORTED, "int8 output must have scale 1/256 and zero point -128");
  } else {
    d->output_bits = 16;
    d->output_min = -32768;
    d->output_max = 32767;
    if (zp_out != -32768 || fabsf(s_out - 1.0f / 65536) > 0.001f / 65536)
      return ctx.fail(TT_UNSUPPORTED, "int16 output must have scale 1/65536 and zero point -32768");
  }
  const float beta = ctx.reader().f32(ctx.options(node, schema::kOptionsSoftmax), schema::kSoftmaxBeta, 0.0f);
  // beta * s_in as a multiplier > 1 on a Q5.26 difference, capped to int32 range.
  double real = static_cast<double>(beta) * static_cast<double>(s_in) *
                static_cast<double>(int64_t{1} << (31 - kScaledDiffIntegerBits));
  if (real > 2147483647.0) real = 2147483647.0;
  int shift;
  if (!(real > 1.0)) return ctx.fail(TT_UNSUPPORTED, "beta * input scale is below 2^-26");
  quantize_multiplier(real, &d->input_multiplier, &shift);
  if (shift < 0 || shift > 31) return ctx.fail(TT_UNSUPPORTED, "input rescale out of range");
  d->input_left_shift = shift;
  // The largest difference magnitude whose rescaled value still fits the Q5.26 input range.
  const double max_input_rescaled = 1.0 * ((1 << kScaledDiffIntegerBits) - 1) *
                                    static_cast<double>(int64_t{1} << (31 - kScaledDiffIntegerBits)) /
                                    static_cast<double>(int64_t{1} << shift);
  d->diff_min = -static_cast<int32_t>(floor(max_input_rescaled));
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const SoftmaxData& d = *static_cast<const SoftmaxData*>(node.op_data);
  const int8_t* x = as_i8(ctx.data(d.input));
  uint8_t* out = ctx.data(d.output);
  for (int32_t row = 0; row < d.rows; ++row) {
    const int8_t* in = x + row * d.depth;
    int32_t max_in_row = -128;
    for (int32_t c = 0; c < d.depth; ++c)
      if (in[c] > max_in_row) max_in_row = in[c];
    int32_t sum_of_exps = 0;  // 12 integer bits
    for (int32_t c = 0; c < d.depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      if (diff < d.diff_min) continue;
      const int32_t scaled = saturating_rounding_doubling_high_mul(diff * (1 << d.input_left_shift),
                                                                   d.input_multiplier);
      const int32_t e = fixedpoint::exp_on_negative_values(scaled, kScaledDiffIntegerBits);
      sum_of_exps = wrapping_add(sum_of_exps, fixedpoint::rescale(e, 0, kAccumulationIntegerBits));
    }
    int num_bits_over_unit;
    const int32_t shifted_scale = fixedpoint::reciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
    const int output_shift = num_bits_over_unit + 31 - d.output_bits;
    if (output_shift > 31)  // TFLite Micro aborts on an assertion here: no result to match
      return ctx.fail(TT_UNSUPPORTED, "row ", row, " of ", d.depth,
                      " classes: the sum of exps reaches 512, beyond TFLite Micro's int8 softmax");
    for (int32_t c = 0; c < d.depth; ++c) {
      const int32_t diff = in[c] - max_in_row;
      int32_t v = d.output_min;
      if (diff >= d.diff_min) {
        const int32_t scaled = saturating_rounding_doubling_high_mul(diff * (1 << d.input_left_shift),
                                                                     d.input_multiplier);
        const int32_t e = fixedpoint::exp_on_negative_values(scaled, kScaledDiffIntegerBits);
        const int32_t unsat = rounding_divide_by_pot(fixedpoint::mul(shifted_scale, e), output_shift);
        v = clamp_i32(unsat + d.output_min, d.output_min, d.output_max);
      }
      const int32_t i = row * d.depth + c;
      if (d.output_bits == 8)
        reinterpret_cast<int8_t*>(out)[i] = static_cast<int8_t>(v);
      else
        reinterpret_cast<int16_t*>(out)[i] = static_cast<int16_t>(v);
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kSoftmax = {schema::kOpSoftmax, nullptr, "SOFTMAX", size, prepare, eval};

}  // namespace tt
