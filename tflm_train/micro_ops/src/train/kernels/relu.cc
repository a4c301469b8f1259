// RELU and RELU6 (forward, int8) of the training graph, computed as TFLite
// Micro computes them (see src/kernels/relu.cc and relu6.cc):
//   RELU:  y = clamp(zp_out + MBQM(x - zp_in, M), max(-128, zp_out), 127),
//          M = QuantizeMultiplier(double(s_in / s_out)) (quotient in float32);
//   RELU6: y = clamp(x, zp_in, zp_in + round(6 / s_in)) (no requantization).
// One file for both: they share everything but the per-element formula.
// Elementwise, so either may run in place over its input (layout "elementwise").
#include "../../schema.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct Relu {
  const int8_t* x = nullptr;
  int8_t* y = nullptr;
  int64_t n = 0;
  bool requantize = false;  // RELU; RELU6 only clamps
  int32_t zp_in = 0, zp_out = 0, multiplier = 0, shift = 0, lo = 0, hi = 0;
};

tt_status parse(TrainContext& ctx, bool relu6, Relu* p) {
  TensorDesc x, y;
  tt_status st = expect_unary_int8(ctx, &x, &y);
  if (st != TT_OK) return st;
  float s_in, s_out;
  if ((st = activation_quant(ctx, x, "input", &s_in, &p->zp_in)) != TT_OK) return st;
  if (relu6) {
    activation_range(schema::kActRelu6, s_in, p->zp_in, -128, 127, &p->lo, &p->hi);
  } else {
    if ((st = activation_quant(ctx, y, "output", &s_out, &p->zp_out)) != TT_OK) return st;
    const float ratio = s_in / s_out;
    if (!(ratio > 0.0f) || !isfinite(ratio)) return ctx.fail(TT_UNSUPPORTED, "input / output scale is not positive");
    int shift;
    quantize_multiplier(static_cast<double>(ratio), &p->multiplier, &shift);
    p->shift = shift;
    p->requantize = true;
    activation_range(schema::kActRelu, s_out, p->zp_out, -128, 127, &p->lo, &p->hi);
  }
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->y = i8_data(y);
  p->n = y.elements;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx, bool relu6) {
  Relu p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, relu6, &p);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0)), y = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(x)) != TT_OK || (st = ctx.writes(y)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, x, y);
}

tt_status eval(TrainContext& ctx, bool relu6) {
  Relu p;
  const tt_status st = parse(ctx, relu6, &p);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < p.n; ++i) {
    const int32_t v = p.requantize
                          ? p.zp_out + multiply_by_quantized_multiplier(p.x[i] - p.zp_in, p.multiplier, p.shift)
                          : p.x[i];
    p.y[i] = static_cast<int8_t>(clamp_i32(v, p.lo, p.hi));
  }
  return TT_OK;
}

tt_status prepare_relu(TrainContext& ctx) { return prepare(ctx, false); }
tt_status eval_relu(TrainContext& ctx) { return eval(ctx, false); }
tt_status prepare_relu6(TrainContext& ctx) { return prepare(ctx, true); }
tt_status eval_relu6(TrainContext& ctx) { return eval(ctx, true); }

}  // namespace

extern const TrainKernel kTrainRelu = {"RELU", prepare_relu, eval_relu};
extern const TrainKernel kTrainRelu6 = {"RELU6", prepare_relu6, eval_relu6};

}  // namespace train
}  // namespace tt
