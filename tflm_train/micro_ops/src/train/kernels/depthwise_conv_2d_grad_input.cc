// DEPTHWISE_CONV_2D_GRAD_INPUT(grad_y, weight) -> grad_x (docs/training_graph.md):
//   grad_x[iy,ix,ci] = sum_{ky asc} sum_{kx asc} sum_{j<M} grad_y[oy,ox,ci*M+j] * W[0,ky,kx,ci*M+j]
// W = f32(w_q) * weight_scale[co]. Modes: normal; in place, layout "channel"
// (M = 1: grad_y channel c copied to the scratch, then grad_x channel c written
// over the slots of channel c). The output may be a VIRTUAL_CROP (interior only).
// Gradients float32 or float16 (G, both alike): widened on load, one rounding per
// stored element.
#include "float_mac.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct DwGradInput {
  const G* g = nullptr;      // [1, OH, OW, C*M]
  Int8Weights w;             // [1, KH, KW, C*M]
  F32Table scale;
  Spatial out;               // [1, H, W, C]
  int32_t oh = 0, ow = 0, co = 0, kh = 0, kw = 0, c = 0, m = 1;
  ConvGeometry geo;
};

template <typename G>
tt_status parse(TrainContext& ctx, DwGradInput<G>* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  Spatial gs;
  if ((st = spatial_of(ctx, g, GradDType<G>::value, "gradient", &gs)) != TT_OK) return st;
  if (g.storage != tfmt::kArena) return ctx.fail(TT_UNSUPPORTED, "gradient must be an arena tensor");
  if ((st = int8_weights_of(ctx, w, "weight", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 4, "weight")) != TT_OK) return st;
  if ((st = spatial_of(ctx, out, GradDType<G>::value, "output", &p->out)) != TT_OK) return st;
  if (out.storage != tfmt::kArena && out.storage != tfmt::kVirtualCrop)
    return ctx.fail(TT_UNSUPPORTED, "output must be an arena tensor or a virtual crop");
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->co = w.dims[3];
  p->c = p->out.c;
  p->oh = gs.h;
  p->ow = gs.w;
  if (w.dims[0] != 1 || p->c < 1 || p->co % p->c != 0 || gs.c != p->co)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight 1x", p->kh, "x", p->kw, "x", p->co, " does not fit ", p->c,
                    " input and ", gs.c, " gradient channels");
  p->m = p->co / p->c;
  int32_t m_attr;
  if ((st = ctx.attr_int("depth_multiplier", &m_attr)) != TT_OK) return st;
  if (m_attr != p->m) return ctx.fail(TT_SHAPE_MISMATCH, "depth_multiplier ", m_attr, ", the weight gives ", p->m);
  if ((st = conv_geometry_attrs(ctx, &p->geo)) != TT_OK) return st;
  if ((st = f32_table(ctx, "weight_scale", p->co, &p->scale)) != TT_OK) return st;
  p->g = grad_data<G>(g);
  return TT_OK;
}

// grad_x of input channel ci at every stored pixel, written at out[p * out_stride];
// the gradient of output channel co is read at g[pixel * g_stride] from g_base + co offset.
template <typename G>
void channel(const DwGradInput<G>& p, int32_t ci, const G* g, int32_t g_stride, bool single, G* out,
             int32_t out_stride) {
  for (int32_t iy = 0; iy < p.out.h; ++iy)
    for (int32_t ix = 0; ix < p.out.w; ++ix) {
      const int32_t ly = iy + p.out.top, lx = ix + p.out.left;
      float acc = 0.0f;
      for (int32_t ky = 0; ky < p.kh; ++ky) {
        const int32_t ny = ly + p.geo.pad_top - ky * p.geo.dilation_h;
        if (ny < 0 || ny % p.geo.stride_h != 0) continue;
        const int32_t oy = ny / p.geo.stride_h;
        if (oy >= p.oh) continue;
        for (int32_t kx = 0; kx < p.kw; ++kx) {
          const int32_t nx = lx + p.geo.pad_left - kx * p.geo.dilation_w;
          if (nx < 0 || nx % p.geo.stride_w != 0) continue;
          const int32_t ox = nx / p.geo.stride_w;
          if (ox >= p.ow) continue;
          for (int32_t j = 0; j < p.m; ++j) {
            const int32_t co = ci * p.m + j;
            const float w = static_cast<float>(p.w.at(ky * p.kw + kx, co)) * p.scale.at(co);
            const float gv =
                widen(single ? g[oy * p.ow + ox] : g[(static_cast<int64_t>(oy) * p.ow + ox) * g_stride + co]);
            acc = acc + gv * w;
          }
        }
      }
      out[(static_cast<int64_t>(iy) * p.out.w + ix) * out_stride] = narrow<G>(acc);
    }
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  DwGradInput<G> p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.reads(ctx.tensor(ctx.input(1)))) != TT_OK) return st;
  if ((st = ctx.writes(out)) != TT_OK) return st;
  if (ctx.mode() == tfmt::kInPlace) {
    if (!ctx.layout_is("channel")) return ctx.fail(TT_UNSUPPORTED, "in-place layout is not 'channel'");
    if (p.m != 1 || out.storage != tfmt::kArena)
      return ctx.fail(TT_UNSUPPORTED, "in place needs depth multiplier 1 and an arena output");
    if ((st = expect_in_place_over(ctx, g, out)) != TT_OK) return st;
    return expect_scratch(ctx, static_cast<uint32_t>(p.oh * p.ow) * static_cast<uint32_t>(sizeof(G)));
  }
  return TT_OK;
}

