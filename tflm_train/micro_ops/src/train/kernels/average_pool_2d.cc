// AVERAGE_POOL_2D (forward, int8) of the training graph: the sum over the
// clipped window divided by its tap count, rounded half away from zero, then
// clamped (the compute core of the inference kernel, src/kernels/pool_core.h).
#include "pool_forward.h"

namespace tt {
namespace train {
namespace {

tt_status prepare(TrainContext& ctx) {
  PoolCore p;
  return parse_pool_forward(ctx, &p);
}

tt_status eval(TrainContext& ctx) {
  PoolCore p;
  const tt_status st = parse_pool_forward(ctx, &p);
  if (st != TT_OK) return st;
  if (!average_pool(p)) return ctx.fail(TT_INTERNAL_ERROR, "empty pooling window");
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainAveragePool2D = {"AVERAGE_POOL_2D", prepare, eval};

}  // namespace train
}  // namespace tt
