// GRAD_SCALE(grad_y) -> grad_y * factor (one float32 product stored in the gradients'
// storage type, elementwise; may run in place
// over its input): the constant real slope of an op that passes int8 values on
// into another quantization (a RELU6 whose output scale differs from its
// input's: TFLite Micro copies the clamped input bytes, slope s_out / s_in).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct GradScale {
  const G* g = nullptr;
  G* out = nullptr;
  int64_t n = 0;
  float factor = 0.0f;
};

template <typename G>
tt_status parse(TrainContext& ctx, GradScale<G>* p) {
  tt_status st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, g, GradDType<G>::value, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, GradDType<G>::value, "output")) != TT_OK) return st;
  if (g.elements != out.elements) return ctx.fail(TT_SHAPE_MISMATCH, "gradient and output sizes differ");
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, out, "output")) != TT_OK) return st;
  if ((st = ctx.attr_float("factor", &p->factor)) != TT_OK) return st;
  if (!isfinite(p->factor)) return ctx.fail(TT_MALFORMED_MODEL, "factor is not finite");
  p->g = grad_data<G>(g);
  p->out = grad_data<G>(out);
  p->n = out.elements;
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  GradScale<G> p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.writes(out)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, g, out);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  GradScale<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < p.n; ++i) p.out[i] = narrow<G>(widen(p.g[i]) * p.factor);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainGradScale = {"GRAD_SCALE", prepare, eval};

}  // namespace train
}  // namespace tt
