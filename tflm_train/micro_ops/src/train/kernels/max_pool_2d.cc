// MAX_POOL_2D (forward, int8) of the training graph: the maximum over the
// clipped window, clamped (as the inference kernel).
#include "pool_forward.h"

namespace tt {
namespace train {
namespace {

tt_status prepare(TrainContext& ctx) {
  PoolForward p;
  return parse_pool_forward(ctx, &p);
}

tt_status eval(TrainContext& ctx) {
  PoolForward p;
  const tt_status st = parse_pool_forward(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t oy = 0; oy < p.oh; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      int32_t y0, y1, x0, x1;
      p.window(oy, ox, &y0, &y1, &x0, &x1);
      for (int32_t c = 0; c < p.c; ++c) {
        int32_t best = -128;
        for (int32_t iy = y0; iy < y1; ++iy)
          for (int32_t ix = x0; ix < x1; ++ix) {
            const int32_t v = p.x[(iy * p.w + ix) * p.c + c];
            if (v > best) best = v;
          }
        p.y[(oy * p.ow + ox) * p.c + c] = static_cast<int8_t>(clamp_i32(best, p.act_min, p.act_max));
      }
    }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainMaxPool2D = {"MAX_POOL_2D", prepare, eval};

}  // namespace train
}  // namespace tt
