// Optimized compute cores (see conv_core.h), bit-identical to conv_core_reference.cc:
// integer sums are exact, so only the order of the additions changes.
//
// CONV_2D, one pixel at a time: the pixel's window is expanded once into int16
// with the input offset added (taps outside the input are 0: x + offset of the
// zero point, which adds nothing, as the reference skips them), in "SMLAD order"
// (within each group of four taps: t, t+2, t+1, t+3, the two halves SXTB16
// splits a weight word into); then two output channels per pass read each
// expanded word once: LDR weight word, SXTB16 twice, SMLAD twice per channel.
// A fused 1x1 convolution's single output channel does the reverse: its weight
// row is expanded once (split channels merged in), the input bytes get the
// offset with SXTAB16, two pixels per pass.
// DEPTHWISE_CONV_2D: weights hoisted into registers, output rows whose window
// lies inside the input run without bounds checks, the input offset folded in
// as offset * (sum of the valid rows' weights); 3x3, 5x5 and 7x7 unrolled.
#include "conv_core.h"

#if defined(__ARM_FEATURE_DSP) && !defined(TT_NO_ACLE)
#include <arm_acle.h>
#define TT_SMLAD 1
#endif

namespace tt {
namespace optimized {
namespace {

constexpr int32_t kMaxTaps = 1024;     // int16 window of one pixel on the stack (2 KB)
constexpr int32_t kMaxDwTaps = 64;     // depthwise window held as int32 weights

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); }

// requantize() with the shift split at the channel's load and both roundings
// branch-free; the same integers:
//   saturating_rounding_doubling_high_mul(a, b) == (a * b + 2^30) >> 31 for every
//   product but INT32_MIN * INT32_MIN (the nudge 1 - 2^30 of negative products and
//   C's truncating division give exactly the floor of (ab + 2^30) / 2^31), and
//   rounding_divide_by_pot(x, e) == (x >> e) + ((x & mask) > (mask >> 1) + (x < 0)).
struct FastQuant {
  int32_t bias, mult, left, right, mask, half;
  // Left to requantize(): the multiplier INT32_MIN (the saturating case), and an activation range
  // that is not an int8 sub-range (only a corrupt model has one; the clamp below assumes it).
  bool exact_only;
};
inline FastQuant fast_quant(const RequantTail& t, int32_t oc) {
  const ChannelQuant q = channel_quant(t, oc);
  FastQuant f;
  f.bias = q.bias;
  f.mult = q.mult;
  f.left = q.shift > 0 ? q.shift : 0;
  f.right = q.shift > 0 ? 0 : -q.shift;
  f.mask = static_cast<int32_t>((int64_t{1} << f.right) - 1);
  f.half = f.mask >> 1;
  f.exact_only = q.mult == kInt32Min || !(-128 <= t.act_min && t.act_min <= t.act_max && t.act_max <= 127);
  return f;
}
inline int8_t requantize_fast(const RequantTail& t, const FastQuant& f, int32_t acc) {
  if (f.exact_only) return requantize(t, ChannelQuant{f.bias, f.mult, f.left - f.right}, acc);
  const int32_t a = wrapping_shift_left(wrapping_add(acc, f.bias), f.left);
  const int32_t h = static_cast<int32_t>((static_cast<int64_t>(a) * f.mult + (int64_t{1} << 30)) >> 31);
  const int32_t r = (h >> f.right) + ((h & f.mask) > f.half - (h >> 31) ? 1 : 0);
  // Clamp without branches (the same instructions whatever the data): saturate to int8, then
  // max / min with the activation range, which lies inside int8 with act_min <= act_max (so the
  // differences cannot overflow).
  int32_t y = wrapping_add(r, t.out_offset);
#ifdef TT_SMLAD
  y = __ssat(y, 8);
#else
  y = y < -128 ? -128 : (y > 127 ? 127 : y);
#endif
  int32_t d = y - t.act_min;
  y -= d & (d >> 31);
  d = t.act_max - y;
  y += d & (d >> 31);
  return static_cast<int8_t>(y);
}

// Natural order -> SMLAD order (swap elements 1 and 2 of every full group of four).
inline void to_smlad_order(int16_t* v, int32_t n) {
  for (int32_t i = 0; i + 4 <= n; i += 4) {
    const int16_t t = v[i + 1];
    v[i + 1] = v[i + 2];
    v[i + 2] = t;
  }
}

// n int8 values + offset -> int16 in SMLAD order.
inline void expand_s8(const int8_t* x, int32_t n, int32_t offset, int16_t* out) {
  int32_t i = 0;
#ifdef TT_SMLAD
  const int32_t off2 = static_cast<int32_t>((static_cast<uint32_t>(offset) & 0xFFFFu) | (static_cast<uint32_t>(offset) << 16));
  for (; i + 4 <= n; i += 4) {
    const uint32_t u = load_u32(x + i);
    const int32_t a = __sxtab16(off2, static_cast<int8x4_t>(u));
    const int32_t b = __sxtab16(off2, static_cast<int8x4_t>(ror8(u)));
    memcpy(out + i, &a, 4);
    memcpy(out + i + 2, &b, 4);
  }
#else
  for (; i + 4 <= n; i += 4) {
    out[i] = static_cast<int16_t>(x[i] + offset);
    out[i + 1] = static_cast<int16_t>(x[i + 2] + offset);
    out[i + 2] = static_cast<int16_t>(x[i + 1] + offset);
    out[i + 3] = static_cast<int16_t>(x[i + 3] + offset);
  }
#endif
  for (; i < n; ++i) out[i] = static_cast<int16_t>(x[i] + offset);
}

// Sums of x (int16, SMLAD order) times two int8 weight rows.
inline void dot2_s16_s8(const int16_t* x, const int8_t* w0, const int8_t* w1, int32_t n, int32_t* a0, int32_t* a1) {
  int32_t s0 = 0, s1 = 0, i = 0;
#ifdef TT_SMLAD
  for (; i + 4 <= n; i += 4) {
    const int32_t xa = static_cast<int32_t>(load_u32(x + i)), xb = static_cast<int32_t>(load_u32(x + i + 2));
    const uint32_t u0 = load_u32(w0 + i), u1 = load_u32(w1 + i);
    s0 = __smlad(__sxtb16(static_cast<int8x4_t>(u0)), xa, s0);
    s0 = __smlad(__sxtb16(static_cast<int8x4_t>(ror8(u0))), xb, s0);
    s1 = __smlad(__sxtb16(static_cast<int8x4_t>(u1)), xa, s1);
    s1 = __smlad(__sxtb16(static_cast<int8x4_t>(ror8(u1))), xb, s1);
  }
#else
  for (; i + 4 <= n; i += 4) {
    s0 += x[i] * w0[i] + x[i + 1] * w0[i + 2] + x[i + 2] * w0[i + 1] + x[i + 3] * w0[i + 3];
    s1 += x[i] * w1[i] + x[i + 1] * w1[i + 2] + x[i + 2] * w1[i + 1] + x[i + 3] * w1[i + 3];
  }
#endif
  for (; i < n; ++i) {
    s0 += x[i] * w0[i];
    s1 += x[i] * w1[i];
  }
  *a0 = s0;
  *a1 = s1;
}

inline int32_t dot_s16_s8(const int16_t* x, const int8_t* w, int32_t n) {
  int32_t s = 0, i = 0;
#ifdef TT_SMLAD
  for (; i + 4 <= n; i += 4) {
    const uint32_t u = load_u32(w + i);
    s = __smlad(__sxtb16(static_cast<int8x4_t>(u)), static_cast<int32_t>(load_u32(x + i)), s);
    s = __smlad(__sxtb16(static_cast<int8x4_t>(ror8(u))), static_cast<int32_t>(load_u32(x + i + 2)), s);
  }
#else
  for (; i + 4 <= n; i += 4) s += x[i] * w[i] + x[i + 1] * w[i + 2] + x[i + 2] * w[i + 1] + x[i + 3] * w[i + 3];
#endif
  for (; i < n; ++i) s += x[i] * w[i];
  return s;
}

// Sums of two pixels' int8 values (+ offset) times one int16 weight row (SMLAD order).
inline void dot2_s8_s16(const int8_t* x0, const int8_t* x1, int32_t offset, const int16_t* w, int32_t n, int32_t* a0,
                        int32_t* a1) {
  int32_t s0 = 0, s1 = 0, i = 0;
#ifdef TT_SMLAD
  const int32_t off2 = static_cast<int32_t>((static_cast<uint32_t>(offset) & 0xFFFFu) | (static_cast<uint32_t>(offset) << 16));
  for (; i + 4 <= n; i += 4) {
    const int32_t wa = static_cast<int32_t>(load_u32(w + i)), wb = static_cast<int32_t>(load_u32(w + i + 2));
    const uint32_t u0 = load_u32(x0 + i), u1 = load_u32(x1 + i);
    s0 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u0)), wa, s0);
    s0 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(ror8(u0))), wb, s0);
    s1 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u1)), wa, s1);
    s1 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(ror8(u1))), wb, s1);
  }
