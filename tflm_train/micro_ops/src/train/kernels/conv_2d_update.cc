// CONV_2D_UPDATE(grad_y, x, weight, rng): the weight gradient of the selected
// input channels, consumed element by element by the QAS update (the gradient
// tensor never exists). Elements in OHWI row-major order, unselected channels
// skipped; one uniform per element (docs/training_graph.md):
//   G[o,ky,kx,c] = sum_{oy asc} sum_{ox asc} grad_y[oy,ox,o] * X[iy,ix,c],  X = f32(x - zp) * in_scale
//   w_q <- QAS(w_q, G)   (train_math.cc)
#include "float_mac.h"
#include "weight_update.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct ConvUpdate {
  WeightUpdate<G> u;
  Spatial x;
  ConvGeometry geo;
  int32_t oh = 0, ow = 0, o = 0, kh = 0, kw = 0, c = 0;
};

template <typename G>
tt_status parse(TrainContext& ctx, ConvUpdate<G>* p) {
  tt_status st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc w = ctx.tensor(ctx.input(2));
  if ((st = expect_rank(ctx, w, 4, "weight")) != TT_OK) return st;
  if ((st = parse_weight_update(ctx, w.dims[0], &p->u)) != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), x = ctx.tensor(ctx.input(1));
  Spatial gs;
  if ((st = spatial_of(ctx, g, GradDType<G>::value, "gradient", &gs)) != TT_OK) return st;
  if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &p->x)) != TT_OK) return st;
  if (p->x.channel) return ctx.fail(TT_UNSUPPORTED, "input in channel storage");
  p->o = w.dims[0];
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->c = w.dims[3];
  p->oh = gs.h;
  p->ow = gs.w;
  if (gs.c != p->o || p->x.c != p->c)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight does not fit the gradient and input depths");
  return conv_geometry_attrs(ctx, &p->geo);
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  ConvUpdate<G> p;
  return parse(ctx, &p);
}

// The output columns [ox_lo, ox_hi) whose tap kx lies inside the input (one range), and
// ix0, the input column of ox = 0.
template <typename G>
void valid_columns(const ConvUpdate<G>& p, int32_t kx, int32_t* ix0, int32_t* ox_lo, int32_t* ox_hi) {
  *ix0 = -p.geo.pad_left + kx * p.geo.dilation_w - p.x.left;
  int32_t lo = 0, hi = p.ow;
  while (lo < p.ow && lo * p.geo.stride_w + *ix0 < 0) ++lo;
  while (hi > lo && (hi - 1) * p.geo.stride_w + *ix0 >= p.x.w) --hi;
  *ox_lo = lo;
  *ox_hi = hi;
}

