// AVERAGE_POOL_2D_GRAD(grad_y) -> grad_x: output (oy, ox) spreads
// q = grad_y / f32(cnt) (cnt: its clipped window's size) over its window; each
// input sums its contributions over (oy, ox) in row-major order (a scatter in
// that order from +0.0, which is the specified sequential sum; a float16 output
// stores, so rounds, every partial sum: docs/training_graph.md, "Gradient storage").
#include "pool_grad.h"

namespace tt {
namespace train {
namespace {

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  PoolGrad<G> p;
  return parse_pool_grad(ctx, false, &p);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  PoolGrad<G> p;
  const tt_status st = parse_pool_grad(ctx, false, &p);
  if (st != TT_OK) return st;
  const int64_t n = static_cast<int64_t>(p.h) * p.w * p.c;
  for (int64_t i = 0; i < n; ++i) p.out[i] = narrow<G>(0.0f);
  for (int32_t oy = 0; oy < p.oh; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      int32_t y0, y1, x0, x1;
      p.window(oy, ox, &y0, &y1, &x0, &x1);
      int32_t cnt = (y1 - y0) * (x1 - x0);
      if (cnt < 1) cnt = 1;
      for (int32_t c = 0; c < p.c; ++c) {
        const float q = widen(p.g[(static_cast<int64_t>(oy) * p.ow + ox) * p.c + c]) / static_cast<float>(cnt);
        for (int32_t iy = y0; iy < y1; ++iy)
          for (int32_t ix = x0; ix < x1; ++ix) {
            G* o = p.out + (static_cast<int64_t>(iy) * p.w + ix) * p.c + c;
            *o = narrow<G>(widen(*o) + q);  // the running sum lives in the output
          }
      }
    }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainAveragePool2DGrad = {"AVERAGE_POOL_2D_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
