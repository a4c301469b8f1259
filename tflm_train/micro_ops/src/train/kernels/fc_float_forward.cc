// FC_FLOAT_FORWARD: the float32 head on the dequantized features,
//   f_i = f32(q_i - zp) * in_scale,  logits_j = (sum_{i asc} W[j,i] * f_i) + b_j
// (docs/training_graph.md; sequential float32 sum, no FMA).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct FloatHead {
  const int8_t* f = nullptr;
  const float* w = nullptr;
  const float* b = nullptr;
  float* logits = nullptr;
  int32_t n = 0, c = 0, zp = 0;
  float scale = 0.0f;
};

tt_status parse(TrainContext& ctx, FloatHead* p) {
  tt_status st = expect_arity(ctx, 3, 1);
  if (st != TT_OK) return st;
  const TensorDesc f = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(1)), b = ctx.tensor(ctx.input(2)),
                   y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, f, tfmt::kInt8, "features")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, w, tfmt::kFloat32, "weight")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, b, tfmt::kFloat32, "bias")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kFloat32, "logits")) != TT_OK) return st;
  for (const TensorDesc* t : {&f, &w, &b, &y})
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  if (w.rank != 2 || b.elements != w.dims[0] || y.elements != w.dims[0] || f.elements != w.dims[1])
    return ctx.fail(TT_SHAPE_MISMATCH, "weight [N, C], bias [N], logits [1, N] and C features do not fit");
  p->n = w.dims[0];
  p->c = w.dims[1];
  if ((st = ctx.attr_float("in_scale", &p->scale)) != TT_OK) return st;
  if ((st = int8_zero_point_attr(ctx, "in_zero_point", &p->zp)) != TT_OK) return st;
  p->f = reinterpret_cast<const int8_t*>(f.data);
  p->w = f32_data(w);
  p->b = f32_data(b);
  p->logits = f32_data(y);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  FloatHead p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < 3; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  FloatHead p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t j = 0; j < p.n; ++j) {
    const float* w = p.w + static_cast<int64_t>(j) * p.c;
    float acc = 0.0f;
    for (int32_t i = 0; i < p.c; ++i) {
      const float f = static_cast<float>(p.f[i] - p.zp) * p.scale;
      acc = acc + w[i] * f;
    }
    p.logits[j] = acc + p.b[j];
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainFcFloatForward = {"FC_FLOAT_FORWARD", prepare, eval};

}  // namespace train
}  // namespace tt
