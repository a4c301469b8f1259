// AVERAGE_POOL_2D (forward, int8) of the training graph: the sum over the
// clipped window divided by its tap count, rounded half away from zero
// (src/kernels/int8_common.h, as the inference kernel), then clamped.
#include "../../kernels/int8_common.h"
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
      const int32_t count = (y1 - y0) * (x1 - x0);
      if (count <= 0) return ctx.fail(TT_INTERNAL_ERROR, "empty pooling window");
      for (int32_t c = 0; c < p.c; ++c) {
        int32_t sum = 0;
        for (int32_t iy = y0; iy < y1; ++iy)
          for (int32_t ix = x0; ix < x1; ++ix) sum += p.x[(iy * p.w + ix) * p.c + c];
        p.y[(oy * p.ow + ox) * p.c + c] =
            static_cast<int8_t>(clamp_i32(rounded_average(sum, count), p.act_min, p.act_max));
      }
    }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainAveragePool2D = {"AVERAGE_POOL_2D", prepare, eval};

}  // namespace train
}  // namespace tt
