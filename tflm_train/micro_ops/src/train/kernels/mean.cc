// MEAN (forward, int8) over constant axes, of the training graph: TFLite's
// integer mean (the compute core of the inference kernel, src/kernels/pool_core.h).
#include "../../kernels/int8_common.h"
#include "../../kernels/pool_core.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

tt_status parse(TrainContext& ctx, MeanCore* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0)), axes = ctx.tensor(ctx.input(1)), y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, x, tfmt::kInt8, "input")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, axes, tfmt::kInt32, "axis")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, x, "input")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, y, "output")) != TT_OK) return st;
  if (axes.storage != tfmt::kFlash) return ctx.fail(TT_UNSUPPORTED, "axis must be a constant");
  p->rank = x.rank;
  for (int32_t k = 0; k < x.rank; ++k) p->dims[k] = x.dims[k];
  for (int64_t i = 0; i < axes.elements; ++i) {
    int32_t a = load_i32(axes.data + 4 * i);
    if (a < -x.rank || a >= x.rank) return ctx.fail(TT_MALFORMED_MODEL, "axis ", a, " out of range");
    p->reduced[a < 0 ? a + x.rank : a] = true;
  }
  for (int32_t k = 0; k < x.rank; ++k) (p->reduced[k] ? p->count : p->out_elements) *= x.dims[k];
  if (p->count > 65000) return ctx.fail(TT_UNSUPPORTED, "mean over more than 65000 elements");
  if (y.elements != p->out_elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "output has ", static_cast<long long>(y.elements), " elements, expected ",
                    static_cast<long long>(p->out_elements));
  float s_in, s_out;
  if ((st = activation_quant(ctx, x, "input", &s_in, &p->zp_in)) != TT_OK) return st;
  if ((st = activation_quant(ctx, y, "output", &s_out, &p->zp_out)) != TT_OK) return st;
  const double real = static_cast<double>(s_in) / static_cast<double>(s_out);
  if (!(real > 0.0) || !isfinite(real)) return ctx.fail(TT_MALFORMED_MODEL, "invalid scales");
  mean_rescale(s_in, s_out, p->count, &p->multiplier, &p->shift);
  if (p->shift > 31) return ctx.fail(TT_UNSUPPORTED, "rescale factor too large");
  p->x = reinterpret_cast<const int8_t*>(x.data);
  p->y = i8_data(y);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  MeanCore p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st == TT_OK) st = ctx.reads(ctx.tensor(ctx.input(0)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  MeanCore p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  mean(p);
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainMean = {"MEAN", prepare, eval};

}  // namespace train
}  // namespace tt
