// CONV_2D_GRAD_INPUT(grad_y, weight) -> grad_x (docs/training_graph.md):
//   grad_x[iy,ix,c] = sum_{ky asc} sum_{kx asc} sum_{o asc} grad_y[oy,ox,o] * W[o,ky,kx,c]
// over taps with integral in-range oy = (iy + pad_top - ky*dh) / sh (ox likewise),
// W = f32(w_q) * weight_scale[o]. Modes: normal; in place with a pixel layout
// (1x1 stride 1: pixel p from grad_y pixel p via a one-pixel scratch). The output
// may be a VIRTUAL_CROP: only the interior is computed, into its source.
// Storage: grad_y GI, grad_x GO (float32 or float16; float32 -> float16 for the int8
// head, whose logits gradient stays float32): widened on load, one rounding per stored
// element (so a float16 output never holds a partial sum).
#include "float_mac.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename GI>
struct ConvGradInput {
  const GI* g = nullptr;     // [1, OH, OW, O]
  Int8Weights w;             // [O, KH, KW, C]
  F32Table scale;
  Spatial out;               // [1, H, W, C] (stored part of the logical gradient)
  int32_t oh = 0, ow = 0, o = 0, kh = 0, kw = 0, c = 0;
  ConvGeometry g_;
};

template <typename GI, typename GO>
tt_status parse(TrainContext& ctx, ConvGradInput<GI>* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  Spatial gs;
  if ((st = spatial_of(ctx, g, GradDType<GI>::value, "gradient", &gs)) != TT_OK) return st;
  if (g.storage != tfmt::kArena) return ctx.fail(TT_UNSUPPORTED, "gradient must be an arena tensor");
  if ((st = int8_weights_of(ctx, w, "weight", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 4, "weight")) != TT_OK) return st;
  if ((st = spatial_of(ctx, out, GradDType<GO>::value, "output", &p->out)) != TT_OK) return st;
  if (out.storage != tfmt::kArena && out.storage != tfmt::kVirtualCrop)
    return ctx.fail(TT_UNSUPPORTED, "output must be an arena tensor or a virtual crop");
  p->o = w.dims[0];
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->c = w.dims[3];
  p->oh = gs.h;
  p->ow = gs.w;
  if (gs.c != p->o || p->out.c != p->c)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight ", p->o, "x", p->kh, "x", p->kw, "x", p->c, " does not fit gradient depth ",
                    gs.c, " and input depth ", p->out.c);
  if ((st = conv_geometry_attrs(ctx, &p->g_)) != TT_OK) return st;
  if ((st = f32_table(ctx, "weight_scale", p->o, &p->scale)) != TT_OK) return st;
  p->g = grad_data<GI>(g);
  return TT_OK;
}

// The specified order, channel by channel (windows of more than kMaxTaps taps).
template <typename GI, typename GO>
void pixel_by_channel(const ConvGradInput<GI>& p, int32_t iy, int32_t ix, GO* dst) {
  const int32_t ly = iy + p.out.top, lx = ix + p.out.left;
  for (int32_t c = 0; c < p.c; ++c) {
    const int32_t j = p.w.split() ? p.w.slot(c) : -1;
    float acc = 0.0f;
    for (int32_t ky = 0; ky < p.kh; ++ky) {
      const int32_t ny = ly + p.g_.pad_top - ky * p.g_.dilation_h;
      if (ny < 0 || ny % p.g_.stride_h != 0) continue;
      const int32_t oy = ny / p.g_.stride_h;
      if (oy >= p.oh) continue;
      for (int32_t kx = 0; kx < p.kw; ++kx) {
        const int32_t nx = lx + p.g_.pad_left - kx * p.g_.dilation_w;
        if (nx < 0 || nx % p.g_.stride_w != 0) continue;
        const int32_t ox = nx / p.g_.stride_w;
        if (ox >= p.ow) continue;
        const GI* g = p.g + (static_cast<int64_t>(oy) * p.ow + ox) * p.o;
        for (int32_t o = 0; o < p.o; ++o) {
          const int32_t row = (o * p.kh + ky) * p.kw + kx;
          const int8_t q = j >= 0 ? p.w.ram[row * p.w.nsel + j] : p.w.full[static_cast<int64_t>(row) * p.c + c];
          const float w = static_cast<float>(q) * p.scale.at(o);
          acc = mul_add(acc, widen(g[o]), w);
        }
      }
    }
    dst[c] = narrow<GO>(acc);
  }
}

constexpr int32_t kMaxTaps = 64;  // windows up to 8x8 take the register-blocked path

