// FULLY_CONNECTED_UPDATE(grad_y [R, O], x [R, I], weight [O, I], rng): fused
// weight gradient + QAS update of the selected input channels i, elements in
// row-major order (o, i), one uniform each:  G[o,i] = sum_{r asc} grad_y[r,o] * X[r,i]
#include "weight_update.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct FcUpdate {
  WeightUpdate<G> u;
  const int8_t* x = nullptr;
  int32_t rows = 0, o = 0, in = 0;
};

template <typename G>
tt_status parse(TrainContext& ctx, FcUpdate<G>* p) {
  tt_status st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc w = ctx.tensor(ctx.input(2));
  if ((st = expect_rank(ctx, w, 2, "weight")) != TT_OK) return st;
  if ((st = parse_weight_update(ctx, w.dims[0], &p->u)) != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), x = ctx.tensor(ctx.input(1));
  if ((st = expect_dtype(ctx, x, tfmt::kInt8, "input")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, x, "input")) != TT_OK) return st;
  p->o = w.dims[0];
  p->in = w.dims[1];
  if (p->o < 1 || p->in < 1 || g.elements % p->o != 0 || x.elements != g.elements / p->o * p->in)
    return ctx.fail(TT_SHAPE_MISMATCH, "weight ", p->o, "x", p->in, " does not fit the gradient and input");
  p->rows = static_cast<int32_t>(g.elements / p->o);
  p->x = reinterpret_cast<const int8_t*>(x.data);
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  FcUpdate<G> p;
  return parse(ctx, &p);
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  FcUpdate<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const int32_t nsel = static_cast<int32_t>(p.u.channels.length);
  for (int32_t o = 0; o < p.o; ++o)
    for (int32_t j = 0; j < nsel; ++j) {
      const int32_t i = p.u.channels.at(j);
      float grad = 0.0f;
      for (int32_t r = 0; r < p.rows; ++r)
        grad = grad + widen(p.u.g[static_cast<int64_t>(r) * p.o + o]) *
                          p.u.deq(p.x[static_cast<int64_t>(r) * p.in + i]);
      int8_t* w = p.u.element(o, j);
      *w = qas_update_weight(*w, grad, p.u.lr, p.u.scale.at(o), p.u.rng);
    }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainFullyConnectedUpdate = {"FULLY_CONNECTED_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
