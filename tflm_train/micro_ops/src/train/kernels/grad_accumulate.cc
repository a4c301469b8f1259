// GRAD_ACCUMULATE(a, b) -> a + b (elementwise; may run in place over either input): both
// gradients widened, one float32 addition, stored once in their storage type (all three
// operands float32, or all float16).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
tt_status parse(TrainContext& ctx, const G** a, const G** b, G** out, int64_t* n) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc ta = ctx.tensor(ctx.input(0)), tb = ctx.tensor(ctx.input(1)), to = ctx.tensor(ctx.output(0));
  for (const TensorDesc* t : {&ta, &tb, &to}) {
    if ((st = expect_dtype(ctx, *t, GradDType<G>::value, "operand")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  }
  if (ta.elements != tb.elements || ta.elements != to.elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "operands have different sizes");
  *a = grad_data<G>(ta);
  *b = grad_data<G>(tb);
  *out = grad_data<G>(to);
  *n = to.elements;
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  const G *a, *b;
  G* out;
  int64_t n;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &a, &b, &out, &n);
  if (st != TT_OK) return st;
  const TensorDesc ta = ctx.tensor(ctx.input(0)), tb = ctx.tensor(ctx.input(1)), to = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(ta)) != TT_OK || (st = ctx.reads(tb)) != TT_OK || (st = ctx.writes(to)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, ctx.inplace_input() == tb.index ? tb : ta, to);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  const G *a, *b;
  G* out;
  int64_t n;
  const tt_status st = parse(ctx, &a, &b, &out, &n);
  if (st != TT_OK) return st;
  for (int64_t i = 0; i < n; ++i) out[i] = narrow<G>(widen(a[i]) + widen(b[i]));
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainGradAccumulate = {"GRAD_ACCUMULATE", prepare, eval};

}  // namespace train
}  // namespace tt
