// CONV_2D_UPDATE(grad_y, x, weight, rng): the weight gradient of the selected
// input channels, consumed element by element by the QAS update (the gradient
// tensor never exists). Elements in OHWI row-major order, unselected channels
// skipped; one uniform per element (docs/training_graph.md):
//   G[o,ky,kx,c] = sum_{oy asc} sum_{ox asc} grad_y[oy,ox,o] * X[iy,ix,c],  X = f32(x - zp) * in_scale
//   w_q <- QAS(w_q, G)   (train_math.cc)
#include "weight_update.h"

namespace tt {
namespace train {
namespace {

struct ConvUpdate {
  WeightUpdate u;
  Spatial x;
  ConvGeometry geo;
  int32_t oh = 0, ow = 0, o = 0, kh = 0, kw = 0, c = 0;
};

tt_status parse(TrainContext& ctx, ConvUpdate* p) {
  tt_status st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc w = ctx.tensor(ctx.input(2));
  if ((st = expect_rank(ctx, w, 4, "weight")) != TT_OK) return st;
  if ((st = parse_weight_update(ctx, w.dims[0], &p->u)) != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), x = ctx.tensor(ctx.input(1));
  Spatial gs;
  if ((st = spatial_of(ctx, g, tfmt::kFloat32, "gradient", &gs)) != TT_OK) return st;
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

tt_status prepare(TrainContext& ctx) {
  ConvUpdate p;
  return parse(ctx, &p);
}

// G of element (row = (o, ky, kx), selected channels cs[0..k)), k = 1..4, side by
// side: k independent sums, each over the valid pixels in the specified order (oy,
// then ox ascending), the gradient value loaded once for the k channels and the
// input dequantized through a table (deq[q]: the same float32 value per int8 code).
// The valid columns are one range (computed once), so the pixel loop has no checks.
void element_grads(const ConvUpdate& p, const float* deq, int32_t o, int32_t ky, int32_t kx, const int32_t* cs,
                   int32_t k, float* grads) {
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  const int32_t ix0 = -p.geo.pad_left + kx * p.geo.dilation_w - p.x.left;  // ix of ox = 0
  int32_t ox_lo = 0, ox_hi = p.ow;
  while (ox_lo < p.ow && ox_lo * p.geo.stride_w + ix0 < 0) ++ox_lo;
  while (ox_hi > ox_lo && (ox_hi - 1) * p.geo.stride_w + ix0 >= p.x.w) --ox_hi;
  const int64_t x_step = static_cast<int64_t>(p.geo.stride_w) * p.c;
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  const int32_t c0 = cs[0], c1 = k > 1 ? cs[1] : 0, c2 = k > 2 ? cs[2] : 0, c3 = k > 3 ? cs[3] : 0;
  for (int32_t oy = 0; oy < p.oh && ox_lo < ox_hi; ++oy) {
    const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
    if (iy < 0 || iy >= p.x.h) continue;
    const float* g = p.u.g + (static_cast<int64_t>(oy) * p.ow + ox_lo) * p.o + o;
    const int8_t* px = x + (static_cast<int64_t>(iy) * p.x.w + ox_lo * p.geo.stride_w + ix0) * p.c;
    const int32_t n = ox_hi - ox_lo;
    if (k == 4) {
      for (int32_t i = 0; i < n; ++i, g += p.o, px += x_step) {
        const float gv = *g;
        a0 = a0 + gv * deq[px[c0]];
        a1 = a1 + gv * deq[px[c1]];
        a2 = a2 + gv * deq[px[c2]];
        a3 = a3 + gv * deq[px[c3]];
      }
    } else {
      for (int32_t i = 0; i < n; ++i, g += p.o, px += x_step) {
        const float gv = *g;
        a0 = a0 + gv * deq[px[c0]];
        if (k > 1) a1 = a1 + gv * deq[px[c1]];
        if (k > 2) a2 = a2 + gv * deq[px[c2]];
      }
    }
  }
  grads[0] = a0;
  grads[1] = a1;
  grads[2] = a2;
  grads[3] = a3;
}

tt_status eval(TrainContext& ctx) {
  ConvUpdate p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  float table[256];
  for (int32_t q = -128; q < 128; ++q) table[q + 128] = p.u.deq(static_cast<int8_t>(q));
  const float* deq = table + 128;  // indexed by the int8 code
  const int32_t nsel = static_cast<int32_t>(p.u.channels.length);
  for (int32_t o = 0; o < p.o; ++o) {
    const float ws = p.u.scale.at(o);
    for (int32_t ky = 0; ky < p.kh; ++ky)
      for (int32_t kx = 0; kx < p.kw; ++kx) {
        const int32_t row = (o * p.kh + ky) * p.kw + kx;
        for (int32_t j = 0; j < nsel; j += 4) {
          const int32_t k = nsel - j < 4 ? nsel - j : 4;
          int32_t cs[4];
          float grads[4];
          for (int32_t i = 0; i < k; ++i) cs[i] = p.u.channels.at(j + i);
          element_grads(p, deq, o, ky, kx, cs, k, grads);
          for (int32_t i = 0; i < k; ++i) {  // element order: the RNG draws stay in sequence
            int8_t* w = p.u.element(row, j + i);
            *w = qas_update_weight(*w, grads[i], p.u.lr, ws, p.u.rng);
          }
        }
      }
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainConv2DUpdate = {"CONV_2D_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