// grad_x at stored position (iy, ix) for every channel into `dst` (C floats).
// Each channel's sum runs over the valid taps in ascending (ky, kx) and then o
// ascending, exactly as specified; four channels are summed side by side (four
// independent accumulators, each with the specified order and roundings), the
// gradient value and weight scale of (tap, o) loaded once for the four.
template <typename GI, typename GO>
void pixel(const ConvGradInput<GI>& p, int32_t iy, int32_t ix, GO* dst) {
  const int32_t ly = iy + p.out.top, lx = ix + p.out.left;  // logical (padded) coordinates
  const int32_t taps_per_o = p.kh * p.kw;
  int32_t tap_k[kMaxTaps];        // ky * kw + kx of each valid tap, ascending
  const GI* tap_g[kMaxTaps];      // its grad_y pixel
  int32_t n = 0;
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t ny = ly + p.g_.pad_top - ky * p.g_.dilation_h;
    if (ny < 0 || ny % p.g_.stride_h != 0) continue;
    const int32_t oy = ny / p.g_.stride_h;
    if (oy >= p.oh) continue;
    for (int32_t kx = 0; kx < p.kw; ++kx) {
      const int32_t nx = lx + p.g_.pad_left - kx * p.g_.dilation_w;
      if (nx < 0 || nx % p.g_.stride_w != 0) continue;
      const int32_t ox = nx / p.g_.stride_w;
      if (ox >= p.ow) continue;
      if (n == kMaxTaps) {
        pixel_by_channel(p, iy, ix, dst);
        return;
      }
      tap_k[n] = ky * p.kw + kx;
      tap_g[n++] = p.g + (static_cast<int64_t>(oy) * p.ow + ox) * p.o;
    }
  }
  const int64_t o_stride = static_cast<int64_t>(taps_per_o) * p.c;  // weight row of o+1, same tap
  const uint32_t s_step = p.scale.length == 1 ? 0u : 4u;
  int32_t c = 0;
  while (c < p.c) {
    // Four frozen (or whole-copy) channels side by side; a trained split channel alone.
    bool block = c + 4 <= p.c;
    for (int32_t k = 0; block && p.w.split() && k < 4; ++k) block = p.w.slot(c + k) < 0;
    if (!block) {
      const int32_t j = p.w.split() ? p.w.slot(c) : -1;
      float acc = 0.0f;
      for (int32_t t = 0; t < n; ++t) {
        const GI* g = tap_g[t];
        for (int32_t o = 0; o < p.o; ++o) {
          const int32_t row = o * taps_per_o + tap_k[t];
          const int8_t q = j >= 0 ? p.w.ram[row * p.w.nsel + j] : p.w.full[static_cast<int64_t>(row) * p.c + c];
          acc = mul_add(acc, widen(g[o]),
                        static_cast<float>(q) * load_f32(p.scale.data + s_step * static_cast<uint32_t>(o)));
        }
      }
      dst[c++] = narrow<GO>(acc);
      continue;
    }
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    for (int32_t t = 0; t < n; ++t) {
      const GI* g = tap_g[t];
      const int8_t* w = p.w.full + static_cast<int64_t>(tap_k[t]) * p.c + c;
      const uint8_t* sp = p.scale.data;
      for (int32_t o = 0; o < p.o; ++o, w += o_stride, sp += s_step) {
        const float gv = widen(g[o]), s = load_f32(sp);
        a0 = mul_add(a0, gv, static_cast<float>(w[0]) * s);
        a1 = mul_add(a1, gv, static_cast<float>(w[1]) * s);
        a2 = mul_add(a2, gv, static_cast<float>(w[2]) * s);
        a3 = mul_add(a3, gv, static_cast<float>(w[3]) * s);
      }
    }
    dst[c] = narrow<GO>(a0);
    dst[c + 1] = narrow<GO>(a1);
    dst[c + 2] = narrow<GO>(a2);
    dst[c + 3] = narrow<GO>(a3);
    c += 4;
  }
}

// A 1x1 stride-1 unpadded gradient whose output is stored whole: grad_x pixel i reads
// grad_y pixel i only.
template <typename GI>
bool plain_1x1(const ConvGradInput<GI>& p) {
  return p.kh == 1 && p.kw == 1 && p.g_.stride_h == 1 && p.g_.stride_w == 1 && p.g_.pad_top == 0 &&
         p.g_.pad_left == 0 && p.out.top == 0 && p.out.left == 0 && p.out.h == p.oh && p.out.w == p.ow;
}

