// PAD (forward) of the training graph. Mode "skip": the plan made the output a
// VIRTUAL_PAD that its readers read through (checked here: same source and
// amounts). Mode "normal": the padded copy, pad value the output zero point
// (real zero), any 1-byte or 4-byte element type, rank up to 4.
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct PadForward {
  const uint8_t* x = nullptr;
  uint8_t* y = nullptr;
  uint32_t es = 0;
  int32_t in[4] = {1, 1, 1, 1}, out[4] = {1, 1, 1, 1}, before[4] = {0, 0, 0, 0};
  int32_t pad_value = 0;
};

tt_status parse(TrainContext& ctx, PadForward* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc x = ctx.tensor(ctx.input(0)), pads = ctx.tensor(ctx.input(1)), y = ctx.tensor(ctx.output(0));
  if (x.dtype != y.dtype || x.rank != y.rank || x.rank < 1 || x.rank > 4)
    return ctx.fail(TT_UNSUPPORTED, "input and output must have one dtype and rank 1..4");
  if (pads.storage != tfmt::kFlash || (pads.dtype != tfmt::kInt32 && pads.dtype != tfmt::kInt64) ||
      pads.elements != 2 * x.rank)
    return ctx.fail(TT_UNSUPPORTED, "paddings must be a constant int32/int64 [", x.rank, ", 2] tensor");
  p->es = tfmt::dtype_size(x.dtype);
  const int32_t lead = 4 - x.rank;
  for (int32_t k = 0; k < x.rank; ++k) {
    const int64_t lo = pads.dtype == tfmt::kInt32 ? load_i32(pads.data + 8 * k) : load_i64(pads.data + 16 * k);
    const int64_t hi = pads.dtype == tfmt::kInt32 ? load_i32(pads.data + 8 * k + 4) : load_i64(pads.data + 16 * k + 8);
    if (lo < 0 || hi < 0 || int64_t{x.dims[k]} + lo + hi != y.dims[k])  // int64: no overflow
      return ctx.fail(TT_SHAPE_MISMATCH, "paddings of dimension ", k, " do not give the output shape");
    p->in[lead + k] = x.dims[k];
    p->out[lead + k] = y.dims[k];
    p->before[lead + k] = static_cast<int32_t>(lo);
  }
  if (y.scales.length && x.dtype == tfmt::kInt8) {
    float s;
    if ((st = activation_quant(ctx, y, "output", &s, &p->pad_value)) != TT_OK) return st;
  }
  if (ctx.mode() == tfmt::kSkip) {
    if (y.storage != tfmt::kVirtualPad || y.source != x.index || x.rank != 4 || p->before[0] || p->before[3] ||
        y.pad[0] != p->before[1] || y.pad[2] != p->before[2] || p->in[0] != p->out[0] || p->in[3] != p->out[3])
      return ctx.fail(TT_MALFORMED_MODEL, "a skipped PAD needs a virtual output over its input with its paddings");
    return TT_OK;
  }
  if ((st = expect_addressable(ctx, x, "input")) != TT_OK) return st;
  if (y.storage != tfmt::kArena) return ctx.fail(TT_MALFORMED_MODEL, "output is not an arena tensor");
  p->x = x.data;
  p->y = y.data;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  PadForward p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowSkip);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK || ctx.mode() == tfmt::kSkip) return st;
  if ((st = ctx.reads(ctx.tensor(ctx.input(0)))) != TT_OK) return st;
  return ctx.writes(ctx.tensor(ctx.output(0)));
}

tt_status eval(TrainContext& ctx) {
  if (ctx.mode() == tfmt::kSkip) return TT_OK;
  PadForward p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const int64_t total = static_cast<int64_t>(p.out[0]) * p.out[1] * p.out[2] * p.out[3];
  if (p.es == 1) {
    memset(p.y, static_cast<uint8_t>(static_cast<int8_t>(p.pad_value)), static_cast<size_t>(total));
  } else {
    memset(p.y, 0, static_cast<size_t>(total) * p.es);
  }
  const size_t row = static_cast<size_t>(p.in[3]) * p.es;
  for (int32_t a = 0; a < p.in[0]; ++a)
    for (int32_t b = 0; b < p.in[1]; ++b)
      for (int32_t c = 0; c < p.in[2]; ++c) {
        const int64_t src = ((static_cast<int64_t>(a) * p.in[1] + b) * p.in[2] + c) * p.in[3];
        const int64_t dst =
            ((static_cast<int64_t>(a + p.before[0]) * p.out[1] + b + p.before[1]) * p.out[2] + c + p.before[2]) *
                p.out[3] + p.before[3];
        memcpy(p.y + dst * p.es, p.x + src * p.es, row);
      }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainPad = {"PAD", prepare, eval};

}  // namespace train
}  // namespace tt
