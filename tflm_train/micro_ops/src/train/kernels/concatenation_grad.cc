// CONCATENATION_GRAD(grad_y) -> grad_x: the gradient of one CONCATENATION
// input, its slice [begin, begin + size) of grad_y along `axis` (size = the
// input's extent there): for each index of the dimensions before the axis, one
// contiguous block copied (the stored elements, float32 or float16: no rounding).
#include <string.h>

#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct ConcatenationGrad {
  const uint8_t* g = nullptr;
  uint8_t* out = nullptr;
  int64_t outer = 1, block = 0, stride = 0, offset = 0;  // in bytes
};

tt_status parse(TrainContext& ctx, ConcatenationGrad* p) {
  tt_status st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  const uint8_t grad_dtype = is_half(g) ? tfmt::kFloat16 : tfmt::kFloat32;
  if ((st = expect_dtype(ctx, g, grad_dtype, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, grad_dtype, "output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, out, "output")) != TT_OK) return st;
  int32_t axis, begin;
  if ((st = ctx.attr_int("axis", &axis)) != TT_OK || (st = ctx.attr_int("begin", &begin)) != TT_OK) return st;
  if (g.rank != out.rank || axis < 0 || axis >= g.rank)
    return ctx.fail(TT_MALFORMED_MODEL, "axis out of range or ranks differ");
  if (begin < 0 || begin + out.dims[axis] > g.dims[axis])
    return ctx.fail(TT_SHAPE_MISMATCH, "slice [", begin, ", ", begin + out.dims[axis], ") outside the gradient");
  int64_t inner = tfmt::dtype_size(grad_dtype);
  for (int32_t k = 0; k < g.rank; ++k) {
    if (k != axis && g.dims[k] != out.dims[k])
      return ctx.fail(TT_SHAPE_MISMATCH, "gradient and output differ in dimension ", k);
    if (k < axis) p->outer *= g.dims[k];
    if (k > axis) inner *= g.dims[k];
  }
  p->block = out.dims[axis] * inner;
  p->stride = g.dims[axis] * inner;
  p->offset = begin * inner;
  p->g = g.data;
  p->out = out.data;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  ConcatenationGrad p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  if ((st = ctx.reads(ctx.tensor(ctx.input(0)))) != TT_OK) return st;
  return ctx.writes(ctx.tensor(ctx.output(0)));
}

tt_status eval(TrainContext& ctx) {
  ConcatenationGrad p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int64_t k = 0; k < p.outer; ++k)
    memcpy(p.out + k * p.block, p.g + k * p.stride + p.offset, static_cast<size_t>(p.block));
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainConcatenationGrad = {"CONCATENATION_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
