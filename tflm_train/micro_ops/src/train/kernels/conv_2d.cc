// CONV_2D (forward, int8) of the training graph: TFLite's integer convolution
// (bit-exact with the inference kernel src/kernels/conv_2d.cc), reading its
// input through a virtual PAD if the plan skipped the PAD, its weights from
// flash, SRAM or split, and writing its output in the step's mode:
//   normal; in place (pixel_ascending / pixel_descending for 1x1 stride 1,
//   row_ascending / row_descending); fused (run channel by channel inside the
//   next depthwise step, see depthwise_conv_2d.cc).
#include "conv_2d.h"

namespace tt {
namespace train {

tt_status parse_conv_forward(TrainContext& ctx, ConvForward* p) {
  const bool has_bias = ctx.input_count() == 3;
  tt_status st = expect_arity(ctx, has_bias ? 3 : 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0));
  const TensorDesc w = ctx.tensor(ctx.input(1));
  const TensorDesc y = ctx.tensor(ctx.output(0));
  if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &p->x)) != TT_OK) return st;
  if (p->x.channel) return ctx.fail(TT_UNSUPPORTED, "input in channel storage");
  if ((st = int8_weights_of(ctx, w, "filter", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 4, "filter")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if (y.rank != 4 || y.dims[0] != 1) return ctx.fail(TT_UNSUPPORTED, "output must be 1xHxWxC");
  p->oc = w.dims[0];
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->ic = w.dims[3];
  p->oh = y.dims[1];
  p->ow = y.dims[2];
  if (p->ic != p->x.c || y.dims[3] != p->oc || p->oc < 1 || p->ic < 1)
    return ctx.fail(TT_SHAPE_MISMATCH, "filter ", p->oc, "x", p->kh, "x", p->kw, "x", p->ic, " does not fit input depth ",
                    p->x.c, " and output depth ", y.dims[3], " (grouped convolutions are not supported)");
  if (static_cast<int64_t>(p->kh) * p->kw * p->ic > 65000)
    return ctx.fail(TT_UNSUPPORTED, "filter window of more than 65000 taps");
  if ((st = forward_window(ctx, p->x.lh, p->x.lw, p->kh, p->kw, p->oh, p->ow, &p->g)) != TT_OK) return st;
  p->has_bias = has_bias;
  if (has_bias) {
    const TensorDesc b = ctx.tensor(ctx.input(2));
    if ((st = expect_dtype(ctx, b, tfmt::kInt32, "bias")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, b, "bias")) != TT_OK) return st;
    if (b.elements != p->oc) return ctx.fail(TT_SHAPE_MISMATCH, "bias has ", static_cast<long long>(b.elements),
                                             " elements for ", p->oc, " output channels");
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
  p->y_tensor = y.index;
  p->y_storage = y.storage;
  fill_window_core(*p, &p->core);
  p->core.x = reinterpret_cast<const int8_t*>(p->x.data);
  p->core.ic = p->ic;
  return TT_OK;
}

tt_status declare_conv_reads(TrainContext& ctx, const ConvForward& p) {
  tt_status st = ctx.reads(ctx.tensor(ctx.input(0)));
  if (st == TT_OK) st = ctx.reads(ctx.tensor(ctx.input(1)));
  if (st == TT_OK && p.has_bias) st = ctx.reads(ctx.tensor(ctx.input(2)));
  return st;
}

namespace {

bool is_pointwise(const ConvForward& p) {
  return p.kh == 1 && p.kw == 1 && p.g.stride_h == 1 && p.g.stride_w == 1 && p.x.top == 0 && p.x.left == 0 &&
         p.x.h == p.oh && p.x.w == p.ow;
}

tt_status prepare(TrainContext& ctx) {
  ConvForward p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace | kAllowFused);
  if (st == TT_OK) st = parse_conv_forward(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc y = ctx.tensor(p.y_tensor);
  if (ctx.mode() == tfmt::kFused) {
    if (y.storage != tfmt::kChannel || !is_pointwise(p))
      return ctx.fail(TT_UNSUPPORTED, "a fused convolution must be 1x1, stride 1, with a channel-stored output");
    return TT_OK;  // runs inside the next depthwise step, which declares its accesses
  }
  if (y.storage != tfmt::kArena) return ctx.fail(TT_MALFORMED_MODEL, "output is not an arena tensor");
  if ((st = declare_conv_reads(ctx, p)) != TT_OK) return st;
  if ((st = ctx.writes(y)) != TT_OK) return st;
  if (ctx.mode() == tfmt::kInPlace) {
    if ((st = expect_in_place_over(ctx, ctx.tensor(ctx.input(0)), y)) != TT_OK) return st;
    if (ctx.layout_is("pixel_ascending") || ctx.layout_is("pixel_descending")) {
      if (!is_pointwise(p)) return ctx.fail(TT_UNSUPPORTED, "pixel layout needs a 1x1 stride-1 convolution");
      return expect_scratch(ctx, static_cast<uint32_t>(p.oc));
    }
    if (ctx.layout_is("row_ascending") || ctx.layout_is("row_descending"))
      return expect_scratch(ctx, static_cast<uint32_t>(p.ow * p.oc));
    return ctx.fail(TT_UNSUPPORTED, "in-place layout is not pixel_* or row_*");
  }
  return TT_OK;
}

// Pixels of an in-place pixel layout computed together when their bytes allow.
constexpr int32_t kPixelRun = 64;

tt_status eval(TrainContext& ctx) {
  if (ctx.mode() == tfmt::kFused) return TT_OK;
  ConvForward p;
  tt_status st = parse_conv_forward(ctx, &p);
  if (st != TT_OK) return st;
  const int32_t pixel = p.oc, row = p.ow * p.oc;
  if (ctx.mode() == tfmt::kNormal) {
    kernels::conv_rows(p.core, 0, p.oh, p.y);
    return TT_OK;
  }
  int8_t* scratch = reinterpret_cast<int8_t*>(ctx.scratch());
  if (ctx.layout_is("pixel_ascending") || ctx.layout_is("pixel_descending")) {
    // Output pixel p reads input pixel p only; the order keeps unread input pixels intact.
    // One pixel through the scratch; a run of pixels straight into the output where its
    // bytes miss every input pixel not yet read (the run's own included).
    const bool up = ctx.layout_is("pixel_ascending");
    const int32_t n = p.oh * p.ow;
    const uint8_t* x = p.x.data;
    for (int32_t k = 0; k < n;) {
      const int32_t run = n - k < kPixelRun ? n - k : kPixelRun;
      const int32_t b = up ? k : n - run - k;  // the run's first pixel
      const uint8_t* unread = up ? x + static_cast<int64_t>(b) * p.ic : x;
      const int64_t unread_n = (up ? static_cast<int64_t>(n - b) : static_cast<int64_t>(b + run)) * p.ic;
      int8_t* dst = p.y + static_cast<int64_t>(b) * pixel;
      const uint8_t* d = reinterpret_cast<const uint8_t*>(dst);
      if (run > 1 && (d + static_cast<int64_t>(run) * pixel <= unread || unread + unread_n <= d)) {
        kernels::conv_pixels(p.core, b, run, dst);
        k += run;
        continue;
      }
      const int32_t i = up ? k : n - 1 - k;
      kernels::conv_pixel(p.core, i / p.ow, i % p.ow, scratch);
      memcpy(p.y + static_cast<int64_t>(i) * pixel, scratch, static_cast<size_t>(pixel));
      ++k;
    }
    return TT_OK;
  }
  const bool up = ctx.layout_is("row_ascending");
  for (int32_t k = 0; k < p.oh; ++k) {
    const int32_t oy = up ? k : p.oh - 1 - k;
    kernels::conv_rows(p.core, oy, oy + 1, scratch);
    memcpy(p.y + static_cast<int64_t>(oy) * row, scratch, static_cast<size_t>(row));
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainConv2D = {"CONV_2D", prepare, eval};

}  // namespace train
}  // namespace tt
