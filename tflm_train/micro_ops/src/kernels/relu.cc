// RELU and RELU6, int8, as TFLite Micro's activations kernel computes them
// (one file for both, as there: they share everything but Prepare's constants
// and the per-element formula).
// RELU (ReluQuantized): the input is requantized to the output scale and
// clamped to the RELU range of the output:
//   y = clamp(zp_out + MBQM(x - zp_in, M), max(-128, zp_out), 127)
// with M = QuantizeMultiplier(double(s_in / s_out)): the quotient is taken in
// float32, as TFLite Micro's CalculateReluOpData does.
// RELU6 (Relu6Quantized): the input bytes are clamped to
// [zp_in, zp_in + round(6 / s_in)] (bounds in the *input's* quantization, the
// only tensor its Prepare reads) and copied; nothing is requantized, whatever
// the output's quantization.
#include "kernel_util.h"

namespace tt {
namespace {

struct ReluData {
  int32_t input, output;
  int32_t elements;
  bool requantize;  // RELU; RELU6 only clamps
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
  int32_t act_min, act_max;
};

tt_status parse(Context& ctx, const NodeRec& node, ReluData* d) {
  return check_unary_int8(ctx, node, &d->input, &d->output, &d->elements);
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  ReluData d;
  memory->op_data_bytes = sizeof(ReluData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node, bool relu6) {
  ReluData* d = static_cast<ReluData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_in;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &d->input_zero_point)) != TT_OK) return st;
  d->requantize = !relu6;
  if (relu6) {
    activation_range(schema::kActRelu6, s_in, d->input_zero_point, -128, 127, &d->act_min, &d->act_max);
    return TT_OK;
  }
  float s_out;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &d->output_zero_point)) != TT_OK) return st;
  int shift;
  if ((st = quantized_multiplier(ctx, static_cast<double>(s_in / s_out), "output", &d->multiplier, &shift)) != TT_OK)
    return st;
  d->shift = shift;
  activation_range(schema::kActRelu, s_out, d->output_zero_point, -128, 127, &d->act_min, &d->act_max);
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const ReluData& d = *static_cast<const ReluData*>(node.op_data);
  const int8_t* x = as_i8(ctx.data(d.input));
  int8_t* y = as_i8(ctx.data(d.output));
  for (int32_t i = 0; i < d.elements; ++i) {
    const int32_t q = d.requantize ? d.output_zero_point + multiply_by_quantized_multiplier(
                                                               x[i] - d.input_zero_point, d.multiplier, d.shift)
                                   : x[i];
    y[i] = static_cast<int8_t>(clamp_i32(q, d.act_min, d.act_max));
  }
  return TT_OK;
}

tt_status prepare_relu(Context& ctx, NodeRec& node) { return prepare(ctx, node, false); }
tt_status prepare_relu6(Context& ctx, NodeRec& node) { return prepare(ctx, node, true); }

}  // namespace

extern const Kernel kRelu = {schema::kOpRelu, nullptr, "RELU", size, prepare_relu, eval};
extern const Kernel kRelu6 = {schema::kOpRelu6, nullptr, "RELU6", size, prepare_relu6, eval};

}  // namespace tt
