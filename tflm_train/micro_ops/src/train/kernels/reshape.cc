// RESHAPE (forward) and RESHAPE_GRAD of the training graph: the same bytes with
// another shape. Mode "alias": the plan gave the output the input's bytes (no
// work); "normal": a copy.
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

tt_status parse(TrainContext& ctx, const uint8_t** x, uint8_t** y, size_t* bytes) {
  if (ctx.input_count() < 1 || ctx.input_count() > 2 || ctx.output_count() != 1)
    return ctx.fail(TT_MALFORMED_MODEL, "expects 1 or 2 inputs and 1 output");
  tt_status st = expect_arity(ctx, ctx.input_count(), 1);
  if (st != TT_OK) return st;
  const TensorDesc a = ctx.tensor(ctx.input(0)), b = ctx.tensor(ctx.output(0));
  if (a.dtype != b.dtype || a.elements != b.elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "input and output differ in dtype or element count");
  if ((st = expect_addressable(ctx, a, "input")) != TT_OK) return st;
  if (b.storage != tfmt::kArena) return ctx.fail(TT_MALFORMED_MODEL, "output is not an arena tensor");
  if (ctx.mode() == tfmt::kAlias && (a.storage != tfmt::kArena || a.offset != b.offset || ctx.inplace_input() != a.index))
    return ctx.fail(TT_MALFORMED_MODEL, "an alias must share its input's offset");
  *x = a.data;
  *y = b.data;
  *bytes = static_cast<size_t>(a.bytes);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  const uint8_t* x;
  uint8_t* y;
  size_t n;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowAlias);
  if (st == TT_OK) st = parse(ctx, &x, &y, &n);
  if (st == TT_OK) st = ctx.reads(ctx.tensor(ctx.input(0)));
  if (st == TT_OK) st = ctx.writes(ctx.tensor(ctx.output(0)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  if (ctx.mode() == tfmt::kAlias) return TT_OK;
  const uint8_t* x;
  uint8_t* y;
  size_t n;
  const tt_status st = parse(ctx, &x, &y, &n);
  if (st == TT_OK && x != y) memmove(y, x, n);
  return st;
}

}  // namespace

extern const TrainKernel kTrainReshape = {"RESHAPE", prepare, eval};
extern const TrainKernel kTrainReshapeGrad = {"RESHAPE_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
