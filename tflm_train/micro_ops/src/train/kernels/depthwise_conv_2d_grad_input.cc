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

// The line path (depth multiplier 1): per channel, each needed row oy of grad_y is widened
// once into a line of the logical columns the window reaches, n = lx + pad_left - kx * dw for
// every stored output column and tap, holding grad_y[oy, n / sw] where n is a multiple of sw
// inside the row and +0.0f elsewhere (the reference's np.where(valid, g, 0) * w terms: a +0.0f
// or -0.0f product leaves a sum that starts at +0.0f unchanged, and a sum that starts at +0.0f
// is never -0.0f, so these terms and the skipped ones give the same bits). Output column ix,
// tap kx then reads line element ix + (kw - 1 - kx) * dw: no per-tap checks. Rows outside
// grad_y are skipped (no terms). The lines live in a ring of `rows` slots (oy % rows), enough
// for the rows one output row reads; the bounds keep the ring and the weights at about 1.5 KB.
constexpr int32_t kMaxWeights = 64;       // kh * kw float32 weights of one channel
constexpr int32_t kMaxLineFloats = 320;   // the ring of lines
constexpr int32_t kMaxLines = 16;         // ring slots (= rows one output row can read)

struct LineGeometry {
  int32_t len = 0;   // floats per line: out.w + (kw - 1) * dw
  int32_t rows = 0;  // ring slots: ((kh - 1) * dh) / sh + 1
  int32_t nmin = 0;  // column position n of line element 0
};

template <typename G>
bool line_geometry(const DwGradInput<G>& p, LineGeometry* lg) {
  if (p.m != 1 || p.kh * p.kw > kMaxWeights) return false;
  lg->len = p.out.w + (p.kw - 1) * p.geo.dilation_w;
  lg->rows = ((p.kh - 1) * p.geo.dilation_h) / p.geo.stride_h + 1;
  lg->nmin = p.out.left + p.geo.pad_left - (p.kw - 1) * p.geo.dilation_w;
  return lg->rows <= kMaxLines && lg->len * lg->rows <= kMaxLineFloats;
}

// Line of grad_y row oy (pixel (oy, ox) at g[(oy * ow + ox) * g_stride]) into `line`.
template <typename G>
void build_line(const DwGradInput<G>& p, const LineGeometry& lg, const G* g, int32_t g_stride, int32_t oy,
                float* line) {
  const G* row = g + static_cast<int64_t>(oy) * p.ow * g_stride;
  const int32_t sw = p.geo.stride_w;
  int32_t n = lg.nmin, r = ((n % sw) + sw) % sw;  // n mod sw
  for (int32_t t = 0; t < lg.len; ++t, ++n) {
    line[t] = (r == 0 && n >= 0 && n < p.ow * sw) ? widen(row[static_cast<int64_t>(n / sw) * g_stride]) : 0.0f;
    if (++r == sw) r = 0;
  }
}

