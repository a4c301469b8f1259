// QUANTIZE: float32 -> int8/uint8/int16 (TFLite Micro's affine quantize:
// round(x / s) + zp with the division in float32, ties away from zero, then
// clamped), or int8/uint8 -> int8/uint8 requantization
// (MBQM(x - zp_in, s_in / s_out) + zp_out, clamped).
#include "kernel_util.h"

namespace tt {
namespace {

struct QuantizeData {
  int32_t input, output;
  int32_t elements;
  uint8_t in_type, out_type;
  float scale;  // float input: the output scale
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
  int32_t qmin, qmax;
};

bool is_8bit(uint8_t type) { return type == schema::kInt8 || type == schema::kUInt8; }

tt_status parse(Context& ctx, const NodeRec& node, QuantizeData* d) {
  tt_status st = check_arity(ctx, node, 1, 1, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  d->output = node.output(0);
  d->in_type = ctx.type(d->input);
  d->out_type = ctx.type(d->output);
  const bool from_float = d->in_type == schema::kFloat32 &&
                          (is_8bit(d->out_type) || d->out_type == schema::kInt16);
  const bool requantize = is_8bit(d->in_type) && is_8bit(d->out_type);
  if (!from_float && !requantize)
    return ctx.fail(TT_UNSUPPORTED, schema::type_name(d->in_type), " to ", schema::type_name(d->out_type));
  const Shape in = ctx.shape(d->input);
  if ((st = check_shape(ctx, d->output, in.dims, in.rank, "output")) != TT_OK) return st;
  d->elements = static_cast<int32_t>(in.elements());
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  QuantizeData d;
  memory->op_data_bytes = sizeof(QuantizeData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  QuantizeData* d = static_cast<QuantizeData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s_out;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &d->output_zero_point)) != TT_OK) return st;
  integer_range(d->out_type, &d->qmin, &d->qmax);
  d->scale = s_out;
  if (d->in_type == schema::kFloat32) return TT_OK;
  float s_in;
  if ((st = per_tensor_quant(ctx, d->input, "input", &s_in, &d->input_zero_point)) != TT_OK) return st;
  int shift;
  st = quantized_multiplier(ctx, static_cast<double>(s_in) / static_cast<double>(s_out), "output", &d->multiplier,
                            &shift);
  d->shift = shift;
  return st;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const QuantizeData& d = *static_cast<const QuantizeData*>(node.op_data);
  const uint8_t* x = ctx.data(d.input);
  uint8_t* y = ctx.data(d.output);
  for (int32_t i = 0; i < d.elements; ++i) {
    int32_t q;
    if (d.in_type == schema::kFloat32) {
      q = wrapping_add(round_to_int32_f(load_f32(x + 4 * i) / d.scale), d.output_zero_point);
    } else {
      const int32_t v = d.in_type == schema::kInt8 ? static_cast<int8_t>(x[i]) : x[i];
      q = multiply_by_quantized_multiplier(v - d.input_zero_point, d.multiplier, d.shift) + d.output_zero_point;
    }
    q = clamp_i32(q, d.qmin, d.qmax);
    switch (d.out_type) {
      case schema::kInt8: reinterpret_cast<int8_t*>(y)[i] = static_cast<int8_t>(q); break;
      case schema::kUInt8: y[i] = static_cast<uint8_t>(q); break;
      default: reinterpret_cast<int16_t*>(y)[i] = static_cast<int16_t>(q); break;
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kQuantize = {schema::kOpQuantize, nullptr, "QUANTIZE", size, prepare, eval};

}  // namespace tt
