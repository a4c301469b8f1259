// MAX_POOL_2D (forward, int8) of the training graph: the maximum over the
// clipped window, clamped (the compute core of the inference kernel,
// src/kernels/pool_core.h).
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
  max_pool(p);
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainMaxPool2D = {"MAX_POOL_2D", prepare, eval};

}  // namespace train
}  // namespace tt
