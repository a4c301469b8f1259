#include "pool_common.h"

namespace tt {

tt_status parse_pool(Context& ctx, const NodeRec& node, PoolData* d) {
  tt_status st = check_arity(ctx, node, 1, 1, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  d->output = node.output(0);
  if ((st = check_type(ctx, d->input, schema::kInt8, "input")) != TT_OK) return st;
  if ((st = check_type(ctx, d->output, schema::kInt8, "output")) != TT_OK) return st;
  if ((st = check_rank(ctx, d->input, 4, "input")) != TT_OK) return st;
  const Table o = ctx.options(node, schema::kOptionsPool2D);
  FlatReader& r = ctx.reader();
  const uint8_t padding = r.u8(o, schema::kPoolPadding, 0);
  d->stride_w = r.i32(o, schema::kPoolStrideW, 0);
  d->stride_h = r.i32(o, schema::kPoolStrideH, 0);
  d->filter_w = r.i32(o, schema::kPoolFilterW, 0);
  d->filter_h = r.i32(o, schema::kPoolFilterH, 0);
  const uint8_t activation = r.u8(o, schema::kPoolActivation, 0);
  if (padding > schema::kPaddingValid) return ctx.fail(TT_UNSUPPORTED, "padding type ", padding);
  if ((st = check_window(ctx, d->stride_h, d->stride_w, 1, 1)) != TT_OK) return st;
  if (d->filter_w < 1 || d->filter_h < 1) return ctx.fail(TT_MALFORMED_MODEL, "filter sizes must be >= 1");
  if (static_cast<int64_t>(d->filter_w) * d->filter_h > 65000)
    return ctx.fail(TT_UNSUPPORTED, "pool window of more than 65000 elements");
  const Shape in = ctx.shape(d->input);
  d->batches = in.dim(0);
  d->in_h = in.dim(1);
  d->in_w = in.dim(2);
  d->channels = in.dim(3);
  d->out_h = window_output_size(padding, d->in_h, d->filter_h, d->stride_h, 1);
  d->out_w = window_output_size(padding, d->in_w, d->filter_w, d->stride_w, 1);
  d->pad_h = window_padding(d->in_h, d->filter_h, d->stride_h, 1, d->out_h);
  d->pad_w = window_padding(d->in_w, d->filter_w, d->stride_w, 1, d->out_w);
  const int32_t out_dims[4] = {d->batches, d->out_h, d->out_w, d->channels};
  if ((st = check_shape(ctx, d->output, out_dims, 4, "output")) != TT_OK) return st;
  return fused_activation_range(ctx, activation, d->output, &d->act_min, &d->act_max);
}

PoolCore pool_core(Context& ctx, const PoolData& d, int32_t b) {
  PoolCore p;
  p.x = as_i8(ctx.data(d.input)) + static_cast<int64_t>(b) * d.in_h * d.in_w * d.channels;
  p.y = as_i8(ctx.data(d.output)) + static_cast<int64_t>(b) * d.out_h * d.out_w * d.channels;
  p.h = d.in_h;
  p.w = d.in_w;
  p.c = d.channels;
  p.oh = d.out_h;
  p.ow = d.out_w;
  p.filter_h = d.filter_h;
  p.filter_w = d.filter_w;
  p.stride_h = d.stride_h;
  p.stride_w = d.stride_w;
  p.pad_top = d.pad_h;
  p.pad_left = d.pad_w;
  p.act_min = d.act_min;
  p.act_max = d.act_max;
  return p;
}

}  // namespace tt