#else
  for (; i + 4 <= n; i += 4) {
    s0 += (x0[i] + offset) * w[i] + (x0[i + 2] + offset) * w[i + 1] + (x0[i + 1] + offset) * w[i + 2] +
          (x0[i + 3] + offset) * w[i + 3];
    s1 += (x1[i] + offset) * w[i] + (x1[i + 2] + offset) * w[i + 1] + (x1[i + 1] + offset) * w[i + 2] +
          (x1[i + 3] + offset) * w[i + 3];
  }
#endif
  for (; i < n; ++i) {
    s0 += (x0[i] + offset) * w[i];
    s1 += (x1[i] + offset) * w[i];
  }
  *a0 = s0;
  *a1 = s1;
}

// Position of flat window index t in SMLAD order (n taps in all).
inline int32_t smlad_position(int32_t t, int32_t n) {
  if (t >= (n & ~3)) return t;
  const int32_t r = t & 3;
  return (t & ~3) + (r == 1 ? 2 : (r == 2 ? 1 : r));
}

// The window of output pixel (oy, ox) as offset int16 in SMLAD order (kh*kw*ic values).
void expand_window(const ConvCore& p, int32_t oy, int32_t ox, int16_t* buf) {
  const int32_t n = p.kh * p.kw * p.ic;
  if (p.kh == 1 && p.kw == 1) {
    const int32_t iy = oy * p.stride_h - p.pad_top, ix = ox * p.stride_w - p.pad_left;
    if (iy >= 0 && iy < p.x_h && ix >= 0 && ix < p.x_w)
      expand_s8(p.x + (static_cast<int64_t>(iy) * p.x_w + ix) * p.ic, n, p.in_offset, buf);
    else
      memset(buf, 0, sizeof(int16_t) * static_cast<size_t>(n));
    return;
  }
  const int32_t y0 = oy * p.stride_h - p.pad_top;
  const int32_t x0 = ox * p.stride_w - p.pad_left;
  int16_t* o = buf;
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t iy = y0 + ky * p.dilation_h;
    for (int32_t kx = 0; kx < p.kw; ++kx, o += p.ic) {
      const int32_t ix = x0 + kx * p.dilation_w;
      if (iy < 0 || iy >= p.x_h || ix < 0 || ix >= p.x_w) {
        memset(o, 0, sizeof(int16_t) * static_cast<size_t>(p.ic));
        continue;
      }
      const int8_t* in = p.x + (static_cast<int64_t>(iy) * p.x_w + ix) * p.ic;
      for (int32_t c = 0; c < p.ic; ++c) o[c] = static_cast<int16_t>(in[c] + p.in_offset);
    }
  }
  to_smlad_order(buf, n);
}

