// MEAN_GRAD(grad_y) -> grad_x: grad_x[idx] = grad_y[idx with reduced axes at 0] / f32(count)
// (one float32 division, stored in the gradients' storage type).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct MeanGrad {
  const G* g = nullptr;
  G* out = nullptr;
  int32_t rank = 0;
  int32_t dims[kMaxRank] = {1, 1, 1, 1, 1, 1};
  int64_t gstride[kMaxRank] = {0, 0, 0, 0, 0, 0};  // 0 along reduced axes
  int64_t n = 0;
  int32_t count = 1;
};

template <typename G>
tt_status parse(TrainContext& ctx, MeanGrad<G>* p) {
  tt_status st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  for (const TensorDesc* t : {&g, &out}) {
    if ((st = expect_dtype(ctx, *t, GradDType<G>::value, "operand")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  }
  I32List axes;
  if ((st = i32_list(ctx, "axes", -1, &axes)) != TT_OK) return st;
  if ((st = ctx.attr_int("count", &p->count)) != TT_OK) return st;
  bool reduced[kMaxRank] = {false, false, false, false, false, false};
  for (uint32_t i = 0; i < axes.length; ++i) {
    const int32_t a = axes.at(static_cast<int32_t>(i));
    if (a < 0 || a >= out.rank) return ctx.fail(TT_MALFORMED_MODEL, "axis ", a, " out of range");
    reduced[a] = true;
  }
  int64_t count = 1, s = 1;
  p->rank = out.rank;
  for (int32_t k = out.rank - 1; k >= 0; --k) {
    p->dims[k] = out.dims[k];
    if (reduced[k]) {
      count *= out.dims[k];
      p->gstride[k] = 0;
    } else {
      p->gstride[k] = s;
      s *= out.dims[k];
    }
  }
  if (count != p->count || count < 1 || g.elements != s)
    return ctx.fail(TT_SHAPE_MISMATCH, "count ", p->count, " and the gradient's ", static_cast<long long>(g.elements),
                    " elements do not fit the reduced axes");
  p->g = grad_data<G>(g);
  p->out = grad_data<G>(out);
  p->n = out.elements;
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  MeanGrad<G> p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st == TT_OK) st = ctx.reads(ctx.tensor(ctx.input(0)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  MeanGrad<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const float count = static_cast<float>(p.count);
  int32_t idx[kMaxRank] = {0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < p.n; ++i) {
    int64_t gi = 0;
    for (int32_t k = 0; k < p.rank; ++k) gi += idx[k] * p.gstride[k];
    p.out[i] = narrow<G>(widen(p.g[gi]) / count);
    for (int32_t k = p.rank - 1; k >= 0; --k) {
      if (++idx[k] < p.dims[k]) break;
      idx[k] = 0;
    }
  }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainMeanGrad = {"MEAN_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