// Where trained split channel c's weight for output channel o lives: base[o * stride].
template <typename GI>
inline void channel_weights(const ConvGradInput<GI>& p, int32_t c, const int8_t** base, int32_t* stride) {
  const int32_t j = p.w.split() ? p.w.slot(c) : -1;
  *base = j >= 0 ? p.w.ram + j : p.w.full + c;
  *stride = j >= 0 ? p.w.nsel : p.c;
}

// Channels [c0, C) of `npx` (up to four) pixels of a plain 1x1 gradient, one channel at a time.
template <typename GI, typename GO>
void tail_channels_4px(const ConvGradInput<GI>& p, const GI* g0, GO* d0, int32_t c0, int32_t npx = 4) {
  const uint32_t s_step = p.scale.length == 1 ? 0u : 4u;
  for (int32_t c = c0; c < p.c; ++c) {
    const int8_t* wc;
    int32_t stride;
    channel_weights(p, c, &wc, &stride);
    for (int32_t k = 0; k < npx; ++k) {
      const GI* g = g0 + k * p.o;
      const int8_t* w = wc;
      float acc = 0.0f;
      for (int32_t o = 0; o < p.o; ++o, w += stride)
        acc = mul_add(acc, widen(g[o]),
                      static_cast<float>(*w) * load_f32(p.scale.data + s_step * static_cast<uint32_t>(o)));
      d0[k * p.c + c] = narrow<GO>(acc);
    }
  }
}

// Four pixels of a plain 1x1 gradient: grad_y pixel k at g + k * O into out + k * C
// (k = 0..3). Four channels by four pixels in sixteen accumulators: each weight converted
// and scaled once for the four pixels, each accumulator summing over o ascending from 0.0f
// with the specified roundings. A trained split channel reads its SRAM row (element o at
// ram[o * nsel + j]), a frozen one flash (full[o * C + c]); the last C % 4 channels one by one.
// NPX < 4: only pixels 0 .. NPX - 1 (the other rows repeat the last one and are not stored).
template <typename GI, typename GO, int NPX = 4>
void four_pixels_1x1(const ConvGradInput<GI>& p, const GI* g0, GO* d0) {
  const GI* g1 = NPX > 1 ? g0 + p.o : g0;
  const GI* g2 = NPX > 2 ? g1 + p.o : g1;
  const GI* g3 = NPX > 3 ? g2 + p.o : g2;
  const uint32_t s_step = p.scale.length == 1 ? 0u : 4u;
  int32_t c = 0;
  for (; c + 4 <= p.c; c += 4) {
    const int8_t* wp[4];
    int32_t ws[4];
    for (int32_t k = 0; k < 4; ++k) channel_weights(p, c + k, &wp[k], &ws[k]);
    const int8_t *w0 = wp[0], *w1 = wp[1], *w2 = wp[2], *w3 = wp[3];
    const int32_t t0 = ws[0], t1 = ws[1], t2 = ws[2], t3 = ws[3];
    Block4x4 b = {};
    const uint8_t* sp = p.scale.data;
    for (int32_t o = 0; o < p.o; ++o, w0 += t0, w1 += t1, w2 += t2, w3 += t3, sp += s_step) {
      const float s = load_f32(sp);
      b.mac(widen(g0[o]), widen(g1[o]), widen(g2[o]), widen(g3[o]), static_cast<float>(*w0) * s,
            static_cast<float>(*w1) * s, static_cast<float>(*w2) * s, static_cast<float>(*w3) * s);
    }
    if (NPX == 4)
      b.store(d0 + c, p.c);
    else
      b.store_rows(d0 + c, p.c, NPX);
  }
  tail_channels_4px(p, g0, d0, c, NPX);
}

constexpr int32_t kCachedO = 128;  // output channels o per weight-table chunk (2 KB of floats)

