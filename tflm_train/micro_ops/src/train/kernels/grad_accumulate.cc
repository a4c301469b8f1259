// GRAD_ACCUMULATE(a, b) -> a + b (float32, elementwise; may run in place over either input).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

tt_status parse(TrainContext& ctx, const float** a, const float** b, float** out, int64_t* n) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc ta = ctx.tensor(ctx.input(0)), tb = ctx.tensor(ctx.input(1)), to = ctx.tensor(ctx.output(0));
  for (const TensorDesc* t : {&ta, &tb, &to}) {
    if ((st = expect_dtype(ctx, *t, tfmt::kFloat32, "operand")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  }
  if (ta.elements != tb.elements || ta.elements != to.elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "operands have different sizes");
  *a = f32_data(ta);
  *b = f32_data(tb);
  *out = f32_data(to);
  *n = to.elements;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  const float *a, *b;
  float* out;
  int64_t n;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &a, &b, &out, &n);
  if (st != TT_OK) return st;
  const TensorDesc ta = ctx.tensor(ctx.input(0)), tb = ctx.tensor(ctx.input(1)), to = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(ta)) != TT_OK || (st = ctx.reads(tb)) != TT_OK || (st = ctx.writes(to)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, ctx.inplace_input() == tb.index ? tb : ta, to);
}

tt_status eval(TrainContext& ctx) {
  const float *a, *b;
  float* out;
  int64_t n;
  const tt_status st = parse(ctx, &a, &b, &out, &n);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainGradAccumulate = {"GRAD_ACCUMULATE", prepare, eval};

}  // namespace train
}  // namespace tt
