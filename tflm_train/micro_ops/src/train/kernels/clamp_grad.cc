// CLAMP_GRAD(grad_y, y) -> grad: the straight-through clamp,
//   grad = (act_min < y < act_max) ? grad_y : 0,
// reading y's bitmask instead of y when the plan kept only the mask (bit i of
// byte i >> 3 at position i & 7). Elementwise: may run in place over grad_y. The
// gradient and the output have one storage type (float32 or float16); the stored bits
// are moved unchanged, so no rounding happens.
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct ClampGrad {
  const uint8_t* g = nullptr;
  const int8_t* y = nullptr;     // or
  const uint8_t* mask = nullptr;
  uint8_t* out = nullptr;
  int64_t n = 0;
  int32_t lo = 0, hi = 0;
  int32_t mask_tensor = -1;
};

tt_status parse(TrainContext& ctx, ClampGrad* p) {
  tt_status st = expect_arity(ctx, 2, 1);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), y = ctx.tensor(ctx.input(1)), out = ctx.tensor(ctx.output(0));
  const uint8_t grad_dtype = is_half(g) ? tfmt::kFloat16 : tfmt::kFloat32;
  if ((st = expect_dtype(ctx, g, grad_dtype, "gradient")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "activation")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, out, grad_dtype, "output")) != TT_OK) return st;
  if (g.elements != y.elements || out.elements != g.elements)
    return ctx.fail(TT_SHAPE_MISMATCH, "gradient, activation and output sizes differ");
  if ((st = expect_addressable(ctx, g, "gradient")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, out, "output")) != TT_OK) return st;
  if ((st = ctx.attr_int("act_min", &p->lo)) != TT_OK || (st = ctx.attr_int("act_max", &p->hi)) != TT_OK) return st;
  p->mask_tensor = find_mask(ctx.runtime(), y.index);
  if (p->mask_tensor >= 0) {
    const TensorDesc m = ctx.tensor(p->mask_tensor);
    if (m.mask_min != p->lo || m.mask_max != p->hi)
      return ctx.fail(TT_MALFORMED_MODEL, "the bitmask of ", name_of(ctx, y), " uses another clamp range");
    p->mask = m.data;
  } else {
    if ((st = expect_addressable(ctx, y, "activation")) != TT_OK) return st;
    p->y = reinterpret_cast<const int8_t*>(y.data);
  }
  p->g = g.data;
  p->out = out.data;
  p->n = g.elements;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  ClampGrad p;
  tt_status st = expect_mode(ctx, kAllowNormal | kAllowInPlace);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const TensorDesc g = ctx.tensor(ctx.input(0)), out = ctx.tensor(ctx.output(0));
  if ((st = ctx.reads(g)) != TT_OK) return st;
  if ((st = ctx.reads(ctx.tensor(p.mask_tensor >= 0 ? p.mask_tensor : ctx.input(1)))) != TT_OK) return st;
  if ((st = ctx.writes(out)) != TT_OK) return st;
  return expect_elementwise_in_place(ctx, g, out);
}

// U: the unsigned integer of the storage type's width.
template <typename U>
void clamp(const ClampGrad& p) {
  // The gradient's bits or +0.0, moved as integers (no float register on the way).
  const U* g = reinterpret_cast<const U*>(p.g);
  U* out = reinterpret_cast<U*>(p.out);
  const int32_t n = static_cast<int32_t>(p.n);
  if (p.mask && out == g) {
    // In place: only the clamped elements change (to +0.0); eight at a time, a mask byte of
    // ones (nothing clamped) costs one test.
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint32_t m = p.mask[i >> 3];
      if (m == 0xffu) continue;
#pragma GCC unroll 8
      for (int32_t k = 0; k < 8; ++k)
        if (!((m >> k) & 1u)) out[i + k] = 0u;
    }
    for (; i < n; ++i)
      if (!((p.mask[i >> 3] >> (i & 7)) & 1u)) out[i] = 0u;
    return;
  }
  if (p.mask) {
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint32_t m = p.mask[i >> 3];
      for (int32_t k = 0; k < 8; ++k) out[i + k] = ((m >> k) & 1u) ? g[i + k] : 0u;
    }
    for (; i < n; ++i) out[i] = ((p.mask[i >> 3] >> (i & 7)) & 1u) ? g[i] : 0u;
    return;
  }
  const int32_t lo = p.lo, hi = p.hi;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t y = p.y[i];
    out[i] = (lo < y && y < hi) ? g[i] : 0u;
  }
}

tt_status eval(TrainContext& ctx) {
  ClampGrad p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  if (is_half(ctx.tensor(ctx.input(0))))
    clamp<uint16_t>(p);
  else
    clamp<uint32_t>(p);
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainClampGrad = {"CLAMP_GRAD", prepare, eval};

}  // namespace train
}  // namespace tt
