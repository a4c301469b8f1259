#include "pool_grad.h"

namespace tt {
namespace train {

template <typename G>
tt_status parse_pool_grad(TrainContext& ctx, bool with_input, PoolGrad<G>* p) {
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = expect_arity(ctx, with_input ? 2 : 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  Spatial gs, os;
  if ((st = spatial_of(ctx, g, GradDType<G>::value, "gradient", &gs)) != TT_OK) return st;
  if ((st = spatial_of(ctx, out, GradDType<G>::value, "output", &os)) != TT_OK) return st;
  if (g.storage != tfmt::kArena || out.storage != tfmt::kArena)
    return ctx.fail(TT_UNSUPPORTED, "gradients must be arena tensors");
  if (gs.c != os.c) return ctx.fail(TT_SHAPE_MISMATCH, "gradient depths differ");
  p->oh = gs.h;
  p->ow = gs.w;
  p->h = os.h;
  p->w = os.w;
  p->c = os.c;
  const char* names[6] = {"filter_h", "filter_w", "stride_h", "stride_w", "pad_top", "pad_left"};
  int32_t* values[6] = {&p->fh, &p->fw, &p->sh, &p->sw, &p->pt, &p->pl};
  for (int i = 0; i < 6; ++i) {
    if ((st = ctx.attr_int(names[i], values[i])) != TT_OK) return st;
    const int32_t lo = i < 4 ? 1 : 0;
    if (*values[i] < lo || *values[i] > 65535) return ctx.fail(TT_UNSUPPORTED, "attr '", names[i], "' out of range");
  }
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.writes(out)) != TT_OK) return st;
  if (with_input) {
    const TensorDesc x = ctx.tensor(ctx.input(1));
    Spatial xs;
    if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &xs)) != TT_OK) return st;
    if (x.storage != tfmt::kArena || xs.h != p->h || xs.w != p->w || xs.c != p->c)
      return ctx.fail(TT_SHAPE_MISMATCH, "the forward input does not match the gradient");
    if ((st = ctx.reads(x)) != TT_OK) return st;
    p->x = reinterpret_cast<const int8_t*>(x.data);
  }
  p->g = grad_data<G>(g);
  p->out = grad_data<G>(out);
  return TT_OK;
}

template tt_status parse_pool_grad<float>(TrainContext&, bool, PoolGrad<float>*);
template tt_status parse_pool_grad<Half>(TrainContext&, bool, PoolGrad<Half>*);

}  // namespace train
}  // namespace tt
