// CONV_2D, int8 activations, int8 weights quantized per output channel (or per
// tensor), int32 bias: TFLite Micro's reference integer convolution.
//   acc = sum over the window of (x + input_offset) * w  (taps outside the image skipped)
//   y   = clamp(MultiplyByQuantizedMultiplier(acc + bias, M[c]) + output_zero_point)
// with M[c] = s_x * s_w[c] / s_y computed in double from the float32 scales.
// Grouped convolution (filter input depth < input depth) is supported.
#include "conv_core.h"
#include "kernel_util.h"

namespace tt {
namespace {

struct ConvParams {
  int32_t input, filter, bias, output;
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c, filter_h, filter_w, filter_c;
  int32_t stride_h, stride_w, dilation_h, dilation_w, pad_h, pad_w;
  uint8_t activation;
};

struct ConvData {
  ConvParams p;
  int32_t input_offset, output_offset, act_min, act_max;
  int32_t* multiplier;  // [out_c]
  int8_t* shift;        // [out_c]
};

tt_status parse(Context& ctx, const NodeRec& node, ConvParams* p) {
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
  const Table o = ctx.options(node, schema::kOptionsConv2D);
  FlatReader& r = ctx.reader();
  const uint8_t padding = r.u8(o, schema::kConvPadding, 0);
  p->stride_w = r.i32(o, schema::kConvStrideW, 0);
  p->stride_h = r.i32(o, schema::kConvStrideH, 0);
  p->activation = r.u8(o, schema::kConvActivation, 0);
  p->dilation_w = r.i32(o, schema::kConvDilationW, 1);
  p->dilation_h = r.i32(o, schema::kConvDilationH, 1);
  if (padding > schema::kPaddingValid) return ctx.fail(TT_UNSUPPORTED, "padding type ", padding);
  if ((st = check_window(ctx, p->stride_h, p->stride_w, p->dilation_h, p->dilation_w)) != TT_OK) return st;
  const Shape in = ctx.shape(p->input), f = ctx.shape(p->filter);
  p->batches = in.dim(0);
  p->in_h = in.dim(1);
  p->in_w = in.dim(2);
  p->in_c = in.dim(3);
  p->out_c = f.dim(0);
  p->filter_h = f.dim(1);
  p->filter_w = f.dim(2);
  p->filter_c = f.dim(3);
  if (p->filter_c < 1 || p->out_c < 1 || p->in_c < p->filter_c || p->in_c % p->filter_c != 0 ||
      p->out_c % (p->in_c / p->filter_c) != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "filter depth ", p->filter_c, " and ", p->out_c,
                    " output channels do not divide the input depth ", p->in_c, " into groups");
  if (p->filter_h < 1 || p->filter_w < 1) return ctx.fail(TT_SHAPE_MISMATCH, "empty filter window");
  // The int32 accumulator cannot overflow for windows up to 2^31 / (255 * 128) taps.
  if (static_cast<int64_t>(p->filter_h) * p->filter_w * p->filter_c > 65000)
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
  ConvParams p;
  const tt_status st = parse(ctx, node, &p);
  if (st != TT_OK) return st;
  OpDataLayout layout(nullptr);
  layout.take<ConvData>(1);
  layout.take<int32_t>(static_cast<uint32_t>(p.out_c));
  layout.take<int8_t>(static_cast<uint32_t>(p.out_c));
  memory->op_data_bytes = layout.bytes();
  return TT_OK;
}

tt_status prepare(Context& ctx, NodeRec& node) {
  OpDataLayout layout(node.op_data);
  ConvData* d = layout.take<ConvData>(1);
  tt_status st = parse(ctx, node, &d->p);
  if (st != TT_OK) return st;
  const ConvParams& p = d->p;
  d->multiplier = layout.take<int32_t>(static_cast<uint32_t>(p.out_c));
  d->shift = layout.take<int8_t>(static_cast<uint32_t>(p.out_c));
  float s_in, s_out;
  int32_t zp_in, zp_out;
  if ((st = per_tensor_quant(ctx, p.input, "input", &s_in, &zp_in)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, p.output, "output", &s_out, &zp_out)) != TT_OK) return st;
  st = per_channel_multipliers(ctx, p.filter, p.out_c, 0, s_in, s_out, d->multiplier, d->shift);
  if (st != TT_OK) return st;
  d->input_offset = -zp_in;
  d->output_offset = zp_out;
  return fused_activation_range(ctx, p.activation, p.output, &d->act_min, &d->act_max);
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const ConvData* d = static_cast<const ConvData*>(node.op_data);
  const ConvParams& p = d->p;
  const int8_t* input = as_i8(ctx.data(p.input));
  const int8_t* filter = as_i8(ctx.data(p.filter));
  const uint8_t* bias = p.bias >= 0 ? ctx.data(p.bias) : nullptr;  // constant, maybe unaligned
  int8_t* output = as_i8(ctx.data(p.output));
  if (p.filter_c == p.in_c) {  // one group: the shared compute core (conv_core.h)
    ConvCore c;
    c.x_h = p.in_h;
    c.x_w = p.in_w;
    c.ic = p.in_c;
    c.in_offset = d->input_offset;
    c.w = filter;
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
    c.tail.bias = bias;
    c.tail.mult = reinterpret_cast<const uint8_t*>(d->multiplier);
    c.tail.shift = reinterpret_cast<const uint8_t*>(d->shift);
    c.tail.out_offset = d->output_offset;
    c.tail.act_min = d->act_min;
    c.tail.act_max = d->act_max;
    for (int32_t b = 0; b < p.batches; ++b) {
      c.x = input + static_cast<int64_t>(b) * p.in_h * p.in_w * p.in_c;
      kernels::conv_rows(c, 0, p.out_h, output + static_cast<int64_t>(b) * p.out_h * p.out_w * p.out_c);
    }
    return TT_OK;
  }
  // Grouped convolution (inference only): tap by tap.
  const int32_t out_per_group = p.out_c / (p.in_c / p.filter_c);
  for (int32_t b = 0; b < p.batches; ++b) {
    for (int32_t oy = 0; oy < p.out_h; ++oy) {
      const int32_t y0 = oy * p.stride_h - p.pad_h;
      for (int32_t ox = 0; ox < p.out_w; ++ox) {
        const int32_t x0 = ox * p.stride_w - p.pad_w;
        for (int32_t oc = 0; oc < p.out_c; ++oc) {
          const int32_t in_c0 = (oc / out_per_group) * p.filter_c;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < p.filter_h; ++ky) {
            const int32_t y = y0 + ky * p.dilation_h;
            if (y < 0 || y >= p.in_h) continue;
            for (int32_t kx = 0; kx < p.filter_w; ++kx) {
              const int32_t x = x0 + kx * p.dilation_w;
              if (x < 0 || x >= p.in_w) continue;
              const int8_t* in = input + ((b * p.in_h + y) * p.in_w + x) * p.in_c + in_c0;
              const int8_t* w = filter + ((oc * p.filter_h + ky) * p.filter_w + kx) * p.filter_c;
              for (int32_t ic = 0; ic < p.filter_c; ++ic) acc += (in[ic] + d->input_offset) * w[ic];
            }
          }
          if (bias) acc = wrapping_add(acc, load_i32(bias + 4 * oc));
          acc = multiply_by_quantized_multiplier(acc, d->multiplier[oc], d->shift[oc]);
          acc = clamp_i32(wrapping_add(acc, d->output_offset), d->act_min, d->act_max);
          output[((b * p.out_h + oy) * p.out_w + ox) * p.out_c + oc] = static_cast<int8_t>(acc);
        }
      }
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kConv2D = {schema::kOpConv2D, nullptr, "CONV_2D", size, prepare, eval};

}  // namespace tt