// G of elements (row = (o, ky, kx), selected channels cs[0..k)), k = 1..4, for output
// channels o and, when `pair`, o + 1 as well, side by side: independent sums, each over
// the valid pixels in the specified order (oy, then ox ascending), each input value
// dequantized once (through a table: deq[q] is the same float32 value per int8 code)
// for the up to eight sums. grads[i] for o, grads[4 + i] for o + 1. The valid columns
// are one range (computed once), so the pixel loop has no checks.
template <typename G>
void element_grads(const ConvUpdate<G>& p, const float* deq, int32_t o, bool pair, int32_t ky, int32_t kx,
                   const int32_t* cs, int32_t k, float* grads) {
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  int32_t ix0, ox_lo, ox_hi;
  valid_columns(p, kx, &ix0, &ox_lo, &ox_hi);
  const int64_t x_step = static_cast<int64_t>(p.geo.stride_w) * p.c;
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, b0 = 0.0f, b1 = 0.0f, b2 = 0.0f, b3 = 0.0f;
  const int32_t c0 = cs[0], c1 = k > 1 ? cs[1] : 0, c2 = k > 2 ? cs[2] : 0, c3 = k > 3 ? cs[3] : 0;
  for (int32_t oy = 0; oy < p.oh && ox_lo < ox_hi; ++oy) {
    const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
    if (iy < 0 || iy >= p.x.h) continue;
    const G* g = p.u.g + (static_cast<int64_t>(oy) * p.ow + ox_lo) * p.o + o;
    const int8_t* px = x + (static_cast<int64_t>(iy) * p.x.w + ox_lo * p.geo.stride_w + ix0) * p.c;
    const int32_t n = ox_hi - ox_lo;
    if (k == 4 && pair) {
      for (int32_t i = 0; i < n; ++i, g += p.o, px += x_step) {
        const float gv = widen(g[0]), gw = widen(g[1]);
        const float x0 = deq[px[c0]], x1 = deq[px[c1]], x2 = deq[px[c2]], x3 = deq[px[c3]];
        a0 = mul_add(a0, gv, x0);
        a1 = mul_add(a1, gv, x1);
        a2 = mul_add(a2, gv, x2);
        a3 = mul_add(a3, gv, x3);
        b0 = mul_add(b0, gw, x0);
        b1 = mul_add(b1, gw, x1);
        b2 = mul_add(b2, gw, x2);
        b3 = mul_add(b3, gw, x3);
      }
    } else if (k == 4) {
      for (int32_t i = 0; i < n; ++i, g += p.o, px += x_step) {
        const float gv = widen(*g);
        a0 = mul_add(a0, gv, deq[px[c0]]);
        a1 = mul_add(a1, gv, deq[px[c1]]);
        a2 = mul_add(a2, gv, deq[px[c2]]);
        a3 = mul_add(a3, gv, deq[px[c3]]);
      }
    } else {
      for (int32_t i = 0; i < n; ++i, g += p.o, px += x_step) {
        const float gv = widen(*g), gw = pair ? widen(g[1]) : 0.0f;
        const float x0 = deq[px[c0]];
        a0 = mul_add(a0, gv, x0);
        if (pair) b0 = mul_add(b0, gw, x0);
        if (k > 1) {
          const float x1 = deq[px[c1]];
          a1 = mul_add(a1, gv, x1);
          if (pair) b1 = mul_add(b1, gw, x1);
        }
        if (k > 2) {
          const float x2 = deq[px[c2]];
          a2 = mul_add(a2, gv, x2);
          if (pair) b2 = mul_add(b2, gw, x2);
        }
      }
    }
  }
  grads[0] = a0;
  grads[1] = a1;
  grads[2] = a2;
  grads[3] = a3;
  grads[4] = b0;
  grads[5] = b1;
  grads[6] = b2;
  grads[7] = b3;
}

// element_grads for four selected channels and four output channels o .. o + 3:
// grads[4 * r + i] for output channel o + r and channel cs[i], sixteen sums side by side.
template <typename G>
void element_grads4(const ConvUpdate<G>& p, const float* deq, int32_t o, int32_t ky, int32_t kx, const int32_t* cs,
                    float* grads) {
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  int32_t ix0, ox_lo, ox_hi;
  valid_columns(p, kx, &ix0, &ox_lo, &ox_hi);
  const int64_t x_step = static_cast<int64_t>(p.geo.stride_w) * p.c;
  const int32_t c0 = cs[0], c1 = cs[1], c2 = cs[2], c3 = cs[3];
  Block4x4 b = {};
  for (int32_t oy = 0; oy < p.oh && ox_lo < ox_hi; ++oy) {
    const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
    if (iy < 0 || iy >= p.x.h) continue;
    const G* g = p.u.g + (static_cast<int64_t>(oy) * p.ow + ox_lo) * p.o + o;
    const int8_t* px = x + (static_cast<int64_t>(iy) * p.x.w + ox_lo * p.geo.stride_w + ix0) * p.c;
    for (int32_t i = ox_lo; i < ox_hi; ++i, g += p.o, px += x_step)
      b.mac(widen(g[0]), widen(g[1]), widen(g[2]), widen(g[3]), deq[px[c0]], deq[px[c1]], deq[px[c2]], deq[px[c3]]);
  }
  b.store(grads, 4);
}

// element_grads4 of a 1x1 stride-1 unpadded weight over the whole stored input: output pixel i
// reads input pixel i, so the pixels run as one sequence (oy, then ox ascending) without rows.
template <typename G>
void element_grads4_1x1(const ConvUpdate<G>& p, const float* deq, int32_t o, const int32_t* cs, float* grads) {
  const int8_t* px = reinterpret_cast<const int8_t*>(p.x.data);
  const G* g = p.u.g + o;
  const int32_t c0 = cs[0], c1 = cs[1], c2 = cs[2], c3 = cs[3], n = p.oh * p.ow;
  Block4x4 b = {};
  for (int32_t i = 0; i < n; ++i, g += p.o, px += p.c)
    b.mac(widen(g[0]), widen(g[1]), widen(g[2]), widen(g[3]), deq[px[c0]], deq[px[c1]], deq[px[c2]], deq[px[c3]]);
  b.store(grads, 4);
}

