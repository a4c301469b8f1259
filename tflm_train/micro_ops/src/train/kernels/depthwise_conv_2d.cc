// DEPTHWISE_CONV_2D (forward, int8) of the training graph: TFLite's integer
// depthwise convolution (bit-exact with src/kernels/depthwise_conv_2d.cc),
// output channel oc = ic * M + m reading input channel ic, computed channel by
// channel. The input channel comes from the tensor (normal), from a copy in the
// scratch (in place, layout "channel": output element (p, c) overwrites input
// element (p, c), so channel c is saved first), or from a FUSED pointwise
// convolution computed one channel at a time into the scratch. Where the plan gives
// the step a scratch of four channel planes (planner.storage.depthwise_group_channels),
// in place and fused run four channels at a time, interleaved in the scratch.
#include "conv_2d.h"

namespace tt {
namespace train {
namespace {

struct DwForward {
  Spatial x;
  Int8Weights w;  // [1, KH, KW, OC]
  I32Values bias;
  bool has_bias = false;
  int8_t* y = nullptr;
  int32_t oh = 0, ow = 0, oc = 0, kh = 0, kw = 0, ic = 0, m = 1;
  ConvGeometry g;
  int32_t in_offset = 0, out_offset = 0, act_min = 0, act_max = 0;
  const uint8_t* mult = nullptr;
  const uint8_t* shift = nullptr;
  uint32_t nq = 0;
  DwCore core;  // the shared compute core's view of all of the above
};

tt_status parse(TrainContext& ctx, DwForward* p) {
  const bool has_bias = ctx.input_count() == 3;
  tt_status st = expect_arity(ctx, has_bias ? 3 : 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0));
  const TensorDesc w = ctx.tensor(ctx.input(1));
  const TensorDesc y = ctx.tensor(ctx.output(0));
  if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &p->x)) != TT_OK) return st;
  if ((st = int8_weights_of(ctx, w, "filter", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 4, "filter")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if (y.rank != 4 || y.dims[0] != 1 || (y.storage != tfmt::kArena && y.storage != tfmt::kBand))
    return ctx.fail(TT_UNSUPPORTED, "output must be a 1xHxWxC arena tensor");
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->oc = w.dims[3];
  p->ic = p->x.c;
  p->oh = y.dims[1];
  p->ow = y.dims[2];
  if (w.dims[0] != 1 || p->ic < 1 || p->oc % p->ic != 0 || y.dims[3] != p->oc)
    return ctx.fail(TT_SHAPE_MISMATCH, "filter 1x", p->kh, "x", p->kw, "x", p->oc, " does not fit ", p->ic,
                    " input and ", y.dims[3], " output channels");
  p->m = p->oc / p->ic;
  int32_t m_attr;
  if ((st = ctx.attr_int("depth_multiplier", &m_attr)) != TT_OK) return st;
  if (m_attr != p->m && m_attr != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "depth_multiplier ", m_attr, " does not match the filter (", p->m, ")");
  if ((st = forward_window(ctx, p->x.lh, p->x.lw, p->kh, p->kw, p->oh, p->ow, &p->g)) != TT_OK) return st;
  p->has_bias = has_bias;
  if (has_bias) {
    const TensorDesc b = ctx.tensor(ctx.input(2));
    if ((st = expect_dtype(ctx, b, tfmt::kInt32, "bias")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, b, "bias")) != TT_OK) return st;
    if (b.elements != p->oc) return ctx.fail(TT_SHAPE_MISMATCH, "bias has ", static_cast<long long>(b.elements),
                                             " elements for ", p->oc, " channels");
    p->bias.data = b.data;
  }
  float s;
  int32_t zp_x, zp_y;
  if ((st = activation_quant(ctx, x, "input", &s, &zp_x)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &s, &zp_y)) != TT_OK) return st;
  p->in_offset = -zp_x;
  p->out_offset = zp_y;
  if ((st = activation_clamp(ctx, y, &p->act_min, &p->act_max)) != TT_OK) return st;
  if ((st = ctx.requantization(p->oc, &p->mult, &p->shift, &p->nq)) != TT_OK) return st;
  p->y = i8_data(y);
  fill_window_core(*p, &p->core);
  return TT_OK;
}

// Output channel oc from input channel values at in[(iy * W + ix) * stride].
void channel(const DwForward& p, int32_t oc, const int8_t* in, int32_t stride) {
  kernels::dw_channel(p.core, oc, in, stride, p.y + oc, p.oc);
}

// Whether in place / fused run four channels at a time: the plan gave the four-channel
// scratch (planner.storage.depthwise_group_channels) and the compute core has a
// four-channel path for this convolution (else one channel at a time, through the first
// plane of that scratch: dw_channel reads a plane faster than an interleaved copy).
bool grouped(const TrainContext& ctx, const DwForward& p, int32_t plane) {
  return ctx.scratch_bytes() >= 4u * static_cast<uint32_t>(plane) && kernels::dw_four_channel_path(p.core);
}

