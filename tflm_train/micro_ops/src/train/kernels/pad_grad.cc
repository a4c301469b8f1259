// PAD_GRAD(grad_y) -> grad_x: the un-padded slice grad_y[p0:p0+H, ...].
// Modes: normal (a copy); in place, layout "crop_ascending" (the slice copied in
// ascending order: every element moves to an address at or below its source);
// skip (the producing GRAD_INPUT wrote the interior straight into grad_x, the
// input being a VIRTUAL_CROP of it).
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct PadGrad {
  const uint8_t* g = nullptr;  // stored elements (float32 or float16), moved unchanged
  uint8_t* out = nullptr;
  uint32_t esize = 4;
  int32_t in[4] = {1, 1, 1, 1}, out_dims[4] = {1, 1, 1, 1}, before[4] = {0, 0, 0, 0};
};

tt_status parse(TrainContext& ctx, PadGrad* p) {
  tt_status st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  const uint8_t grad_dtype = is_half(g) ? tfmt::kFloat16 : tfmt::kFloat32;
  if ((st = expect_dtype(ctx, g, grad_dtype, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, grad_dtype, "output")) != TT_OK) return st;
  p->esize = tfmt::dtype_size(grad_dtype);
  if (g.rank != out.rank || g.rank < 1 || g.rank > 4) return ctx.fail(TT_UNSUPPORTED, "rank 1..4 expected");
  I32List pads;
  if ((st = i32_list(ctx, "paddings", 2 * g.rank, &pads)) != TT_OK) return st;
  const int32_t lead = 4 - g.rank;
  for (int32_t k = 0; k < g.rank; ++k) {
    const int32_t lo = pads.at(2 * k), hi = pads.at(2 * k + 1);
    if (lo < 0 || hi < 0 || int64_t{out.dims[k]} + lo + hi != g.dims[k])  // int64: no overflow
      return ctx.fail(TT_SHAPE_MISMATCH, "paddings of dimension ", k, " do not fit the shapes");
    p->in[lead + k] = g.dims[k];
    p->out_dims[lead + k] = out.dims[k];
    p->before[lead + k] = lo;
  }
  if (ctx.mode() == tfmt::kSkip) {
    if (g.storage != tfmt::kVirtualCrop || g.source != out.index || g.rank != 4 || g.pad[0] != p->before[1] ||
        g.pad[2] != p->before[2] || p->before[0] || p->before[3] || p->in[3] != p->out_dims[3])
      return ctx.fail(TT_MALFORMED_MODEL, "a skipped PAD_GRAD needs a virtual-crop input over its output");
    return TT_OK;
  }
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, out, "output")) != TT_OK) return st;
  p->g = g.data;
  p->out = out.data;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  PadGrad p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace | kAllowSkip);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK || ctx.mode() == tfmt::kSkip) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK || (st = ctx.writes(out)) != TT_OK) return st;
  if (ctx.mode() == tfmt::kInPlace) {
    if (!ctx.layout_is("crop_ascending")) return ctx.fail(TT_UNSUPPORTED, "in-place layout is not 'crop_ascending'");
    return expect_in_place_over(ctx, g, out);
  }
  return TT_OK;
}

tt_status eval(TrainContext& ctx) {
  if (ctx.mode() == tfmt::kSkip) return TT_OK;
  PadGrad p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const size_t row = static_cast<size_t>(p.out_dims[3]) * p.esize;
  for (int32_t a = 0; a < p.out_dims[0]; ++a)
    for (int32_t b = 0; b < p.out_dims[1]; ++b)
      for (int32_t c = 0; c < p.out_dims[2]; ++c) {
        const int64_t dst = ((static_cast<int64_t>(a) * p.out_dims[1] + b) * p.out_dims[2] + c) * p.out_dims[3];
        const int64_t src =
            ((static_cast<int64_t>(a + p.before[0]) * p.in[1] + b + p.before[1]) * p.in[2] + c + p.before[2]) *
                p.in[3] + p.before[3];
        memmove(p.out + dst * p.esize, p.g + src * p.esize, row);  // ascending rows; dst <= src when in place
      }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainPadGrad = {"PAD_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