// Bounds of the fast path's stack tables (about 2 KB); larger shapes take channel().
constexpr int32_t kMaxWeights = 64;      // kh * kw * multiplier held as float32 per channel
constexpr int32_t kMaxRows = 16;         // kh
constexpr int32_t kMaxColumns = 256;     // stored gradient width
constexpr int32_t kMaxColumnTaps = 512;  // width * kw

// The valid (kx, ox) taps of every stored column, ascending kx: computed once per
// step instead of per pixel and channel (the stride divisibility tests included).
struct ColumnTaps {
  int8_t count[kMaxColumns];
  int8_t kx[kMaxColumnTaps];   // [ix * kw + i]
  int16_t ox[kMaxColumnTaps];
};

// channel() with the weights of input channel ci converted once (the same float32
// products f32(w_q) * scale) and the tap lists precomputed; same order, same roundings.
template <typename G>
void channel_fast(const DwGradInput<G>& p, const ColumnTaps& cols, int32_t ci, const G* g, int32_t g_stride,
                  bool single, G* out, int32_t out_stride) {
  float wf[kMaxWeights];
  for (int32_t t = 0; t < p.kh * p.kw; ++t)
    for (int32_t j = 0; j < p.m; ++j) {
      const int32_t co = ci * p.m + j;
      wf[t * p.m + j] = static_cast<float>(p.w.at(t, co)) * p.scale.at(co);
    }
  for (int32_t iy = 0; iy < p.out.h; ++iy) {
    const int32_t ly = iy + p.out.top;
    int32_t ky_list[kMaxRows], oy_list[kMaxRows], ny_count = 0;
    for (int32_t ky = 0; ky < p.kh; ++ky) {
      const int32_t ny = ly + p.geo.pad_top - ky * p.geo.dilation_h;
      if (ny < 0 || ny % p.geo.stride_h != 0) continue;
      const int32_t oy = ny / p.geo.stride_h;
      if (oy >= p.oh) continue;
      ky_list[ny_count] = ky;
      oy_list[ny_count++] = oy;
    }
    for (int32_t ix = 0; ix < p.out.w; ++ix) {
      const int32_t base = ix * p.kw, nx_count = cols.count[ix];
      float acc = 0.0f;
      for (int32_t a = 0; a < ny_count; ++a) {
        const int64_t grow = static_cast<int64_t>(oy_list[a]) * p.ow;
        const float* wrow = wf + ky_list[a] * p.kw * p.m;
        for (int32_t b = 0; b < nx_count; ++b) {
          const float* w = wrow + cols.kx[base + b] * p.m;
          const int64_t pixel = grow + cols.ox[base + b];
          if (single) {
            acc = mul_add(acc, widen(g[pixel]), w[0]);
          } else {
            const G* gp = g + pixel * g_stride + ci * p.m;
            for (int32_t j = 0; j < p.m; ++j) acc = mul_add(acc, widen(gp[j]), w[j]);
          }
        }
      }
      out[(static_cast<int64_t>(iy) * p.out.w + ix) * out_stride] = narrow<G>(acc);
    }
  }
}