// Split correction of output channel oc: sum over taps of (x + offset) * (w_ram - w_flash).
int32_t split_correction(const ConvCore& p, const int16_t* buf, int32_t oc) {
  const int32_t taps = p.kh * p.kw, n = taps * p.ic;
  int32_t acc = 0;
  for (int32_t t = 0; t < taps; ++t) {
    const int32_t row = oc * taps + t;
    const int8_t* w = p.w + static_cast<int64_t>(row) * p.ic;
    const int8_t* r = p.w_ram + static_cast<int64_t>(row) * p.nsel;
    for (int32_t j = 0; j < p.nsel; ++j) {
      const int32_t c = core_load_i32(p.sel + 4 * j);
      acc += buf[smlad_position(t * p.ic + c, n)] * (r[j] - w[c]);
    }
  }
  return acc;
}

void pixel_from_window(const ConvCore& p, const int16_t* buf, int8_t* out) {
  const int32_t n = p.kh * p.kw * p.ic;
  int32_t oc = 0;
  for (; oc + 2 <= p.oc; oc += 2) {
    int32_t a0, a1;
    dot2_s16_s8(buf, p.w + static_cast<int64_t>(oc) * n, p.w + static_cast<int64_t>(oc + 1) * n, n, &a0, &a1);
    if (p.sel) {
      a0 += split_correction(p, buf, oc);
      a1 += split_correction(p, buf, oc + 1);
    }
    out[oc] = requantize_fast(p.tail, fast_quant(p.tail, oc), a0);
    out[oc + 1] = requantize_fast(p.tail, fast_quant(p.tail, oc + 1), a1);
  }
  if (oc < p.oc) {
    int32_t a = dot_s16_s8(buf, p.w + static_cast<int64_t>(oc) * n, n);
    if (p.sel) a += split_correction(p, buf, oc);
    out[oc] = requantize_fast(p.tail, fast_quant(p.tail, oc), a);
  }
}

}  // namespace

