// The QAS update arithmetic (docs/training_graph.md, "Update ops"): float32,
// every operation rounded as written (the library is built with -ffp-contract=off).
#include <math.h>

#include "train_runtime.h"

namespace tt {
namespace train {

namespace {

// floorf for a finite float without the library call: below 2^23 in magnitude the
// truncation through int32 is exact and at most one above; from 2^23 every float is an
// integer. Only floor(-0.0f) differs (+0.0f), which the stochastic rounding below cannot
// tell apart (v - f and f + 0.0f or 1.0f give the same result).
inline float floor_finite(float v) {
  if (!(fabsf(v) < 8388608.0f)) return v;
  const float t = static_cast<float>(static_cast<int32_t>(v));
  return t > v ? t - 1.0f : t;
}

}  // namespace

int8_t qas_update_weight(int8_t w, float grad, float lr, float weight_scale, uint32_t* rng) {
  const float step = (lr * grad) / weight_scale;
  const float v = static_cast<float>(w) - step;
  const float u = next_uniform(rng);  // drawn for every updated element, finite or not
  if (!isfinite(v)) return w;
  const float f = floor_finite(v);
  float r = f + ((u < v - f) ? 1.0f : 0.0f);  // stochastic rounding floor(v + u)
  if (r < -127.0f) r = -127.0f;
  if (r > 127.0f) r = 127.0f;
  return static_cast<int8_t>(r);
}

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
