// FC_FLOAT_GRAD_INPUT(grad_logits, weight f32 [N, C]) -> grad_features:
//   grad_f[i] = sum_{j asc} grad_logits[j] * W[j,i]   (per row r of grad_logits viewed as [R, N]).
// grad_logits and W float32; grad_features stored as GO (float32 or float16, rounded once).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename GO>
tt_status parse(TrainContext& ctx, const float** g, const float** w, GO** out, int32_t* rows, int32_t* n,
                int32_t* c) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc tg = ctx.tensor(ctx.input(0)), tw = ctx.tensor(ctx.input(1)), to = ctx.tensor(ctx.output(0));
  for (const TensorDesc* t : {&tg, &tw, &to}) {
    const uint8_t dtype = t == &to ? GradDType<GO>::value : static_cast<uint8_t>(tfmt::kFloat32);
    if ((st = expect_dtype(ctx, *t, dtype, "operand")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  }
  if (tw.rank != 2 || tw.dims[0] < 1 || tg.elements % tw.dims[0] != 0 ||
      to.elements != tg.elements / tw.dims[0] * tw.dims[1])
    return ctx.fail(TT_SHAPE_MISMATCH, "weight [N, C] does not fit the gradients");
  *n = tw.dims[0];
  *c = tw.dims[1];
  *rows = static_cast<int32_t>(tg.elements / *n);
  *g = f32_data(tg);
  *w = f32_data(tw);
  *out = grad_data<GO>(to);
  return TT_OK;
}

template <typename GO>
tt_status prepare_as(TrainContext& ctx) {
  const float *g, *w;
  GO* out;
  int32_t rows, n, c;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &g, &w, &out, &rows, &n, &c);
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

template <typename GO>
tt_status eval_as(TrainContext& ctx) {
  const float *g, *w;
  GO* out;
  int32_t rows, n, c;
  const tt_status st = parse(ctx, &g, &w, &out, &rows, &n, &c);
  if (st != TT_OK) return st;
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t i = 0; i < c; ++i) {
      float acc = 0.0f;
      for (int32_t j = 0; j < n; ++j) acc = acc + g[static_cast<int64_t>(r) * n + j] * w[static_cast<int64_t>(j) * c + i];
      out[static_cast<int64_t>(r) * c + i] = narrow<GO>(acc);
    }
  return TT_OK;
}

// grad_logits float32 -> grad_features float32 or float16.
tt_status prepare(TrainContext& ctx) {
  return by_grad_dtypes(ctx, prepare_as<float>, prepare_as<Half>, prepare_as<float>);
}

tt_status eval(TrainContext& ctx) { return by_grad_dtypes(ctx, eval_as<float>, eval_as<Half>, eval_as<float>); }

}  // namespace

extern const TrainKernel kTrainFcFloatGradInput = {"FC_FLOAT_GRAD_INPUT", prepare, eval};

}  // namespace train
}  // namespace tt
