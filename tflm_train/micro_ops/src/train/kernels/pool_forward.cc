#include "pool_forward.h"

namespace tt {
namespace train {

tt_status parse_pool_forward(TrainContext& ctx, PoolCore* p) {
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0)), y = ctx.tensor(ctx.output(0));
  Spatial xs, ys;
  if ((st = spatial_of(ctx, x, tfmt::kInt8, "input", &xs)) != TT_OK) return st;
  if ((st = spatial_of(ctx, y, tfmt::kInt8, "output", &ys)) != TT_OK) return st;
  if (x.storage != tfmt::kArena || y.storage != tfmt::kArena)
    return ctx.fail(TT_UNSUPPORTED, "pooling input and output must be arena tensors");
  if (xs.c != ys.c) return ctx.fail(TT_SHAPE_MISMATCH, "input and output depths differ");
  p->h = xs.h;
  p->w = xs.w;
  p->c = xs.c;
  p->oh = ys.h;
  p->ow = ys.w;
  if ((st = ctx.attr_int("filter_h", &p->filter_h)) != TT_OK || (st = ctx.attr_int("filter_w", &p->filter_w)) != TT_OK)
    return st;
  ConvGeometry g;
  if ((st = forward_window(ctx, p->h, p->w, p->filter_h, p->filter_w, p->oh, p->ow, &g)) != TT_OK) return st;
  p->stride_h = g.stride_h;
  p->stride_w = g.stride_w;
  p->pad_top = g.pad_top;
  p->pad_left = g.pad_left;
  if ((st = activation_clamp(ctx, y, &p->act_min, &p->act_max)) != TT_OK) return st;
  float sx, sy;
  int32_t zx, zy;
  if ((st = activation_quant(ctx, x, "input", &sx, &zx)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &sy, &zy)) != TT_OK) return st;
  if (sx != sy || zx != zy) return ctx.fail(TT_UNSUPPORTED, "input and output quantization differ");
  if ((st = ctx.reads(x)) != TT_OK || (st = ctx.writes(y)) != TT_OK) return st;
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->y = i8_data(y);
  return TT_OK;
}

}  // namespace train
}  // namespace tt
