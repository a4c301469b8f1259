// FC_FLOAT_UPDATE(grad_logits, features, weight f32, bias f32): plain SGD,
//   W[j,i] <- W[j,i] - lr * (g_j * f_i),  b_j <- b_j - lr * g_j
// (product, then lr *, then the subtraction, each rounded to float32).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct FloatHeadUpdate {
  const float* g = nullptr;
  const int8_t* f = nullptr;
  float* w = nullptr;
  float* b = nullptr;
  int32_t n = 0, c = 0, zp = 0;
  float scale = 0.0f, lr = 0.0f;
};

tt_status parse(TrainContext& ctx, FloatHeadUpdate* p) {
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), f = ctx.tensor(ctx.input(1)), w = ctx.tensor(ctx.input(2)),
                   b = ctx.tensor(ctx.input(3));
  if (ctx.output(0) != w.index || ctx.output(1) != b.index)
    return ctx.fail(TT_MALFORMED_MODEL, "the head must be updated in place");
  if ((st = expect_dtype(ctx, g, tfmt::kFloat32, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, f, tfmt::kInt8, "features")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, w, tfmt::kFloat32, "weight")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, b, tfmt::kFloat32, "bias")) != TT_OK) return st;
  for (const TensorDesc* t : {&g, &f})
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  for (const TensorDesc* t : {&w, &b})
    if (t->storage != tfmt::kPersistent || t->kind != tfmt::kParameter || t->split_channels.length)
      return ctx.fail(TT_MALFORMED_MODEL, name_of(ctx, *t), " is not a persistent parameter");
  if (w.rank != 2 || g.elements != w.dims[0] || b.elements != w.dims[0] || f.elements != w.dims[1])
    return ctx.fail(TT_SHAPE_MISMATCH, "weight [N, C], bias [N], gradient [N] and C features do not fit");
  p->n = w.dims[0];
  p->c = w.dims[1];
  if ((st = ctx.attr_float("in_scale", &p->scale)) != TT_OK) return st;
  if ((st = int8_zero_point_attr(ctx, "in_zero_point", &p->zp)) != TT_OK) return st;
  if ((st = ctx.attr_float("lr", &p->lr)) != TT_OK) return st;
  p->g = f32_data(g);
  p->f = reinterpret_cast<const int8_t*>(f.data);
  p->w = f32_data(w);
  p->b = f32_data(b);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  FloatHeadUpdate p;
  tt_status st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  for (int32_t i = 2; st == TT_OK && i < 4; ++i) st = ctx.writes(ctx.tensor(ctx.input(i)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  FloatHeadUpdate p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t j = 0; j < p.n; ++j) {
    float* w = p.w + static_cast<int64_t>(j) * p.c;
    for (int32_t i = 0; i < p.c; ++i) {
      const float f = static_cast<float>(p.f[i] - p.zp) * p.scale;
      const float grad = p.g[j] * f;
      w[i] = w[i] - p.lr * grad;
    }
    p.b[j] = p.b[j] - p.lr * p.g[j];
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainFcFloatUpdate = {"FC_FLOAT_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
