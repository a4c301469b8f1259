// DEPTHWISE_CONV_2D, int8, weights [1, kh, kw, in_c * depth_multiplier]
// quantized per output channel (quantized dimension 3) or per tensor:
// TFLite Micro's reference integer depthwise convolution. Output channel
// oc = ic * depth_multiplier + m reads input channel ic.
#include "conv_core.h"
#include "kernel_util.h"

namespace tt {
namespace {

struct DwParams {
  int32_t input, filter, bias, output;
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, filter_h, filter_w, depth_multiplier;
  int32_t stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w;
  uint8_t activation;
};

struct DwData {
  DwParams p;
  int32_t input_offset, output_offset, act_min, act_max;
  int32_t* multiplier;
  int8_t* shift;
};

tt_status parse(Context& ctx, const NodeRec& node, DwParams* p) {
  tt_status st = check_arity(ctx, node, 2, 3, 1);
  if (st != TT_OK) return st;
  p->input = node.input(0);
  p->filter = node.input(1);
  p->bias = node.input(2);
  p->output = node.output(0);
  if ((st = check_type(ctx, p->input, schema::kInt8, "input")) != TT_OK) return st;
  if ((st = check_type(ctx, p->filter, schema::kInt8, "filter")) != TT_OK) return st;
  if ((st = check_type(ctx, p->output, schema::kInt8, "output")) != TT_OK) return st;
  if ((st = check_rank(ctx, p->input, 4, "input")) != TT_OK) return st;
  if ((st = check_rank(ctx, p->filter, 4, "filter")) != TT_OK) return st;
  if (!ctx.is_constant(p->filter)) return ctx.fail(TT_UNSUPPORTED, "filter must be a constant");
  const Table o = ctx.options(node, schema::kOptionsDepthwiseConv2D);
  FlatReader& r = ctx.reader();
  const uint8_t padding = r.u8(o, schema::kDwPadding, 0);
  p->stride_w = r.i32(o, schema::kDwStrideW, 0);
  p->stride_h = r.i32(o, schema::kDwStrideH, 0);
  const int32_t multiplier_option = r.i32(o, schema::kDwDepthMultiplier, 0);
  p->activation = r.u8(o, schema::kDwActivation, 0);
  p->dilation_w = r.i32(o, schema::kDwDilationW, 1);
  p->dilation_h = r.i32(o, schema::kDwDilationH, 1);
  if (padding > schema::kPaddingValid) return ctx.fail(TT_UNSUPPORTED, "padding type ", padding);
  if ((st = check_window(ctx, p->stride_h, p->stride_w, p->dilation_h, p->dilation_w)) != TT_OK) return st;
  const Shape in = ctx.shape(p->input), f = ctx.shape(p->filter);
  p->batches = in.dim(0);
  p->in_h = in.dim(1);
  p->in_w = in.dim(2);
  p->in_c = in.dim(3);
  p->filter_h = f.dim(1);
  p->filter_w = f.dim(2);
  p->out_c = f.dim(3);
  if (f.dim(0) != 1) return ctx.fail(TT_SHAPE_MISMATCH, "filter dimension 0 is ", f.dim(0), ", expected 1");
  if (p->in_c < 1 || p->out_c % p->in_c != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "filter has ", p->out_c, " channels for ", p->in_c, " input channels");
  p->depth_multiplier = p->out_c / p->in_c;
  // TFLite ignores a zero depth_multiplier option; otherwise it must agree.
  if (multiplier_option != 0 && multiplier_option != p->depth_multiplier)
    return ctx.fail(TT_SHAPE_MISMATCH, "depth_multiplier ", multiplier_option, " does not match the filter (",
                    p->depth_multiplier, ")");
  if (p->filter_h < 1 || p->filter_w < 1) return ctx.fail(TT_SHAPE_MISMATCH, "empty filter window");
  if (static_cast<int64_t>(p->filter_h) * p->filter_w > 65000)
    return ctx.fail(TT_UNSUPPORTED, "filter window of more than 65000 taps");
  p->out_h = window_output_size(padding, p->in_h, p->filter_h, p->stride_h, p->dilation_h);
  p->out_w = window_output_size(padding, p->in_w, p->filter_w, p->stride_w, p->dilation_w);
  p->pad_h = window_padding(p->in_h, p->filter_h, p->stride_h, p->dilation_h, p->out_h);
  p->pad_w = window_padding(p->in_w, p->filter_w, p->stride_w, p->dilation_w, p->out_w);
  const int32_t out_dims[4] = {p->batches, p->out_h, p->out_w, p->out_c};
  if ((st = check_shape(ctx, p->output, out_dims, 4, "output")) != TT_OK) return st;
  if (p->bias >= 0) {
    if ((st = check_type(ctx, p->bias, schema::kInt32, "bias")) != TT_OK) return st;
    if (!ctx.is_constant(p->bias)) return ctx.fail(TT_UNSUPPORTED, "bias must be a constant");
    if (ctx.shape(p->bias).elements() != p->out_c)
      return ctx.fail(TT_SHAPE_MISMATCH, "bias has ", static_cast<long long>(ctx.shape(p->bias).elements()),
                      " elements for ", p->out_c, " output channels");
  }
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  DwParams p;
  const tt_status st = parse(ctx, node, &p);
  if (st != TT_OK) return st;
  OpDataLayout layout(nullptr);
  layout.take<DwData>(1);
  layout.take<int32_t>(static_cast<uint32_t>(p.out_c));
  layout.take<int8_t>(static_cast<uint32_t>(p.out_c));
  memory->op_data_bytes = layout.bytes();
  return TT_OK;
}

tt_status prepare(Context& ctx, NodeRec& node) {
  OpDataLayout layout(node.op_data);
  DwData* d = layout.take<DwData>(1);
  tt_status st = parse(ctx, node, &d->p);
  if (st != TT_OK) return st;
  const DwParams& p = d->p;
  d->multiplier = layout.take<int32_t>(static_cast<uint32_t>(p.out_c));
  d->shift = layout.take<int8_t>(static_cast<uint32_t>(p.out_c));
  float s_in, s_out;
  int32_t zp_in, zp_out;
  if ((st = per_tensor_quant(ctx, p.input, "input", &s_in, &zp_in)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, p.output, "output", &s_out, &zp_out)) != TT_OK) return st;
  st = per_channel_multipliers(ctx, p.filter, p.out_c, 3, s_in, s_out, d->multiplier, d->shift);
  if (st != TT_OK) return st;
  d->input_offset = -zp_in;
  d->output_offset = zp_out;
  return fused_activation_range(ctx, p.activation, p.output, &d->act_min, &d->act_max);
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const DwData* d = static_cast<const DwData*>(node.op_data);
  const DwParams& p = d->p;
  const int8_t* input = as_i8(ctx.data(p.input));
  int8_t* output = as_i8(ctx.data(p.output));
  DwCore c;  // the shared compute core (conv_core.h)
  c.x_h = p.in_h;
  c.x_w = p.in_w;
  c.in_offset = d->input_offset;
  c.w = as_i8(ctx.data(p.filter));
  c.oc = p.out_c;
  c.kh = p.filter_h;
  c.kw = p.filter_w;
  c.stride_h = p.stride_h;
  c.stride_w = p.stride_w;
  c.dilation_h = p.dilation_h;
  c.dilation_w = p.dilation_w;
  c.pad_top = p.pad_h;
  c.pad_left = p.pad_w;
  c.oh = p.out_h;
  c.ow = p.out_w;
  c.tail.bias = p.bias >= 0 ? ctx.data(p.bias) : nullptr;  // constant, maybe unaligned
  c.tail.mult = reinterpret_cast<const uint8_t*>(d->multiplier);
  c.tail.shift = reinterpret_cast<const uint8_t*>(d->shift);
  c.tail.out_offset = d->output_offset;
  c.tail.act_min = d->act_min;
  c.tail.act_max = d->act_max;
  for (int32_t b = 0; b < p.batches; ++b) {
    const int8_t* in = input + static_cast<int64_t>(b) * p.in_h * p.in_w * p.in_c;
    int8_t* out = output + static_cast<int64_t>(b) * p.out_h * p.out_w * p.out_c;
    kernels::dw_interleaved(c, in, p.in_c, out);
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kDepthwiseConv2D = {schema::kOpDepthwiseConv2D, nullptr, "DEPTHWISE_CONV_2D", size, prepare,
                                        eval};

}  // namespace tt
