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

tt_status eval(TrainContext& ctx) {
  ConvUpdate p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  const int32_t nsel = static_cast<int32_t>(p.u.channels.length);
  for (int32_t o = 0; o < p.o; ++o) {
    const float ws = p.u.scale.at(o);
    for (int32_t ky = 0; ky < p.kh; ++ky)
      for (int32_t kx = 0; kx < p.kw; ++kx) {
        const int32_t row = (o * p.kh + ky) * p.kw + kx;
        for (int32_t j = 0; j < nsel; ++j) {
          const int32_t c = p.u.channels.at(j);
          float grad = 0.0f;
          for (int32_t oy = 0; oy < p.oh; ++oy) {
            const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
            if (iy < 0 || iy >= p.x.h) continue;
            for (int32_t ox = 0; ox < p.ow; ++ox) {
              const int32_t ix = ox * p.geo.stride_w - p.geo.pad_left + kx * p.geo.dilation_w - p.x.left;
              if (ix < 0 || ix >= p.x.w) continue;
              const float gv = p.u.g[(static_cast<int64_t>(oy) * p.ow + ox) * p.o + o];
              grad = grad + gv * p.u.deq(x[(static_cast<int64_t>(iy) * p.x.w + ix) * p.c + c]);
            }
          }
          int8_t* w = p.u.element(row, j);
          *w = qas_update_weight(*w, grad, p.u.lr, ws, p.u.rng);
        }
      }
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainConv2DUpdate = {"CONV_2D_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
