// FULLY_CONNECTED (forward, int8) of the training graph (an int8 head): TFLite's
// integer fully connected layer through the compute core shared with the inference
// kernel (src/kernels/fc_core.h), on the input
// viewed as [rows, depth], weights [units, depth] (symmetric, per tensor or per
// unit) from flash, SRAM or split, requantization precomputed in the file.
#include "../../kernels/fc_core.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct FcForward {
  const int8_t* x = nullptr;
  Int8Weights w;
  I32Values bias;
  bool has_bias = false;
  int8_t* y = nullptr;
  int32_t rows = 0, depth = 0, units = 0;
  int32_t in_offset = 0, out_offset = 0, act_min = 0, act_max = 0;
  const uint8_t* mult = nullptr;
  const uint8_t* shift = nullptr;
  uint32_t nq = 0;
};

tt_status parse(TrainContext& ctx, FcForward* p) {
  const bool has_bias = ctx.input_count() == 3;
  tt_status st = expect_arity(ctx, has_bias ? 3 : 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0));
  const TensorDesc w = ctx.tensor(ctx.input(1));
  const TensorDesc y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, x, tfmt::kInt8, "input")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, x, "input")) != TT_OK) return st;
  if ((st = int8_weights_of(ctx, w, "filter", &p->w)) != TT_OK) return st;
  if ((st = expect_rank(ctx, w, 2, "filter")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, y, "output")) != TT_OK) return st;
  p->units = w.dims[0];
  p->depth = w.dims[1];
  if (p->units < 1 || p->depth < 1 || p->depth > 65000 || x.elements % p->depth != 0)
    return ctx.fail(TT_SHAPE_MISMATCH, "filter ", p->units, "x", p->depth, " does not fit an input of ",
                    static_cast<long long>(x.elements), " elements");
  p->rows = static_cast<int32_t>(x.elements / p->depth);
  if (y.elements != static_cast<int64_t>(p->rows) * p->units || y.dims[y.rank - 1] != p->units)
    return ctx.fail(TT_SHAPE_MISMATCH, "output has ", static_cast<long long>(y.elements), " elements, expected ",
                    p->rows, " rows of ", p->units);
  for (uint32_t i = 0; i < w.zero_points.length; ++i)
    if (ctx.meta().i32_in(w.zero_points, i) != 0) return ctx.fail(TT_UNSUPPORTED, "filter zero points must be 0");
  p->has_bias = has_bias;
  if (has_bias) {
    const TensorDesc b = ctx.tensor(ctx.input(2));
    if ((st = expect_dtype(ctx, b, tfmt::kInt32, "bias")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, b, "bias")) != TT_OK) return st;
    if (b.elements != p->units) return ctx.fail(TT_SHAPE_MISMATCH, "bias has ", static_cast<long long>(b.elements),
                                                " elements for ", p->units, " units");
    p->bias.data = b.data;
  }
  float s;
  int32_t zp_x, zp_y;
  if ((st = activation_quant(ctx, x, "input", &s, &zp_x)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &s, &zp_y)) != TT_OK) return st;
  p->in_offset = -zp_x;
  p->out_offset = zp_y;
  if ((st = activation_clamp(ctx, y, &p->act_min, &p->act_max)) != TT_OK) return st;
  if ((st = ctx.requantization(p->units, &p->mult, &p->shift, &p->nq)) != TT_OK) return st;
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->y = i8_data(y);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  FcForward p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < ctx.input_count(); ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  FcForward p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  FcCore c;
  c.x = p.x;
  c.rows = p.rows;
  c.depth = p.depth;
  c.units = p.units;
  c.in_offset = p.in_offset;
  c.w = p.w.full;
  if (p.w.split()) {
    c.w_ram = p.w.ram;
    c.sel = p.w.sel;
    c.nsel = p.w.nsel;
  }
  c.tail.bias = p.has_bias ? p.bias.data : nullptr;
  c.tail.mult = p.mult;
  c.tail.shift = p.shift;
  c.tail.shift_bytes = 4;  // int32 tables in the training metadata
  c.tail.per_channel = p.nq != 1;
  c.tail.out_offset = p.out_offset;
  c.tail.act_min = p.act_min;
  c.tail.act_max = p.act_max;
  fc_rows(c, p.y);
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainFullyConnected = {"FULLY_CONNECTED", prepare, eval};

}  // namespace train
}  // namespace tt