// Output channels c..c+3 from the four-channel scratch (channel c + k of pixel i at in[4 i + k]):
// the compute core's four-channel path, or channel by channel where it has none.
void four_channels(const DwForward& p, int32_t c, const int8_t* in) {
  if (!kernels::dw_four_channels(p.core, c, in, 4, p.y))
    for (int32_t k = 0; k < 4; ++k) channel(p, c + k, in + k, 4);
}

// The fused pointwise convolution feeding this step, parsed from its own op.
tt_status parse_fused(TrainContext& ctx, const DwForward& p, ConvForward* pw) {
  const OpView self = ctx.switch_op(ctx.fused_op());
  tt_status st = parse_conv_forward(ctx, pw);
  if (st == TT_OK && ctx.preparing()) {
    st = declare_conv_reads(ctx, *pw);
    if (st == TT_OK && (pw->y_tensor != p.x.tensor || pw->oh != p.x.h || pw->ow != p.x.w || pw->oc != p.ic))
      st = ctx.fail(TT_MALFORMED_MODEL, "the fused convolution does not produce this step's input");
  }
  ctx.restore_op(self);
  return st;
}

tt_status prepare(TrainContext& ctx) {
  DwForward p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0));
  const uint32_t plane = static_cast<uint32_t>(p.x.h * p.x.w);
  if (p.x.channel) {
    if (ctx.fused_op() < 0) return ctx.fail(TT_MALFORMED_MODEL, "input in channel storage without a fused producer");
    if (ctx.mode() != tfmt::kNormal || p.m != 1)
      return ctx.fail(TT_UNSUPPORTED, "a fused step must run normally with depth multiplier 1");
    ConvForward pw;
    if ((st = parse_fused(ctx, p, &pw)) != TT_OK) return st;
    if ((st = expect_scratch(ctx, plane)) != TT_OK) return st;
  } else {
    if (ctx.fused_op() >= 0) return ctx.fail(TT_MALFORMED_MODEL, "a fused convolution's output is not this input");
    if ((st = ctx.reads(x)) != TT_OK) return st;
  }
  if ((st = ctx.reads(ctx.tensor(ctx.input(1)))) != TT_OK) return st;
  if (p.has_bias && (st = ctx.reads(ctx.tensor(ctx.input(2)))) != TT_OK) return st;
  const TensorDesc y = ctx.tensor(ctx.output(0));
  if ((st = ctx.writes(y)) != TT_OK) return st;
  if (ctx.mode() == tfmt::kInPlace) {
    if (!ctx.layout_is("channel")) return ctx.fail(TT_UNSUPPORTED, "in-place layout is not 'channel'");
    if (p.m != 1) return ctx.fail(TT_UNSUPPORTED, "in place needs depth multiplier 1");
    if ((st = expect_in_place_over(ctx, x, y)) != TT_OK) return st;
    return expect_scratch(ctx, plane);
  }
  return TT_OK;
}

tt_status eval(TrainContext& ctx) {
  DwForward p;
  tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  int8_t* scratch = reinterpret_cast<int8_t*>(ctx.scratch());
  const int32_t plane = p.x.h * p.x.w;
  if (p.x.channel) {
    ConvForward pw;
    if ((st = parse_fused(ctx, p, &pw)) != TT_OK) return st;
    int32_t c = 0;
    if (grouped(ctx, p, plane)) {
      for (; c + 4 <= p.oc; c += 4) {
        kernels::conv_pointwise_channels(pw.core, c, 4, scratch, 4);
        four_channels(p, c, scratch);
      }
    }
    for (; c < p.oc; ++c) {
      kernels::conv_pointwise_channels(pw.core, c, 1, scratch, 1);
      channel(p, c, scratch, 1);
    }
    return TT_OK;
  }
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  if (ctx.mode() == tfmt::kInPlace) {
    int32_t c = 0;
    if (grouped(ctx, p, plane)) {
      for (; c + 4 <= p.oc; c += 4) {
        for (int32_t i = 0; i < plane; ++i) memcpy(scratch + 4 * i, x + static_cast<int64_t>(i) * p.ic + c, 4);
        four_channels(p, c, scratch);
      }
    }
    for (; c < p.oc; ++c) {
      for (int32_t i = 0; i < plane; ++i) scratch[i] = x[static_cast<int64_t>(i) * p.ic + c];
      channel(p, c, scratch, 1);
    }
    return TT_OK;
  }
  kernels::dw_interleaved(p.core, x, p.ic, p.y);
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainDepthwiseConv2D = {"DEPTHWISE_CONV_2D", prepare, eval};

tt_status parse_depthwise_forward(TrainContext& ctx, DwCore* core, Spatial* x, int8_t** y) {
  DwForward p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  *core = p.core;
  *x = p.x;
  *y = p.y;
  return TT_OK;
}

}  // namespace train
}  // namespace tt