// channel() for stride 1, depth multiplier 1 and a K x K window: grad_y pixel (oy, ox) =
// (ly + pad_top - ky, lx + pad_left - kx), so the valid kx of a column are one range and
// whole in the interior, where the taps run unrolled with the weights (the same float32
// products f32(w_q) * scale) in registers. Same order (ky, then kx ascending), same roundings.
template <int K, typename G>
void channel_s1(const DwGradInput<G>& p, int32_t ci, const G* g, int32_t g_stride, G* out, int32_t out_stride) {
  float wf[K * K];
  for (int32_t t = 0; t < K * K; ++t) wf[t] = static_cast<float>(p.w.at(t, ci)) * p.scale.at(ci);
  const int32_t dil = p.geo.dilation_w, dil_h = p.geo.dilation_h;
  for (int32_t iy = 0; iy < p.out.h; ++iy) {
    const int32_t ny0 = iy + p.out.top + p.geo.pad_top;
    int32_t ky_list[K];
    const G* rows[K];
    int32_t nk = 0;
    for (int32_t ky = 0; ky < K; ++ky) {
      const int32_t oy = ny0 - ky * dil_h;
      if (oy < 0 || oy >= p.oh) continue;
      ky_list[nk] = ky;
      rows[nk++] = g + static_cast<int64_t>(oy) * p.ow * g_stride;
    }
    G* orow = out + static_cast<int64_t>(iy) * p.out.w * out_stride;
    for (int32_t ix = 0; ix < p.out.w; ++ix) {
      const int32_t ox0 = ix + p.out.left + p.geo.pad_left;  // ox of kx = 0
      float acc = 0.0f;
      if (ox0 - (K - 1) * dil >= 0 && ox0 < p.ow) {
        const int64_t step = static_cast<int64_t>(dil) * g_stride;
        for (int32_t a = 0; a < nk; ++a) {
          const G* gp = rows[a] + static_cast<int64_t>(ox0) * g_stride;
          const float* w = wf + ky_list[a] * K;
#pragma GCC unroll 7
          for (int32_t kx = 0; kx < K; ++kx, gp -= step) acc = mul_add(acc, widen(*gp), w[kx]);
        }
      } else {
        for (int32_t a = 0; a < nk; ++a) {
          const float* w = wf + ky_list[a] * K;
          for (int32_t kx = 0; kx < K; ++kx) {
            const int32_t ox = ox0 - kx * dil;
            if (ox < 0 || ox >= p.ow) continue;
            acc = mul_add(acc, widen(rows[a][static_cast<int64_t>(ox) * g_stride]), w[kx]);
          }
        }
      }
      orow[static_cast<int64_t>(ix) * out_stride] = narrow<G>(acc);
    }
  }
}

// The stride-1 path's kernel for this op, or nullptr.
template <typename G>
using ChannelFn = void (*)(const DwGradInput<G>&, int32_t, const G*, int32_t, G*, int32_t);
template <typename G>
ChannelFn<G> stride1_kernel(const DwGradInput<G>& p) {
  if (p.geo.stride_h != 1 || p.geo.stride_w != 1 || p.m != 1 || p.kh != p.kw) return nullptr;
  if (p.kh == 3) return channel_s1<3, G>;
  if (p.kh == 5) return channel_s1<5, G>;
  if (p.kh == 7) return channel_s1<7, G>;
  return nullptr;
}

template <typename G>
bool column_taps(const DwGradInput<G>& p, ColumnTaps* cols) {
  if (p.out.w > kMaxColumns || p.out.w * p.kw > kMaxColumnTaps || p.kh * p.kw * p.m > kMaxWeights ||
      p.kh > kMaxRows || p.ow > 32767)
    return false;
  for (int32_t ix = 0; ix < p.out.w; ++ix) {
    const int32_t lx = ix + p.out.left;
    int8_t n = 0;
    for (int32_t kx = 0; kx < p.kw; ++kx) {
      const int32_t nx = lx + p.geo.pad_left - kx * p.geo.dilation_w;
      if (nx < 0 || nx % p.geo.stride_w != 0) continue;
      const int32_t ox = nx / p.geo.stride_w;
      if (ox >= p.ow) continue;
      cols->kx[ix * p.kw + n] = static_cast<int8_t>(kx);
      cols->ox[ix * p.kw + n++] = static_cast<int16_t>(ox);
    }
    cols->count[ix] = n;
  }
  return true;
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  DwGradInput<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  G* out = reinterpret_cast<G*>(p.out.data);
  const ChannelFn<G> s1 = stride1_kernel(p);
  ColumnTaps cols;
  const bool fast = s1 == nullptr && column_taps(p, &cols);
  if (ctx.mode() == tfmt::kNormal) {
    for (int32_t ci = 0; ci < p.c; ++ci) {
      if (s1) s1(p, ci, p.g + ci, p.co, out + ci, p.c);
      else if (fast) channel_fast(p, cols, ci, p.g, p.co, false, out + ci, p.c);
      else channel(p, ci, p.g, p.co, false, out + ci, p.c);
    }
    return TT_OK;
  }
  G* scratch = reinterpret_cast<G*>(ctx.scratch());  // channel c of grad_y as stored
  const int32_t plane = p.oh * p.ow;
  for (int32_t c = 0; c < p.c; ++c) {
    for (int32_t i = 0; i < plane; ++i) scratch[i] = p.g[static_cast<int64_t>(i) * p.c + c];
    if (s1) s1(p, c, scratch, 1, out + c, p.c);
    else if (fast) channel_fast(p, cols, c, scratch, 1, true, out + c, p.c);
    else channel(p, c, scratch, 1, true, out + c, p.c);
  }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainDepthwiseConv2DGradInput = {"DEPTHWISE_CONV_2D_GRAD_INPUT", prepare, eval};

}  // namespace train
}  // namespace tt
