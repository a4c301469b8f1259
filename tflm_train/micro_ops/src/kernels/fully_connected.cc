// FULLY_CONNECTED, int8 input/output, int8 weights [units, depth] quantized per
// tensor or per output channel, optional int32 bias. The multiplier is
// s_x * s_w / s_y in double from the float32 scales (as convolutions).
// The input is flattened to [batches, depth].
#include "fc_core.h"
#include "kernel_util.h"

namespace tt {
namespace {

struct FcParams {
  int32_t input, filter, bias, output;
  int32_t batches, depth, units;
  uint8_t activation;
};

struct FcData {
  FcParams p;
  int32_t input_offset, filter_offset, output_offset, act_min, act_max;
  uint32_t channel_count;  // 1: per tensor
  int32_t* multiplier;
  int8_t* shift;
};

tt_status parse(Context& ctx, const NodeRec& node, FcParams* p) {
  tt_status st = check_arity(ctx, node, 2, 3, 1);
  if (st != TT_OK) return st;
  p->input = node.input(0);
  p->filter = node.input(1);
  p->bias = node.input(2);
  p->output = node.output(0);
  if ((st = check_type(ctx, p->input, schema::kInt8, "input")) != TT_OK) return st;
  if ((st = check_type(ctx, p->filter, schema::kInt8, "filter")) != TT_OK) return st;
  if ((st = check_type(ctx, p->output, schema::kInt8, "output")) != TT_OK) return st;
  if ((st = check_rank(ctx, p->filter, 2, "filter")) != TT_OK) return st;
  if (!ctx.is_constant(p->filter)) return ctx.fail(TT_UNSUPPORTED, "filter must be a constant");
  const Table o = ctx.options(node, schema::kOptionsFullyConnected);
  FlatReader& r = ctx.reader();
  p->activation = r.u8(o, schema::kFcActivation, 0);
  if (r.u8(o, schema::kFcWeightsFormat, 0) != 0) return ctx.fail(TT_UNSUPPORTED, "shuffled weights format");
  const Shape f = ctx.shape(p->filter);
  p->units = f.dim(0);
  p->depth = f.dim(1);
  if (p->depth < 1 || p->units < 1) return ctx.fail(TT_SHAPE_MISMATCH, "empty filter");
  if (p->depth > 65000) return ctx.fail(TT_UNSUPPORTED, "input depth over 65000");
  const int64_t in_elements = ctx.shape(p->input).elements();
  if (in_elements % p->depth != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "input has ", static_cast<long long>(in_elements),
                    " elements, not a multiple of the filter depth ", p->depth);
  p->batches = static_cast<int32_t>(in_elements / p->depth);
  const Shape out = ctx.shape(p->output);
  if (out.rank < 1 || out.dim(out.rank - 1) != p->units ||
      out.elements() != static_cast<int64_t>(p->batches) * p->units)
    return ctx.fail(TT_SHAPE_MISMATCH, "output has ", static_cast<long long>(out.elements()),
                    " elements, expected ", p->batches, " batches of ", p->units, " units");
  if (p->bias >= 0) {
    if ((st = check_type(ctx, p->bias, schema::kInt32, "bias")) != TT_OK) return st;
    if (!ctx.is_constant(p->bias)) return ctx.fail(TT_UNSUPPORTED, "bias must be a constant");
    if (ctx.shape(p->bias).elements() != p->units)
      return ctx.fail(TT_SHAPE_MISMATCH, "bias has ", static_cast<long long>(ctx.shape(p->bias).elements()),
                      " elements for ", p->units, " units");
  }
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  FcParams p;
  const tt_status st = parse(ctx, node, &p);
  if (st != TT_OK) return st;
  const uint32_t channels = ctx.scale_count(p.filter) > 1 ? static_cast<uint32_t>(p.units) : 1;
  OpDataLayout layout(nullptr);
  layout.take<FcData>(1);
  layout.take<int32_t>(channels);
  layout.take<int8_t>(channels);
  memory->op_data_bytes = layout.bytes();
  return TT_OK;
}

tt_status prepare(Context& ctx, NodeRec& node) {
  OpDataLayout layout(node.op_data);
  FcData* d = layout.take<FcData>(1);
  tt_status st = parse(ctx, node, &d->p);
  if (st != TT_OK) return st;
  const FcParams& p = d->p;
  float s_in, s_out;
  int32_t zp_in, zp_out;
  if ((st = per_tensor_quant(ctx, p.input, "input", &s_in, &zp_in)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, p.output, "output", &s_out, &zp_out)) != TT_OK) return st;
  const uint32_t n_scales = ctx.scale_count(p.filter);
  if (n_scales == 0) return ctx.fail(TT_UNSUPPORTED, "filter is not quantized");
  if (n_scales != 1 && n_scales != static_cast<uint32_t>(p.units))
    return ctx.fail(TT_MALFORMED_MODEL, "filter has ", n_scales, " scales for ", p.units, " units");
  d->channel_count = n_scales;
  d->multiplier = layout.take<int32_t>(n_scales);
  d->shift = layout.take<int8_t>(n_scales);
  d->filter_offset = 0;
  const Context::Quantization q = ctx.quantization(p.filter);
  FlatReader& r = ctx.reader();
  if (n_scales == 1) {
    const int64_t zp_w = q.zero_points.length ? r.i64_in(q.zero_points, 0) : 0;
    if (zp_w < -128 || zp_w > 127) return ctx.fail(TT_MALFORMED_MODEL, "filter zero point out of range");
    d->filter_offset = -static_cast<int32_t>(zp_w);
    const double real = static_cast<double>(s_in) * static_cast<double>(r.f32_in(q.scales, 0)) /
                        static_cast<double>(s_out);
    int shift;
    if ((st = quantized_multiplier(ctx, real, "output", &d->multiplier[0], &shift)) != TT_OK) return st;
    d->shift[0] = static_cast<int8_t>(shift);
  } else {
    for (uint32_t c = 0; c < n_scales; ++c) {
      if (c < q.zero_points.length && r.i64_in(q.zero_points, c) != 0)
        return ctx.fail(TT_UNSUPPORTED, "per-channel filter zero points must be 0");
      const double real = static_cast<double>(s_in) * static_cast<double>(r.f32_in(q.scales, c)) /
                          static_cast<double>(s_out);
      int shift;
      if ((st = quantized_multiplier(ctx, real, "output", &d->multiplier[c], &shift)) != TT_OK) return st;
      d->shift[c] = static_cast<int8_t>(shift);
    }
  }
  d->input_offset = -zp_in;
  d->output_offset = zp_out;
  return fused_activation_range(ctx, p.activation, p.output, &d->act_min, &d->act_max);
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const FcData* d = static_cast<const FcData*>(node.op_data);
  const FcParams& p = d->p;
  FcCore c;
  c.x = as_i8(ctx.data(p.input));
  c.rows = p.batches;
  c.depth = p.depth;
  c.units = p.units;
  c.in_offset = d->input_offset;
  c.filter_offset = d->filter_offset;
  c.w = as_i8(ctx.data(p.filter));
  c.tail.bias = p.bias >= 0 ? ctx.data(p.bias) : nullptr;  // constant, maybe unaligned
  c.tail.mult = reinterpret_cast<const uint8_t*>(d->multiplier);
  c.tail.shift = reinterpret_cast<const uint8_t*>(d->shift);
  c.tail.per_channel = d->channel_count != 1;
  c.tail.out_offset = d->output_offset;
  c.tail.act_min = d->act_min;
  c.tail.act_max = d->act_max;
  fc_rows(c, as_i8(ctx.data(p.output)));
  return TT_OK;
}

}  // namespace

extern const Kernel kFullyConnected = {schema::kOpFullyConnected, nullptr, "FULLY_CONNECTED", size, prepare, eval};

}  // namespace tt