// Four output columns of one row: acc[j] over the valid rows a (ky ascending), then kx ascending.
// K > 0: a K-wide window with dilation 1 (fully unrolled: the K + 3 line values and the weight
// of a row in registers); K == 0: any width and dilation.
template <int K>
inline void four_columns(const float* const* lines, const float* const* wrows, int32_t nk, int32_t kw, int32_t dw,
                         int32_t ix, float* acc) {
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  for (int32_t a = 0; a < nk; ++a) {
    const float* l = lines[a] + ix;
    const float* w = wrows[a];
    if (K > 0) {
#pragma GCC unroll 7
      for (int32_t kx = 0; kx < K; ++kx) {
        const float wv = w[kx];
        const float* t = l + (K - 1 - kx);
        a0 = mul_add(a0, t[0], wv);
        a1 = mul_add(a1, t[1], wv);
        a2 = mul_add(a2, t[2], wv);
        a3 = mul_add(a3, t[3], wv);
      }
    } else {
      for (int32_t kx = 0; kx < kw; ++kx) {
        const float wv = w[kx];
        const float* t = l + (kw - 1 - kx) * dw;
        a0 = mul_add(a0, t[0], wv);
        a1 = mul_add(a1, t[1], wv);
        a2 = mul_add(a2, t[2], wv);
        a3 = mul_add(a3, t[3], wv);
      }
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

// channel() through lines (depth multiplier 1): the same terms in the same order.
template <int K, typename G>
void channel_lines(const DwGradInput<G>& p, const LineGeometry& lg, int32_t ci, const G* g, int32_t g_stride, G* out,
                   int32_t out_stride) {
  float wf[kMaxWeights];
  {
    const int32_t j = p.w.split() ? p.w.slot(ci) : -1;
    const float s = p.scale.at(ci);
    for (int32_t t = 0; t < p.kh * p.kw; ++t) {
      const int8_t q = j >= 0 ? p.w.ram[t * p.w.nsel + j] : p.w.full[static_cast<int64_t>(t) * p.w.last + ci];
      wf[t] = static_cast<float>(q) * s;
    }
  }
  float ring[kMaxLineFloats];
  int32_t held[kMaxLines];  // the row each slot holds, -1: none
  for (int32_t r = 0; r < lg.rows; ++r) held[r] = -1;
  const int32_t kw = p.kw, dw = p.geo.dilation_w;
  for (int32_t iy = 0; iy < p.out.h; ++iy) {
    const int32_t ly = iy + p.out.top;
    const float* lines[kMaxLines];
    const float* wrows[kMaxLines];
    int32_t nk = 0;
    for (int32_t ky = 0; ky < p.kh; ++ky) {
      const int32_t ny = ly + p.geo.pad_top - ky * p.geo.dilation_h;
      if (ny < 0 || ny % p.geo.stride_h != 0) continue;
      const int32_t oy = ny / p.geo.stride_h;
      if (oy >= p.oh) continue;
      const int32_t slot = oy % lg.rows;
      float* line = ring + slot * lg.len;
      if (held[slot] != oy) {
        build_line(p, lg, g, g_stride, oy, line);
        held[slot] = oy;
      }
      lines[nk] = line;
      wrows[nk++] = wf + ky * kw;
    }
    G* orow = out + static_cast<int64_t>(iy) * p.out.w * out_stride;
    int32_t ix = 0;
    for (; ix + 4 <= p.out.w; ix += 4) {
      float acc[4];
      four_columns<K>(lines, wrows, nk, kw, dw, ix, acc);
      for (int32_t j = 0; j < 4; ++j) orow[static_cast<int64_t>(ix + j) * out_stride] = narrow<G>(acc[j]);
    }
    for (; ix < p.out.w; ++ix) {
      float acc = 0.0f;
      for (int32_t a = 0; a < nk; ++a)
        for (int32_t kx = 0; kx < kw; ++kx) acc = mul_add(acc, lines[a][ix + (kw - 1 - kx) * dw], wrows[a][kx]);
      orow[static_cast<int64_t>(ix) * out_stride] = narrow<G>(acc);
    }
  }
}

// The line path's kernel for this op (nullptr: channel() only).
template <typename G>
using LinesFn = void (*)(const DwGradInput<G>&, const LineGeometry&, int32_t, const G*, int32_t, G*, int32_t);
template <typename G>
LinesFn<G> lines_kernel(const DwGradInput<G>& p, LineGeometry* lg) {
  if (!line_geometry(p, lg)) return nullptr;
  // Unrolled for the common 3-wide window only (these planes are large and rare; code size).
  if (p.geo.dilation_w == 1 && p.kw == 3) return channel_lines<3, G>;
  return channel_lines<0, G>;
}

// Four channels at a time (depth multiplier 1) when every line of the four fits at once: the
// lines as above, for all of grad_y's rows, each element holding the four channels' values side
// by side; then every output pixel sums its four channels in four accumulators (per channel the
// same terms in the same order). All of the four channels' grad_y is read before any of their
// outputs is written, so the in-place layout (output channel c over the slots of channel c)
// needs no scratch. The per-channel set-up (weights, lines, tap rows) is shared by four channels.
constexpr int32_t kBlockWeights = 49;      // kh * kw taps of four float32 weights (784 bytes)
constexpr int32_t kBlockLineFloats = 384;  // every line of four channels (1.5 KB)

template <typename G>
bool block_fits(const DwGradInput<G>& p, const LineGeometry& lg) {
  return p.m == 1 && p.c >= 4 && p.kh * p.kw <= kBlockWeights && p.oh * lg.len * 4 <= kBlockLineFloats;
}

// Output pixel (row `lines`/`wrows`, column ix) of four channels into acc[0..3].
inline void four_channels(const float* const* lines, const float* const* wrows, int32_t nk, int32_t kw, int32_t dw,
                          int32_t ix, float* acc) {
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  for (int32_t a = 0; a < nk; ++a) {
    const float* l = lines[a] + 4 * ix;
    const float* w = wrows[a];
    for (int32_t kx = 0; kx < kw; ++kx) {
      const float* t = l + 4 * (kw - 1 - kx) * dw;
      const float* v = w + 4 * kx;
      a0 = mul_add(a0, t[0], v[0]);
      a1 = mul_add(a1, t[1], v[1]);
      a2 = mul_add(a2, t[2], v[2]);
      a3 = mul_add(a3, t[3], v[3]);
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

// four_channels for output columns ix and ix + 1 (the weights loaded once for both); K > 0: a
// K-wide window with dilation 1, unrolled.
template <int K>
inline void four_channels_x2(const float* const* lines, const float* const* wrows, int32_t nk, int32_t kw,
                             int32_t dw, int32_t ix, float* acc) {
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f;
  for (int32_t a = 0; a < nk; ++a) {
    const float* l = lines[a] + 4 * ix;
    const float* w = wrows[a];
    const int32_t n = K > 0 ? K : kw, step = K > 0 ? 1 : dw;
#pragma GCC unroll 7
    for (int32_t kx = 0; kx < n; ++kx) {
      const float* t = l + 4 * (n - 1 - kx) * step;
      const float* v = w + 4 * kx;
      const float v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
      a0 = mul_add(a0, t[0], v0);
      a1 = mul_add(a1, t[1], v1);
      a2 = mul_add(a2, t[2], v2);
      a3 = mul_add(a3, t[3], v3);
      b0 = mul_add(b0, t[4], v0);
      b1 = mul_add(b1, t[5], v1);
      b2 = mul_add(b2, t[6], v2);
      b3 = mul_add(b3, t[7], v3);
    }
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
  acc[4] = b0;
  acc[5] = b1;
  acc[6] = b2;
  acc[7] = b3;
}

// Channels c0 .. c0 + 3: grad_y pixel (oy, ox) channel c0 + k at g[(oy * ow + ox) * C + k], output
// pixel i channel c0 + k at out[i * C + k] (C = p.c).
template <int K, typename G>
void block4(const DwGradInput<G>& p, const LineGeometry& lg, int32_t c0, const G* g, G* out) {
  const int32_t taps = p.kh * p.kw, kw = p.kw, dw = p.geo.dilation_w, C = p.c;
  float wf[4 * kBlockWeights];  // [tap][k]
  for (int32_t k = 0; k < 4; ++k) {
    const int32_t c = c0 + k;
    const int32_t j = p.w.split() ? p.w.slot(c) : -1;
    const float s = p.scale.at(c);
    for (int32_t t = 0; t < taps; ++t) {
      const int8_t q = j >= 0 ? p.w.ram[t * p.w.nsel + j] : p.w.full[static_cast<int64_t>(t) * p.w.last + c];
      wf[4 * t + k] = static_cast<float>(q) * s;
    }
  }
  float ring[kBlockLineFloats];  // line of grad_y row oy at ring + oy * len * 4
  const int32_t sw = p.geo.stride_w, len = lg.len;
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const G* row = g + static_cast<int64_t>(oy) * p.ow * C;
    float* line = ring + oy * len * 4;
    int32_t n = lg.nmin, r = ((n % sw) + sw) % sw;  // n mod sw
    for (int32_t t = 0; t < len; ++t, ++n, line += 4) {
      if (r == 0 && n >= 0 && n < p.ow * sw) {
        const G* v = row + static_cast<int64_t>(n / sw) * C;
        line[0] = widen(v[0]);
        line[1] = widen(v[1]);
        line[2] = widen(v[2]);
        line[3] = widen(v[3]);
      } else {
        line[0] = line[1] = line[2] = line[3] = 0.0f;
      }
      if (++r == sw) r = 0;
    }
  }
  for (int32_t iy = 0; iy < p.out.h; ++iy) {
    const int32_t ly = iy + p.out.top;
    const float* lines[kMaxLines];
    const float* wrows[kMaxLines];
    int32_t nk = 0;
    for (int32_t ky = 0; ky < p.kh; ++ky) {
      const int32_t ny = ly + p.geo.pad_top - ky * p.geo.dilation_h;
      if (ny < 0 || ny % p.geo.stride_h != 0) continue;
      const int32_t oy = ny / p.geo.stride_h;
      if (oy >= p.oh) continue;
      lines[nk] = ring + oy * len * 4;
      wrows[nk++] = wf + 4 * ky * kw;
    }
    G* o = out + static_cast<int64_t>(iy) * p.out.w * C;
    int32_t ix = 0;
    for (; ix + 2 <= p.out.w; ix += 2, o += 2 * C) {
      float acc[8];
      four_channels_x2<K>(lines, wrows, nk, kw, dw, ix, acc);
      for (int32_t j = 0; j < 2; ++j) {
        G* q = o + j * C;
        q[0] = narrow<G>(acc[4 * j]);
        q[1] = narrow<G>(acc[4 * j + 1]);
        q[2] = narrow<G>(acc[4 * j + 2]);
        q[3] = narrow<G>(acc[4 * j + 3]);
      }
    }
    if (ix < p.out.w) {  // an odd width's last column (the generic loop: code size)
      float acc[4];
      four_channels(lines, wrows, nk, kw, dw, ix, acc);
      o[0] = narrow<G>(acc[0]);
      o[1] = narrow<G>(acc[1]);
      o[2] = narrow<G>(acc[2]);
      o[3] = narrow<G>(acc[3]);
    }
  }
}

template <typename G>
using BlockFn = void (*)(const DwGradInput<G>&, const LineGeometry&, int32_t, const G*, G*);
template <typename G>
BlockFn<G> block_kernel(const DwGradInput<G>& p, const LineGeometry& lg) {
  if (!block_fits(p, lg)) return nullptr;
  if (p.geo.dilation_w == 1 && p.kw == 3) return block4<3, G>;
  if (p.geo.dilation_w == 1 && p.kw == 5) return block4<5, G>;
  if (p.geo.dilation_w == 1 && p.kw == 7) return block4<7, G>;
  return block4<0, G>;
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  DwGradInput<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  G* out = reinterpret_cast<G*>(p.out.data);
  LineGeometry lg;
  const LinesFn<G> lines = lines_kernel(p, &lg);
  const BlockFn<G> block = lines ? block_kernel(p, lg) : nullptr;
  int32_t c0 = 0;  // channels [0, c0) done four at a time
  if (block) {
    for (; c0 + 4 <= p.c; c0 += 4) block(p, lg, c0, p.g + c0, out + c0);
  }
  if (ctx.mode() == tfmt::kNormal) {
    for (int32_t ci = c0; ci < p.c; ++ci) {
      if (lines) lines(p, lg, ci, p.g + ci, p.co, out + ci, p.c);
      else channel(p, ci, p.g, p.co, false, out + ci, p.c);
    }
    return TT_OK;
  }
  G* scratch = reinterpret_cast<G*>(ctx.scratch());  // channel c of grad_y as stored
  const int32_t plane = p.oh * p.ow;
  for (int32_t c = c0; c < p.c; ++c) {
    for (int32_t i = 0; i < plane; ++i) scratch[i] = p.g[static_cast<int64_t>(i) * p.c + c];
    if (lines) lines(p, lg, c, scratch, 1, out + c, p.c);
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