// Pixels [i0, i1) of a plain 1x1 gradient whose outputs overlap none of grad_y (normal mode:
// every pixel; in place: the pixels stored beyond grad_y's bytes): four channels at a time,
// their scaled float weights for a chunk of o converted once into a table, then every
// four-pixel block runs the chunk in sixteen accumulators. Between chunks the partial sums wait in the output (a float
// stored and reloaded is the same float), so each output still sums over o ascending from
// 0.0f with the specified roundings. The last C % 4 channels and N % 4 pixels as before.
// A float16 output cannot hold a partial sum: with more than one chunk it takes
// four_pixels_1x1 (every sum whole in registers) instead.
template <typename GI, typename GO>
void plain_1x1_pixels(const ConvGradInput<GI>& p, GO* out, int32_t i0, int32_t i1) {
  const int32_t n = i1, nb = i1 - (i1 - i0) % 4;
  if (sizeof(GO) != sizeof(float) && p.o > kCachedO) {
    for (int32_t i = i0; i < nb; i += 4)
      four_pixels_1x1(p, p.g + static_cast<int64_t>(i) * p.o, out + static_cast<int64_t>(i) * p.c);
    for (int32_t i = nb; i < n; ++i) pixel(p, i / p.out.w, i % p.out.w, out + static_cast<int64_t>(i) * p.c);
    return;
  }
  const uint32_t s_step = p.scale.length == 1 ? 0u : 4u;
  float wc[4 * kCachedO];
  int32_t c = 0;
  for (; c + 4 <= p.c; c += 4) {
    const int8_t* wp[4];
    int32_t ws[4];
    for (int32_t k = 0; k < 4; ++k) channel_weights(p, c + k, &wp[k], &ws[k]);
    for (int32_t o0 = 0; o0 < p.o; o0 += kCachedO) {
      const int32_t on = p.o - o0 < kCachedO ? p.o - o0 : kCachedO;
      for (int32_t o = 0; o < on; ++o) {
        const float sc = load_f32(p.scale.data + s_step * static_cast<uint32_t>(o0 + o));
        for (int32_t k = 0; k < 4; ++k) wc[4 * o + k] = static_cast<float>(wp[k][(o0 + o) * ws[k]]) * sc;
      }
      for (int32_t i = i0; i < nb; i += 4) {
        GO* d = out + static_cast<int64_t>(i) * p.c + c;
        Block4x4 b = {};
        if (o0 > 0) b.load(reinterpret_cast<float*>(d), p.c);  // float32 only (one chunk otherwise)
        const GI* g0 = p.g + static_cast<int64_t>(i) * p.o + o0;
        const GI* g1 = g0 + p.o;
        const GI* g2 = g1 + p.o;
        const GI* g3 = g2 + p.o;
        const float* w = wc;
        for (int32_t o = 0; o < on; ++o, w += 4)
          b.mac(widen(g0[o]), widen(g1[o]), widen(g2[o]), widen(g3[o]), w[0], w[1], w[2], w[3]);
        b.store(d, p.c);
      }
    }
  }
  for (int32_t i = i0; i < nb; i += 4)
    tail_channels_4px(p, p.g + static_cast<int64_t>(i) * p.o, out + static_cast<int64_t>(i) * p.c, c);
  for (int32_t i = nb; i < n; ++i) pixel(p, i / p.out.w, i % p.out.w, out + static_cast<int64_t>(i) * p.c);
}

// Whether [a, a + an) and [b, b + bn) (bytes) are disjoint.
inline bool disjoint(const void* a, int64_t an, const void* b, int64_t bn) {
  const uint8_t *pa = static_cast<const uint8_t*>(a), *pb = static_cast<const uint8_t*>(b);
  return pa + an <= pb || pb + bn <= pa;
}

template <typename GI, typename GO>
tt_status prepare_as(TrainContext& ctx) {
  ConvGradInput<GI> p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse<GI, GO>(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.reads(ctx.tensor(ctx.input(1)))) != TT_OK) return st;
  if ((st = ctx.writes(out)) != TT_OK) return st;
  if (ctx.mode() == tfmt::kInPlace) {
    if (!ctx.layout_is("pixel_ascending") && !ctx.layout_is("pixel_descending"))
      return ctx.fail(TT_UNSUPPORTED, "in-place layout is not pixel_*");
    if (p.kh != 1 || p.kw != 1 || p.g_.stride_h != 1 || p.g_.stride_w != 1 || p.g_.pad_top || p.g_.pad_left ||
        out.storage != tfmt::kArena || p.out.h != p.oh || p.out.w != p.ow)
      return ctx.fail(TT_UNSUPPORTED, "pixel layout needs a 1x1 stride-1 gradient of the same size");
    if ((st = expect_in_place_over(ctx, g, out)) != TT_OK) return st;
    return expect_scratch(ctx, static_cast<uint32_t>(p.c) * static_cast<uint32_t>(sizeof(GO)));
  }
  return TT_OK;
}

