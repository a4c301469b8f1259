// LEAKY_RELU_GRAD(grad_y, x) -> grad_x: the real slope of LEAKY_RELU by the
// sign of its saved int8 input, grad_x = x >= zp_in ? grad_y : grad_y * alpha
// (one float32 product; grad_y has already passed the output's clamp).
// Elementwise over grad_y: may run in place over it (layout "elementwise").
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct LeakyReluGrad {
  const G* g = nullptr;
  const int8_t* x = nullptr;
  G* out = nullptr;
  int64_t n = 0;
  int32_t zp_in = 0;
  float alpha = 0.0f;
};

template <typename G>
tt_status parse(TrainContext& ctx, LeakyReluGrad<G>* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), x = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, g, GradDType<G>::value, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, x, tfmt::kInt8, "input")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, GradDType<G>::value, "output")) != TT_OK) return st;
  if (g.elements != x.elements || out.elements != g.elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "gradient, input and output sizes differ");
  for (const TensorDesc* t : {&g, &x, &out})
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  if ((st = ctx.attr_float("alpha", &p->alpha)) != TT_OK) return st;
  if ((st = int8_zero_point_attr(ctx, "input_zero_point", &p->zp_in)) != TT_OK) return st;
  if (!isfinite(p->alpha)) return ctx.fail(TT_MALFORMED_MODEL, "alpha is not finite");
  p->g = grad_data<G>(g);
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->out = grad_data<G>(out);
  p->n = out.elements;
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  LeakyReluGrad<G> p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.reads(ctx.tensor(ctx.input(1)))) != TT_OK) return st;
  if ((st = ctx.writes(out)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, g, out);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  LeakyReluGrad<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < p.n; ++i) {
    const float g = widen(p.g[i]);
    p.out[i] = narrow<G>(p.x[i] >= p.zp_in ? g : g * p.alpha);
  }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainLeakyReluGrad = {"LEAKY_RELU_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
