// FULLY_CONNECTED_GRAD_INPUT(grad_y [R, O], weight int8 [O, I]) -> grad_x [R, I]:
//   grad_x[r,i] = sum_{o asc} grad_y[r,o] * W[o,i],  W = f32(w_q) * weight_scale[o].
// Storage: grad_y GI, grad_x GO (float32 or float16; float32 -> float16 for the int8
// head): widened on load, one rounding per stored element.
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename GI, typename GO>
struct FcGradInput {
  const GI* g = nullptr;
  Int8Weights w;
  F32Table scale;
  GO* out = nullptr;
  int32_t rows = 0, o = 0, in = 0;
};

template <typename GI, typename GO>
tt_status parse(TrainContext& ctx, FcGradInput<GI, GO>* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, g, GradDType<GI>::value, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, GradDType<GO>::value, "output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, out, "output")) != TT_OK) return st;
  if ((st = int8_weights_of(ctx, w, "weight", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 2, "weight")) != TT_OK) return st;
  p->o = w.dims[0];
  p->in = w.dims[1];
  if (p->o < 1 || p->in < 1 || g.elements % p->o != 0 || out.elements != g.elements / p->o * p->in)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight ", p->o, "x", p->in, " does not fit the gradients");
  p->rows = static_cast<int32_t>(g.elements / p->o);
  if ((st = f32_table(ctx, "weight_scale", p->o, &p->scale)) != TT_OK) return st;
  p->g = grad_data<GI>(g);
  p->out = grad_data<GO>(out);
  return TT_OK;
}

template <typename GI, typename GO>
tt_status prepare_as(TrainContext& ctx) {
  FcGradInput<GI, GO> p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

template <typename GI, typename GO>
tt_status eval_as(TrainContext& ctx) {
  FcGradInput<GI, GO> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t r = 0; r < p.rows; ++r)
    for (int32_t i = 0; i < p.in; ++i) {
      float acc = 0.0f;
      for (int32_t o = 0; o < p.o; ++o) {
        const float w = static_cast<float>(p.w.at(o, i)) * p.scale.at(o);
        acc = acc + widen(p.g[static_cast<int64_t>(r) * p.o + o]) * w;
      }
      p.out[static_cast<int64_t>(r) * p.in + i] = narrow<GO>(acc);
    }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  return by_grad_dtypes(ctx, prepare_as<float, float>, prepare_as<float, Half>, prepare_as<Half, Half>);
}

tt_status eval(TrainContext& ctx) {
  return by_grad_dtypes(ctx, eval_as<float, float>, eval_as<float, Half>, eval_as<Half, Half>);
}

}  // namespace

extern const TrainKernel kTrainFullyConnectedGradInput = {"FULLY_CONNECTED_GRAD_INPUT", prepare, eval};

}  // namespace train
}  // namespace tt
