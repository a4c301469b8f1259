#include "weight_update.h"

namespace tt {
namespace train {

template <typename G>
tt_status parse_weight_update(TrainContext& ctx, int32_t scale_entries, WeightUpdate<G>* p) {
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = expect_arity(ctx, 4, 2);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), w = ctx.tensor(ctx.input(2)), rng = ctx.tensor(ctx.input(3));
  if (ctx.output(0) != w.index || ctx.output(1) != rng.index)
    return ctx.fail(TT_MALFORMED_MODEL, "an update must rewrite its weight and RNG state in place");
  if ((st = expect_dtype(ctx, g, GradDType<G>::value, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if (w.storage != tfmt::kPersistent || w.kind != tfmt::kParameter)
    return ctx.fail(TT_MALFORMED_MODEL, "weight ", name_of(ctx, w), " is not a persistent parameter");
  if ((st = int8_weights_of(ctx, w, "weight", &p->w)) != TT_OK) return st;
  if (rng.dtype != tfmt::kUInt32 || rng.elements != 1 || rng.storage != tfmt::kPersistent)
    return ctx.fail(TT_MALFORMED_MODEL, "RNG state ", name_of(ctx, rng), " is not a persistent uint32 [1]");
  if ((st = i32_list(ctx, "channels", -1, &p->channels)) != TT_OK) return st;
  if (ctx.preparing()) {
    int32_t prev = -1;
    for (uint32_t j = 0; j < p->channels.length; ++j) {
      const int32_t c = p->channels.at(static_cast<int32_t>(j));
      if (c <= prev || c >= p->w.last)
        return ctx.fail(TT_MALFORMED_MODEL, "channels are not ascending inside [0, ", p->w.last, ")");
      prev = c;
    }
    if (p->w.split()) {
      bool same = static_cast<int32_t>(p->channels.length) == p->w.nsel;
      for (int32_t j = 0; same && j < p->w.nsel; ++j) same = p->w.selected(j) == p->channels.at(j);
      if (!same) return ctx.fail(TT_MALFORMED_MODEL, "the update's channels differ from the weight's split channels");
    }
  }
  if ((st = f32_table(ctx, "weight_scale", scale_entries, &p->scale)) != TT_OK) return st;
  if ((st = ctx.attr_float("lr", &p->lr)) != TT_OK) return st;
  if ((st = ctx.attr_float("in_scale", &p->in_scale)) != TT_OK) return st;
  if ((st = int8_zero_point_attr(ctx, "in_zero_point", &p->in_zp)) != TT_OK) return st;
  if (ctx.preparing()) {
    for (int32_t i = 0; i < 4 && st == TT_OK; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
    if (st == TT_OK) st = ctx.writes(w);
    if (st == TT_OK) st = ctx.writes(rng);
    if (st != TT_OK) return st;
  }
  p->g = grad_data<G>(g);
  p->rng = reinterpret_cast<uint32_t*>(rng.data);
  return TT_OK;
}

template tt_status parse_weight_update<float>(TrainContext&, int32_t, WeightUpdate<float>*);
template tt_status parse_weight_update<Half>(TrainContext&, int32_t, WeightUpdate<Half>*);

}  // namespace train
}  // namespace tt
