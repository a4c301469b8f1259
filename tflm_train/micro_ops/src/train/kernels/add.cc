// ADD (forward, int8, equal shapes) of the training graph: TFLite's integer add
// (src/kernels/int8_common.h, as the inference kernel), elementwise, so it may
// run in place over either input (layout "elementwise").
#include "../../kernels/int8_common.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct AddForward {
  const int8_t* x1 = nullptr;
  const int8_t* x2 = nullptr;
  int8_t* y = nullptr;
  int64_t n = 0;
  AddRescale r;
  int32_t zp1 = 0, zp2 = 0, zp_out = 0, act_min = 0, act_max = 0;
};

tt_status parse(TrainContext& ctx, AddForward* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc a = ctx.tensor(ctx.input(0)), b = ctx.tensor(ctx.input(1)), y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, a, tfmt::kInt8, "input 1")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, b, tfmt::kInt8, "input 2")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if ((st = expect_same_shape(ctx, a, b, "inputs (broadcasting is not trainable)")) != TT_OK) return st;
  if ((st = expect_same_shape(ctx, a, y, "input and output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, a, "input 1")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, b, "input 2")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, y, "output")) != TT_OK) return st;
  float s1, s2, s_out;
  if ((st = activation_quant(ctx, a, "input 1", &s1, &p->zp1)) != TT_OK) return st;
  if ((st = activation_quant(ctx, b, "input 2", &s2, &p->zp2)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &s_out, &p->zp_out)) != TT_OK) return st;
  if (!add_rescale(s1, s2, s_out, &p->r))
    return ctx.fail(TT_UNSUPPORTED, "scales give no valid rescaling (output scale below 2^-20 of the inputs)");
  if ((st = activation_clamp(ctx, y, &p->act_min, &p->act_max)) != TT_OK) return st;
  p->x1 = reinterpret_cast<const int8_t*>(a.data);
  p->x2 = reinterpret_cast<const int8_t*>(b.data);
  p->y = i8_data(y);
  p->n = y.elements;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  AddForward p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc a = ctx.tensor(ctx.input(0)), b = ctx.tensor(ctx.input(1)), y = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(a)) != TT_OK || (st = ctx.reads(b)) != TT_OK || (st = ctx.writes(y)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, ctx.inplace_input() == b.index ? b : a, y);
}

tt_status eval(TrainContext& ctx) {
  AddForward p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  add_elementwise(p.r, -p.zp1, -p.zp2, p.zp_out, p.act_min, p.act_max, p.x1, p.x2, p.y, static_cast<int32_t>(p.n));
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainAdd = {"ADD", prepare, eval};

}  // namespace train
}  // namespace tt
