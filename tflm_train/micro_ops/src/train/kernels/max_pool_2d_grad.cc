// MAX_POOL_2D_GRAD(grad_y, x) -> grad_x: each output routes its gradient to the
// first (row-major in its clipped window) input holding the window's maximum;
// each input sums what it receives over (oy, ox) in row-major order (the running
// sum lives in the output: a float16 output rounds every partial sum).
#include "pool_grad.h"

namespace tt {
namespace train {
namespace {

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  PoolGrad<G> p;
  return parse_pool_grad(ctx, true, &p);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  PoolGrad<G> p;
  const tt_status st = parse_pool_grad(ctx, true, &p);
  if (st != TT_OK) return st;
  const int64_t n = static_cast<int64_t>(p.h) * p.w * p.c;
  for (int64_t i = 0; i < n; ++i) p.out[i] = narrow<G>(0.0f);
  for (int32_t oy = 0; oy < p.oh; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      int32_t y0, y1, x0, x1;
      p.window(oy, ox, &y0, &y1, &x0, &x1);
      if (y1 <= y0 || x1 <= x0) continue;
      for (int32_t c = 0; c < p.c; ++c) {
        int64_t best_at = -1;
        int32_t best = -129;
        for (int32_t iy = y0; iy < y1; ++iy)
          for (int32_t ix = x0; ix < x1; ++ix) {
            const int64_t at = (static_cast<int64_t>(iy) * p.w + ix) * p.c + c;
            if (p.x[at] > best) {  // strict: the first maximum wins
              best = p.x[at];
              best_at = at;
            }
          }
        const float routed = widen(p.g[(static_cast<int64_t>(oy) * p.ow + ox) * p.c + c]);
        p.out[best_at] = narrow<G>(widen(p.out[best_at]) + routed);
      }
    }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainMaxPool2DGrad = {"MAX_POOL_2D_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
