// LEAKY_RELU (forward, int8) of the training graph, as TFLite Micro computes it
// (src/kernels/leaky_relu.cc): v = x - zp_in, requantized with s_in / s_out
// where v >= 0 and with s_in * alpha / s_out elsewhere (float32 quotients),
// plus zp_out, clamped to int8. Attr: alpha (>= 0). Elementwise: may run in
// place over its input (layout "elementwise").
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct LeakyRelu {
  const int8_t* x = nullptr;
  int8_t* y = nullptr;
  int64_t n = 0;
  int32_t zp_in = 0, zp_out = 0;
  int32_t m_identity = 0, m_alpha = 0;
  int shift_identity = 0, shift_alpha = 0;
};

tt_status parse(TrainContext& ctx, LeakyRelu* p) {
  TensorDesc x, y;
  tt_status st = expect_unary_int8(ctx, &x, &y);
  if (st != TT_OK) return st;
  float s_in, s_out, alpha;
  if ((st = activation_quant(ctx, x, "input", &s_in, &p->zp_in)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &s_out, &p->zp_out)) != TT_OK) return st;
  if ((st = ctx.attr_float("alpha", &alpha)) != TT_OK) return st;
  const float identity = s_in / s_out;
  if (!(alpha >= 0.0f) || !isfinite(alpha) || !(identity > 0.0f) || !isfinite(identity))
    return ctx.fail(TT_UNSUPPORTED, "alpha must be >= 0 and the scales positive");
  quantize_multiplier(static_cast<double>(identity), &p->m_identity, &p->shift_identity);
  quantize_multiplier(static_cast<double>(s_in * alpha / s_out), &p->m_alpha, &p->shift_alpha);
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->y = i8_data(y);
  p->n = y.elements;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  LeakyRelu p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0)), y = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(x)) != TT_OK || (st = ctx.writes(y)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, x, y);
}

tt_status eval(TrainContext& ctx) {
  LeakyRelu p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < p.n; ++i) {
    const int32_t v = p.x[i] - p.zp_in;
    const int32_t scaled = v >= 0 ? multiply_by_quantized_multiplier(v, p.m_identity, p.shift_identity)
                                  : multiply_by_quantized_multiplier(v, p.m_alpha, p.shift_alpha);
    p.y[i] = static_cast<int8_t>(clamp_i32(p.zp_out + scaled, -128, 127));
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainLeakyRelu = {"LEAKY_RELU", prepare, eval};

}  // namespace train
}  // namespace tt
