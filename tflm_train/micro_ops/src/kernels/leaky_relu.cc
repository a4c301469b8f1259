// LEAKY_RELU, int8: TFLite Micro's QuantizeLeakyRelu for a slope alpha >= 0.
// Prepare (as CalculateOpDataLeakyRelu): two multipliers from float32
// arithmetic, M_id = s_in / s_out and M_alpha = s_in * alpha / s_out.
// Eval: v = x - zp_in; y = clamp(zp_out + MBQM(v, v >= 0 ? M_id : M_alpha), int8).
#include "kernel_util.h"

namespace tt {
namespace {

struct LeakyReluData {
  int32_t input, output;
  int32_t elements;
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier_identity, shift_identity;
  int32_t multiplier_alpha, shift_alpha;
};

tt_status parse(Context& ctx, const NodeRec& node, LeakyReluData* d) {
  return check_unary_int8(ctx, node, &d->input, &d->output, &d->elements);
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  LeakyReluData d;
  memory->op_data_bytes = sizeof(LeakyReluData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  LeakyReluData* d = static_cast<LeakyReluData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_in, s_out;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &d->input_zero_point)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &d->output_zero_point)) != TT_OK) return st;
  const float alpha = ctx.reader().f32(ctx.options(node, schema::kOptionsLeakyRelu), schema::kLeakyReluAlpha, 0.0f);
  if (!(alpha >= 0.0f) || !isfinite(alpha)) return ctx.fail(TT_UNSUPPORTED, "negative or non-finite alpha");
  int shift;
  if ((st = quantized_multiplier(ctx, static_cast<double>(s_in / s_out), "output", &d->multiplier_identity,
                                 &shift)) != TT_OK)
    return st;
  d->shift_identity = shift;
  // alpha may be 0: QuantizeMultiplier gives (0, 0), every negative input maps to zp_out
  quantize_multiplier(static_cast<double>(s_in * alpha / s_out), &d->multiplier_alpha, &shift);
  d->shift_alpha = shift;
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const LeakyReluData& d = *static_cast<const LeakyReluData*>(node.op_data);
  const int8_t* x = as_i8(ctx.data(d.input));
  int8_t* y = as_i8(ctx.data(d.output));
  for (int32_t i = 0; i < d.elements; ++i) {
    const int32_t v = x[i] - d.input_zero_point;
    const int32_t scaled = v >= 0 ? multiply_by_quantized_multiplier(v, d.multiplier_identity, d.shift_identity)
                                  : multiply_by_quantized_multiplier(v, d.multiplier_alpha, d.shift_alpha);
    y[i] = static_cast<int8_t>(clamp_i32(d.output_zero_point + scaled, -128, 127));
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kLeakyRelu = {schema::kOpLeakyRelu, nullptr, "LEAKY_RELU", size, prepare, eval};

}  // namespace tt