template <typename G>
bool plain_1x1(const ConvUpdate<G>& p) {
  return p.kh == 1 && p.kw == 1 && p.geo.stride_h == 1 && p.geo.stride_w == 1 && p.geo.pad_top == 0 &&
         p.geo.pad_left == 0 && p.x.top == 0 && p.x.left == 0 && p.x.h == p.oh && p.x.w == p.ow;
}

// Gradients of output channels o + 1 .. o + 3 kept while o's elements are updated (rows of
// kh * kw * nsel elements): as many channels per pass as their rows fit (1.5 KB of stack).
constexpr int32_t kNextFloats = 384;

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  ConvUpdate<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  float table[256];
  for (int32_t q = -128; q < 128; ++q) table[q + 128] = p.u.deq(static_cast<int8_t>(q));
  const float* deq = table + 128;  // indexed by the int8 code
  const int32_t nsel = static_cast<int32_t>(p.u.channels.length);
  const int32_t row_elems = p.kh * p.kw * nsel;
  float next[kNextFloats];  // o + r's gradients at next + (r - 1) * row_elems, in its element order
  uint32_t rng = *p.u.rng;  // in a register while the weights are stored (int8 stores may alias it)
  const bool one_by_one = plain_1x1(p);
  const int32_t extra = row_elems > 0 ? kNextFloats / row_elems : 0;  // rows kept besides o's
  for (int32_t o = 0; o < p.o; ++o) {
    // Up to four output channels per pass over the input; the updates still run element by
    // element in order (o's row, then o + 1's, ... from `next`), so the RNG draws stay in sequence.
    int32_t nout = 1 + (extra < 3 ? extra : 3);
    if (nout > p.o - o) nout = p.o - o;
    const float ws = p.u.scale.at(o);
    for (int32_t ky = 0; ky < p.kh; ++ky)
      for (int32_t kx = 0; kx < p.kw; ++kx) {
        const int32_t row = (o * p.kh + ky) * p.kw + kx;
        for (int32_t j = 0; j < nsel; j += 4) {
          const int32_t k = nsel - j < 4 ? nsel - j : 4;
          int32_t cs[4];
          float grads[16];  // output channel o + r, channel cs[i] at 4 * r + i
          for (int32_t i = 0; i < k; ++i) cs[i] = p.u.channels.at(j + i);
          if (nout == 4 && k == 4) {
            if (one_by_one)
              element_grads4_1x1(p, deq, o, cs, grads);
            else
              element_grads4(p, deq, o, ky, kx, cs, grads);
          } else {
            element_grads(p, deq, o, nout >= 2, ky, kx, cs, k, grads);
            if (nout >= 3) element_grads(p, deq, o + 2, nout == 4, ky, kx, cs, k, grads + 8);
          }
          for (int32_t i = 0; i < k; ++i) {  // element order: the RNG draws stay in sequence
            int8_t* w = p.u.element(row, j + i);
            *w = qas_update_weight(*w, grads[i], p.u.lr, ws, &rng);
          }
          float* kept = next + (ky * p.kw + kx) * nsel + j;
          for (int32_t r = 1; r < nout; ++r)
            for (int32_t i = 0; i < k; ++i) kept[(r - 1) * row_elems + i] = grads[4 * r + i];
        }
      }
    for (int32_t r = 1; r < nout; ++r) {
      const int32_t oc = o + r;
      const float wsr = p.u.scale.at(oc);
      for (int32_t t = 0; t < p.kh * p.kw; ++t) {
        const int32_t row = oc * p.kh * p.kw + t;
        for (int32_t j = 0; j < nsel; ++j) {
          int8_t* w = p.u.element(row, j);
          *w = qas_update_weight(*w, next[(r - 1) * row_elems + t * nsel + j], p.u.lr, wsr, &rng);
        }
      }
    }
    o += nout - 1;
  }
  *p.u.rng = rng;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainConv2DUpdate = {"CONV_2D_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
