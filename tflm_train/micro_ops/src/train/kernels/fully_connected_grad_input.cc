// FULLY_CONNECTED_GRAD_INPUT(grad_y [R, O], weight int8 [O, I]) -> grad_x [R, I]:
//   grad_x[r,i] = sum_{o asc} grad_y[r,o] * W[o,i],  W = f32(w_q) * weight_scale[o].
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct FcGradInput {
  const float* g = nullptr;
  Int8Weights w;
  F32Table scale;
  float* out = nullptr;
  int32_t rows = 0, o = 0, in = 0;
};

tt_status parse(TrainContext& ctx, FcGradInput* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, g, tfmt::kFloat32, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, tfmt::kFloat32, "output")) != TT_OK) return st;
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
  p->g = f32_data(g);
  p->out = f32_data(out);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  FcGradInput p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  FcGradInput p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t r = 0; r < p.rows; ++r)
    for (int32_t i = 0; i < p.in; ++i) {
      float acc = 0.0f;
      for (int32_t o = 0; o < p.o; ++o) {
        const float w = static_cast<float>(p.w.at(o, i)) * p.scale.at(o);
        acc = acc + p.g[static_cast<int64_t>(r) * p.o + o] * w;
      }
      p.out[static_cast<int64_t>(r) * p.in + i] = acc;
    }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainFullyConnectedGradInput = {"FULLY_CONNECTED_GRAD_INPUT", prepare, eval};

}  // namespace train
}  // namespace tt
