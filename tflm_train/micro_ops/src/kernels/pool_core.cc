#include "pool_core.h"

#include "int8_common.h"

namespace tt {
namespace {

PoolWindow window_of(const PoolCore& p, int32_t oy, int32_t ox) {
  return pool_window(oy, ox, p.h, p.w, p.filter_h, p.filter_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left);
}

}  // namespace

bool average_pool(const PoolCore& p) {
  for (int32_t oy = 0; oy < p.oh; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      const PoolWindow win = window_of(p, oy, ox);
      if (win.y1 <= win.y0 || win.x1 <= win.x0) return false;
      const int32_t count = (win.y1 - win.y0) * (win.x1 - win.x0);
      int8_t* out = p.y + (oy * p.ow + ox) * p.c;
      for (int32_t c = 0; c < p.c; ++c) {
        int32_t sum = 0;
        for (int32_t iy = win.y0; iy < win.y1; ++iy)
          for (int32_t ix = win.x0; ix < win.x1; ++ix) sum += p.x[(iy * p.w + ix) * p.c + c];
        out[c] = static_cast<int8_t>(clamp_i32(rounded_average(sum, count), p.act_min, p.act_max));
      }
    }
  return true;
}

void max_pool(const PoolCore& p) {
  for (int32_t oy = 0; oy < p.oh; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      const PoolWindow win = window_of(p, oy, ox);
      int8_t* out = p.y + (oy * p.ow + ox) * p.c;
      for (int32_t c = 0; c < p.c; ++c) {
        int32_t best = -128;
        for (int32_t iy = win.y0; iy < win.y1; ++iy)
          for (int32_t ix = win.x0; ix < win.x1; ++ix) {
            const int32_t v = p.x[(iy * p.w + ix) * p.c + c];
            if (v > best) best = v;
          }
        out[c] = static_cast<int8_t>(clamp_i32(best, p.act_min, p.act_max));
      }
    }
}

void mean(const MeanCore& p) {
  if (p.count == 0) {  // an empty reduction (a zero dim): TFLite Micro writes zeros
    for (int64_t o = 0; o < p.out_elements; ++o) p.y[o] = 0;
    return;
  }
  int64_t stride[TT_MAX_RANK];
  int64_t s = 1;
  for (int32_t k = p.rank - 1; k >= 0; --k) {
    stride[k] = s;
    s *= p.dims[k];
  }
  // One output element at a time, its sum gathered over the reduced dims (exact in int32 in
  // any order: count <= 65000), so no scratch.
  int32_t kept[TT_MAX_RANK] = {0, 0, 0, 0, 0, 0};  // odometer over the kept dims (output order)
  for (int64_t o = 0; o < p.out_elements; ++o) {
    int64_t base = 0;
    for (int32_t k = 0; k < p.rank; ++k) base += p.reduced[k] ? 0 : kept[k] * stride[k];
    int32_t red[TT_MAX_RANK] = {0, 0, 0, 0, 0, 0};  // odometer over the reduced dims
    int32_t sum = 0;
    for (int64_t i = 0; i < p.count; ++i) {
      int64_t offset = base;
      for (int32_t k = 0; k < p.rank; ++k) offset += p.reduced[k] ? red[k] * stride[k] : 0;
      sum += p.x[offset];
      for (int32_t k = p.rank - 1; k >= 0; --k) {
        if (!p.reduced[k]) continue;
        if (++red[k] < p.dims[k]) break;
        red[k] = 0;
      }
    }
    const int32_t centered = static_cast<int32_t>(sum - static_cast<int64_t>(p.zp_in) * p.count);
    const int32_t v = multiply_by_quantized_multiplier(centered, p.multiplier, p.shift) + p.zp_out;
    p.y[o] = static_cast<int8_t>(clamp_i32(v, -128, 127));
    for (int32_t k = p.rank - 1; k >= 0; --k) {
      if (p.reduced[k]) continue;
      if (++kept[k] < p.dims[k]) break;
      kept[k] = 0;
    }
  }
}

}  // namespace tt
