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

// G of element (row = (o, ky, kx), selected channels j0..j0+K) for K = 1..4 side
// by side: K independent sums, each over the valid pixels in the specified order
// (oy, then ox ascending), the gradient value loaded once for the K channels and
// the input dequantized through a table (the same float32 value per int8 code).
template <int K>
void element_grads(const ConvUpdate& p, const float* deq, int32_t o, int32_t ky, int32_t kx, const int32_t* cs,
                   float* grads) {
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  float acc[K];
  for (int32_t k = 0; k < K; ++k) acc[k] = 0.0f;
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
    if (iy < 0 || iy >= p.x.h) continue;
    const float* g = p.u.g + static_cast<int64_t>(oy) * p.ow * p.o + o;
    const int8_t* xrow = x + static_cast<int64_t>(iy) * p.x.w * p.c;
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      const int32_t ix = ox * p.geo.stride_w - p.geo.pad_left + kx * p.geo.dilation_w - p.x.left;
      if (ix < 0 || ix >= p.x.w) continue;
      const float gv = g[static_cast<int64_t>(ox) * p.o];
      const int8_t* px = xrow + static_cast<int64_t>(ix) * p.c;
      for (int32_t k = 0; k < K; ++k) acc[k] = acc[k] + gv * deq[px[cs[k]] + 128];
    }
  }
  for (int32_t k = 0; k < K; ++k) grads[k] = acc[k];
}

tt_status eval(TrainContext& ctx) {
  ConvUpdate p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  float deq[256];
  for (int32_t q = -128; q < 128; ++q) deq[q + 128] = p.u.deq(static_cast<int8_t>(q));
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
          if (k == 4) element_grads<4>(p, deq, o, ky, kx, cs, grads);
          else if (k == 3) element_grads<3>(p, deq, o, ky, kx, cs, grads);
          else if (k == 2) element_grads<2>(p, deq, o, ky, kx, cs, grads);
          else element_grads<1>(p, deq, o, ky, kx, cs, grads);
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
