// DEPTHWISE_CONV_2D_UPDATE(grad_y, x, weight, rng): fused weight gradient + QAS
// update of the selected channels co of a [1, KH, KW, C*M] weight, elements in
// row-major order (ky, kx, co), one uniform each:
//   G[0,ky,kx,co] = sum_{oy asc} sum_{ox asc} grad_y[oy,ox,co] * X[iy,ix,co / M]
#include "weight_update.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct DwUpdate {
  WeightUpdate<G> u;
  Spatial x;
  ConvGeometry geo;
  int32_t oh = 0, ow = 0, co = 0, kh = 0, kw = 0, m = 1;
};

template <typename G>
tt_status parse(TrainContext& ctx, DwUpdate<G>* p) {
  tt_status st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc w = ctx.tensor(ctx.input(2));
  if ((st = expect_rank(ctx, w, 4, "weight")) != TT_OK) return st;
  if ((st = parse_weight_update(ctx, w.dims[3], &p->u)) != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), x = ctx.tensor(ctx.input(1));
  Spatial gs;
  if ((st = spatial_of(ctx, g, GradDType<G>::value, "gradient", &gs)) != TT_OK) return st;
  if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &p->x)) != TT_OK) return st;
  if (p->x.channel) return ctx.fail(TT_UNSUPPORTED, "input in channel storage");
  p->kh = w.dims[1];
  p->kw = w.dims[2];
  p->co = w.dims[3];
  p->oh = gs.h;
  p->ow = gs.w;
  if (w.dims[0] != 1 || gs.c != p->co || p->x.c < 1 || p->co % p->x.c != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight does not fit the gradient and input depths");
  p->m = p->co / p->x.c;
  int32_t m_attr;
  if ((st = ctx.attr_int("depth_multiplier", &m_attr)) != TT_OK) return st;
  if (m_attr != p->m) return ctx.fail(TT_SHAPE_MISMATCH, "depth_multiplier ", m_attr, ", the weight gives ", p->m);
  return conv_geometry_attrs(ctx, &p->geo);
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  DwUpdate<G> p;
  return parse(ctx, &p);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  DwUpdate<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const int8_t* x = reinterpret_cast<const int8_t*>(p.x.data);
  const int32_t nsel = static_cast<int32_t>(p.u.channels.length);
  for (int32_t ky = 0; ky < p.kh; ++ky)
    for (int32_t kx = 0; kx < p.kw; ++kx) {
      const int32_t row = ky * p.kw + kx;
      for (int32_t j = 0; j < nsel; ++j) {
        const int32_t co = p.u.channels.at(j), ci = co / p.m;
        float grad = 0.0f;
        for (int32_t oy = 0; oy < p.oh; ++oy) {
          const int32_t iy = oy * p.geo.stride_h - p.geo.pad_top + ky * p.geo.dilation_h - p.x.top;
          if (iy < 0 || iy >= p.x.h) continue;
          for (int32_t ox = 0; ox < p.ow; ++ox) {
            const int32_t ix = ox * p.geo.stride_w - p.geo.pad_left + kx * p.geo.dilation_w - p.x.left;
            if (ix < 0 || ix >= p.x.w) continue;
            const float gv = widen(p.u.g[(static_cast<int64_t>(oy) * p.ow + ox) * p.co + co]);
            grad = grad + gv * p.u.deq(x[(static_cast<int64_t>(iy) * p.x.w + ix) * p.x.c + ci]);
          }
        }
        int8_t* w = p.u.element(row, j);
        *w = qas_update_weight(*w, grad, p.u.lr, p.u.scale.at(co), p.u.rng);
      }
    }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainDepthwiseConv2DUpdate = {"DEPTHWISE_CONV_2D_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