template <typename GI, typename GO>
tt_status eval_as(TrainContext& ctx) {
  ConvGradInput<GI> p;
  const tt_status st = parse<GI, GO>(ctx, &p);
  if (st != TT_OK) return st;
  GO* out = reinterpret_cast<GO*>(p.out.data);
  if (ctx.mode() == tfmt::kNormal) {
    if (plain_1x1(p)) {
      plain_1x1_pixels(p, out, 0, p.out.h * p.out.w);
      return TT_OK;
    }
    for (int32_t iy = 0; iy < p.out.h; ++iy)
      for (int32_t ix = 0; ix < p.out.w; ++ix) pixel(p, iy, ix, out + (static_cast<int64_t>(iy) * p.out.w + ix) * p.c);
    return TT_OK;
  }
  // In place (1x1, stride 1): pixel i's gradient is written over the storage the input
  // gradient shares, in the layout's order. One pixel through the scratch; four pixels
  // straight into the output where their output rows miss every input pixel not yet read
  // (those four included), which the addresses decide.
  GO* scratch = reinterpret_cast<GO*>(ctx.scratch());
  const bool up = ctx.layout_is("pixel_ascending");
  int32_t n = p.out.h * p.out.w;
  if (!up) {
    // Descending (an output pixel larger than an input one): the top pixels whose outputs lie
    // wholly beyond grad_y's bytes overwrite nothing unread, so they run first, as in normal mode
    // (in whole four-pixel blocks, when three or more make the weight table pay).
    const int64_t g_bytes = static_cast<int64_t>(n) * p.o * static_cast<int64_t>(sizeof(GI));
    int32_t first = n;
    while (first > 0 &&
           disjoint(out + static_cast<int64_t>(first - 1) * p.c, static_cast<int64_t>(n - first + 1) * p.c *
                    static_cast<int64_t>(sizeof(GO)), p.g, g_bytes))
      --first;
    first += (n - first) % 4;
    if (n - first >= 12) {
      plain_1x1_pixels(p, out, first, n);
      n = first;
    }
  }
  const int64_t in_px = static_cast<int64_t>(p.o) * static_cast<int64_t>(sizeof(GI));
  const int64_t out_px = static_cast<int64_t>(p.c) * static_cast<int64_t>(sizeof(GO));
  for (int32_t k = 0; k < n;) {
    if (k + 4 <= n) {
      const int32_t b = up ? k : n - 4 - k;  // the block's first pixel
      const GI* unread = up ? p.g + static_cast<int64_t>(b) * p.o : p.g;
      const int64_t unread_n = (up ? static_cast<int64_t>(n - b) : static_cast<int64_t>(b + 4)) * in_px;
      GO* dst = out + static_cast<int64_t>(b) * p.c;
      if (disjoint(dst, 4 * out_px, unread, unread_n)) {
        four_pixels_1x1(p, p.g + static_cast<int64_t>(b) * p.o, dst);
        k += 4;
        continue;
      }
    }
    // Four or three pixels whose inputs fit in the scratch (the next ones in the layout's order)
    // and whose outputs overwrite no other unread input: read from a copy (fewer cost more in the
    // four-pixel block than one at a time).
    int32_t cnt = n - k < 4 ? n - k : 4;
    const int64_t fit = in_px > 0 ? static_cast<int64_t>(ctx.scratch_bytes()) / in_px : 0;
    if (cnt > fit) cnt = static_cast<int32_t>(fit);
    for (; cnt >= 3; --cnt) {
      const int32_t b = up ? k : n - k - cnt;
      const GI* other = up ? p.g + static_cast<int64_t>(b + cnt) * p.o : p.g;
      const int64_t other_n = (up ? static_cast<int64_t>(n - b - cnt) : static_cast<int64_t>(b)) * in_px;
      if (disjoint(out + static_cast<int64_t>(b) * p.c, cnt * out_px, other, other_n)) break;
    }
    if (cnt >= 3) {
      const int32_t b = up ? k : n - k - cnt;
      memcpy(scratch, p.g + static_cast<int64_t>(b) * p.o, static_cast<size_t>(cnt * in_px));
      const GI* copy = reinterpret_cast<const GI*>(scratch);
      GO* dst = out + static_cast<int64_t>(b) * p.c;
      if (cnt == 4)
        four_pixels_1x1(p, copy, dst);
      else
        four_pixels_1x1<GI, GO, 3>(p, copy, dst);
      k += cnt;
      continue;
    }
    const int32_t i = up ? k : n - 1 - k;
    pixel(p, i / p.out.w, i % p.out.w, scratch);
    memcpy(out + static_cast<int64_t>(i) * p.c, scratch, static_cast<size_t>(p.c) * sizeof(GO));
    ++k;
  }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  return by_grad_dtypes(ctx, prepare_as<float, float>, prepare_as<float, Half>, prepare_as<Half, Half>);
}

tt_status eval(TrainContext& ctx) {
  return by_grad_dtypes(ctx, eval_as<float, float>, eval_as<float, Half>, eval_as<Half, Half>);
}

}  // namespace

extern const TrainKernel kTrainConv2DGradInput = {"CONV_2D_GRAD_INPUT", prepare, eval};

}  // namespace train
}  // namespace tt