void conv_pixel(const ConvCore& p, int32_t oy, int32_t ox, int8_t* out) {
  if (p.kh * p.kw * p.ic > kMaxTaps) {
    reference::conv_pixel(p, oy, ox, out);
    return;
  }
  int16_t buf[kMaxTaps];
  expand_window(p, oy, ox, buf);
  pixel_from_window(p, buf, out);
}

void conv_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out) {
  if (p.kh * p.kw * p.ic > kMaxTaps) {
    reference::conv_rows(p, oy0, oy1, out);
    return;
  }
  int16_t buf[kMaxTaps];
  for (int32_t oy = oy0; oy < oy1; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      expand_window(p, oy, ox, buf);
      pixel_from_window(p, buf, out + (static_cast<int64_t>(oy - oy0) * p.ow + ox) * p.oc);
    }
}

void conv_pointwise_channel(const ConvCore& p, int32_t oc, int8_t* out) {
  if (p.ic > kMaxTaps || p.kh != 1 || p.kw != 1) {
    reference::conv_pointwise_channel(p, oc, out);
    return;
  }
  // The channel's weight row with the trained channels merged in, int16 in SMLAD order.
  int16_t w[kMaxTaps];
  const int8_t* row = p.w + static_cast<int64_t>(oc) * p.ic;
  for (int32_t c = 0; c < p.ic; ++c) w[c] = row[c];
  if (p.sel) {
    const int8_t* r = p.w_ram + static_cast<int64_t>(oc) * p.nsel;
    for (int32_t j = 0; j < p.nsel; ++j) w[core_load_i32(p.sel + 4 * j)] = r[j];
  }
  to_smlad_order(w, p.ic);
  const FastQuant q = fast_quant(p.tail, oc);
  const int32_t pixels = p.oh * p.ow;
  int32_t i = 0;
  for (; i + 2 <= pixels; i += 2) {
    const int8_t* x0 = p.x + static_cast<int64_t>(i) * p.ic;
    int32_t a0, a1;
    dot2_s8_s16(x0, x0 + p.ic, p.in_offset, w, p.ic, &a0, &a1);
    out[i] = requantize_fast(p.tail, q, a0);
    out[i + 1] = requantize_fast(p.tail, q, a1);
  }
  if (i < pixels) {
    const int8_t* x0 = p.x + static_cast<int64_t>(i) * p.ic;
    int32_t a0, a1;
    dot2_s8_s16(x0, x0, p.in_offset, w, p.ic, &a0, &a1);
    out[i] = requantize_fast(p.tail, q, a0);
  }
}

namespace {

// Depthwise rows whose kh taps all lie inside the input, for a K x K window: the
// interior columns unrolled with the weights in registers.
template <int K>
void dw_row_interior(const int8_t* in, int32_t step_x, int32_t step_y, const int32_t* wv, int32_t ox0, int32_t ox1,
                     int32_t in_step_ox, int32_t off_sum, const RequantTail& t, const FastQuant& q, int8_t* out,
                     int32_t out_stride) {
  int32_t w[K * K];
  for (int32_t i = 0; i < K * K; ++i) w[i] = wv[i];
  const int8_t* base = in;  // the first tap of column ox0
  for (int32_t ox = ox0; ox < ox1; ++ox, base += in_step_ox) {
    int32_t acc = off_sum;
    const int8_t* r = base;
    for (int32_t ky = 0; ky < K; ++ky, r += step_y)
      for (int32_t kx = 0; kx < K; ++kx) acc += r[kx * step_x] * w[ky * K + kx];
    out[static_cast<int64_t>(ox) * out_stride] = requantize_fast(t, q, acc);
  }
}

}  // namespace

