// BIAS_UPDATE(grad_y, bias int32): G_b[c] = sum over positions (row-major) of
// grad_y[..., c]; b <- saturate(b - lround((lr * G_b) / bias_scale[c])) (QAS).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

template <typename G>
struct BiasUpdate {
  const G* g = nullptr;  // float32 or float16, widened on load
  int32_t* b = nullptr;
  F32Table scale;
  float lr = 0.0f;
  int32_t c = 0;
  int64_t positions = 0;
};

template <typename G>
tt_status parse(TrainContext& ctx, BiasUpdate<G>* p) {
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), b = ctx.tensor(ctx.input(1));
  if (ctx.output(0) != b.index) return ctx.fail(TT_MALFORMED_MODEL, "the bias must be updated in place");
  if ((st = expect_dtype(ctx, g, GradDType<G>::value, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, b, tfmt::kInt32, "bias")) != TT_OK) return st;
  if (b.storage != tfmt::kPersistent || b.kind != tfmt::kParameter || b.split_channels.length)
    return ctx.fail(TT_MALFORMED_MODEL, "bias ", name_of(ctx, b), " is not a persistent parameter");
  p->c = static_cast<int32_t>(b.elements);
  if (p->c < 1 || g.rank < 1 || g.dims[g.rank - 1] != p->c)
    return ctx.fail(TT_SHAPE_MISMATCH, "gradient's last dimension is not the bias size ", p->c);
  if ((st = f32_table(ctx, "bias_scale", p->c, &p->scale)) != TT_OK) return st;
  if (p->scale.length != static_cast<uint32_t>(p->c))
    return ctx.fail(TT_MALFORMED_MODEL, "bias_scale needs one entry per channel");
  if ((st = ctx.attr_float("lr", &p->lr)) != TT_OK) return st;
  p->g = grad_data<G>(g);
  p->b = reinterpret_cast<int32_t*>(b.data);
  p->positions = g.elements / p->c;
  return TT_OK;
}

template <typename G>
tt_status prepare_as(TrainContext& ctx) {
  BiasUpdate<G> p;
  tt_status st = parse(ctx, &p);
  if (st == TT_OK) st = ctx.reads(ctx.tensor(ctx.input(0)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.input(1)));
  return st;
}

template <typename G>
tt_status eval_as(TrainContext& ctx) {
  BiasUpdate<G> p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  // Four channels' sums side by side, each over the positions in order.
  const int32_t n = static_cast<int32_t>(p.positions);
  int32_t c = 0;
  for (; c + 4 <= p.c; c += 4) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    const G* g = p.g + c;
    for (int32_t i = 0; i < n; ++i, g += p.c) {
      a0 = a0 + widen(g[0]);
      a1 = a1 + widen(g[1]);
      a2 = a2 + widen(g[2]);
      a3 = a3 + widen(g[3]);
    }
    p.b[c] = qas_update_bias(p.b[c], a0, p.lr, p.scale.at(c));
    p.b[c + 1] = qas_update_bias(p.b[c + 1], a1, p.lr, p.scale.at(c + 1));
    p.b[c + 2] = qas_update_bias(p.b[c + 2], a2, p.lr, p.scale.at(c + 2));
    p.b[c + 3] = qas_update_bias(p.b[c + 3], a3, p.lr, p.scale.at(c + 3));
  }
  for (; c < p.c; ++c) {
    float grad = 0.0f;
    const G* g = p.g + c;
    for (int32_t i = 0; i < n; ++i, g += p.c) grad = grad + widen(*g);
    p.b[c] = qas_update_bias(p.b[c], grad, p.lr, p.scale.at(c));
  }
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) { return by_grad_dtype(ctx, prepare_as<float>, prepare_as<Half>); }

tt_status eval(TrainContext& ctx) { return by_grad_dtype(ctx, eval_as<float>, eval_as<Half>); }

}  // namespace

extern const TrainKernel kTrainBiasUpdate = {"BIAS_UPDATE", prepare, eval};

}  // namespace train
}  // namespace tt
