// The QAS update arithmetic (docs/training_graph.md, "Update ops"): float32,
// every operation rounded as written (the library is built with -ffp-contract=off).
#include <math.h>

#include "train_runtime.h"

namespace tt {
namespace train {

int32_t qas_update_bias(int32_t b, float grad, float lr, float bias_scale) {
  const float step = (lr * grad) / bias_scale;
  if (!isfinite(step)) return b;
  int64_t delta = lround_saturated(step);
  if (delta > 2147483647) delta = 2147483647;
  int64_t v = static_cast<int64_t>(b) - delta;
  if (v < -2147483647 - 1) v = -2147483647 - 1;
  if (v > 2147483647) v = 2147483647;
  return static_cast<int32_t>(v);
}

}  // namespace train
}  // namespace tt