void dw_channel(const DwCore& p, int32_t oc, const int8_t* in, int32_t in_stride, int8_t* out, int32_t out_stride) {
  const int32_t taps = p.kh * p.kw;
  if (taps > kMaxDwTaps) {
    reference::dw_channel(p, oc, in, in_stride, out, out_stride);
    return;
  }
  const int8_t* w = p.w + oc;
  int32_t wstride = p.oc;
  if (p.sel) {
    const int32_t j = split_slot(p.sel, p.nsel, oc);
    if (j >= 0) {
      w = p.w_ram + j;
      wstride = p.nsel;
    }
  }
  int32_t wv[kMaxDwTaps], row_sum[kMaxDwTaps];
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    row_sum[ky] = 0;
    for (int32_t kx = 0; kx < p.kw; ++kx) {
      wv[ky * p.kw + kx] = w[(ky * p.kw + kx) * wstride];
      row_sum[ky] += wv[ky * p.kw + kx];
    }
  }
  const FastQuant q = fast_quant(p.tail, oc);
  // Interior columns: the whole kw window inside [0, x_w).
  int32_t ox_lo = 0, ox_hi = 0;
  {
    const int32_t span = (p.kw - 1) * p.dilation_w;
    while (ox_lo < p.ow && ox_lo * p.stride_w - p.pad_left < 0) ++ox_lo;
    ox_hi = ox_lo;
    while (ox_hi < p.ow && ox_hi * p.stride_w - p.pad_left + span < p.x_w) ++ox_hi;
  }
  const int32_t step_x = p.dilation_w * in_stride, in_step_ox = p.stride_w * in_stride;
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const int32_t y0 = oy * p.stride_h - p.pad_top;
    int32_t ky0 = 0, ky1 = p.kh;  // valid taps: the input rows inside [0, x_h) (a contiguous range)
    while (ky0 < p.kh && y0 + ky0 * p.dilation_h < 0) ++ky0;
    while (ky1 > ky0 && y0 + (ky1 - 1) * p.dilation_h >= p.x_h) --ky1;
    int8_t* orow = out + static_cast<int64_t>(oy) * p.ow * out_stride;
    int32_t off_sum = 0;
    for (int32_t ky = ky0; ky < ky1; ++ky) off_sum += row_sum[ky];
    off_sum *= p.in_offset;
    // Border columns: tap by tap with checks.
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      if (ox == ox_lo && ox_hi > ox_lo) ox = ox_hi;
      if (ox >= p.ow) break;
      const int32_t x0 = ox * p.stride_w - p.pad_left;
      int32_t acc = 0;
      for (int32_t ky = ky0; ky < ky1; ++ky) {
        const int32_t iy = y0 + ky * p.dilation_h;
        for (int32_t kx = 0; kx < p.kw; ++kx) {
          const int32_t ix = x0 + kx * p.dilation_w;
          if (ix < 0 || ix >= p.x_w) continue;
          acc += (in[(iy * p.x_w + ix) * in_stride] + p.in_offset) * wv[ky * p.kw + kx];
        }
      }
      orow[static_cast<int64_t>(ox) * out_stride] = requantize_fast(p.tail, q, acc);
    }
    if (ox_hi <= ox_lo) continue;
    // The first valid tap of the first interior column.
    const int8_t* rbase =
        in + (static_cast<int64_t>(y0 + ky0 * p.dilation_h) * p.x_w + ox_lo * p.stride_w - p.pad_left) * in_stride;
    const int32_t step_y = p.dilation_h * p.x_w * in_stride;
    if (ky0 == 0 && ky1 == p.kh && p.kh == p.kw && (p.kw == 3 || p.kw == 5 || p.kw == 7)) {
      if (p.kw == 3)
        dw_row_interior<3>(rbase, step_x, step_y, wv, ox_lo, ox_hi, in_step_ox, off_sum, p.tail, q, orow, out_stride);
      else if (p.kw == 5)
        dw_row_interior<5>(rbase, step_x, step_y, wv, ox_lo, ox_hi, in_step_ox, off_sum, p.tail, q, orow, out_stride);
      else
        dw_row_interior<7>(rbase, step_x, step_y, wv, ox_lo, ox_hi, in_step_ox, off_sum, p.tail, q, orow, out_stride);
      continue;
    }
    for (int32_t ox = ox_lo; ox < ox_hi; ++ox) {
      int32_t acc = off_sum;
      const int8_t* r = rbase + static_cast<int64_t>(ox - ox_lo) * in_step_ox;
      for (int32_t ky = ky0; ky < ky1; ++ky, r += step_y)
        for (int32_t kx = 0; kx < p.kw; ++kx) acc += r[kx * step_x] * wv[ky * p.kw + kx];
      orow[static_cast<int64_t>(ox) * out_stride] = requantize_fast(p.tail, q, acc);
    }
  }
}

}  // namespace optimized
}  // namespace tt
