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
#include "requant_fast.h"

#if defined(__ARM_FEATURE_DSP) && !defined(TT_NO_ACLE)
#include <arm_acle.h>
#define TT_SMLAD 1
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tt {
namespace optimized {
namespace {

// Short copy and fill loops stay loops: a memcpy / memset call costs more than them (GCC
// would turn them into calls; clang has no such option and needs none here).
#if defined(__GNUC__) && !defined(__clang__)
#define TT_KEEP_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define TT_KEEP_LOOPS
#endif
constexpr int32_t kMaxTaps = 1024;     // int16 window of one pixel on the stack (2 KB)
constexpr int32_t kMaxDwTaps = 64;     // depthwise window held as int32 weights
constexpr int32_t kPointwiseChunk = 64;  // pixels of one channel requantized together

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}
inline uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); }
// The input offset in both halfwords (for SXTAB16).
inline int32_t pack_offset2(int32_t offset) {
  return static_cast<int32_t>((static_cast<uint32_t>(offset) & 0xFFFFu) | (static_cast<uint32_t>(offset) << 16));
}
#ifdef TT_SMLAD
// SXTAB16 of the odd bytes (ROR #8 folded into the instruction; the intrinsic alone does not fold it).
inline int32_t sxtb16_ror8(uint32_t b) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(b));
  return r;
}
inline int32_t sxtab16_ror8(int32_t a, uint32_t b) {
  int32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
#endif


// requantize() through requant_fast.h (one SMLAL and one shift per value, the same integers).
struct FastQuant {
  int64_t z0;  // requant_z0: the constant part of the sum (out_offset included)
  int32_t bias, mult, left, right;
  // Left to requantize(): what requant_fast_applies excludes (a negative multiplier; a right
  // shift above 23 with a zero point outside int8) and an activation range that is not an
  // int8 sub-range (only a corrupt model has these).
  bool exact_only;
};
inline FastQuant fast_quant(const RequantTail& t, int32_t oc) {
  const ChannelQuant q = channel_quant(t, oc);
  FastQuant f;
  f.bias = q.bias;
  f.mult = q.mult;
  f.left = q.shift > 0 ? q.shift : 0;
  f.right = q.shift > 0 ? 0 : -q.shift;
  f.exact_only = !requant_fast_applies(q.mult, f.right, t.out_offset) ||
                 !(-128 <= t.act_min && t.act_min <= t.act_max && t.act_max <= 127);
  f.z0 = f.exact_only ? 0 : requant_z0(f.right, t.out_offset);
  return f;
}
// r + out_offset (before the clamp), fast path only.
inline int32_t requant_sum(const FastQuant& f, int32_t acc) {
  return requant_apply(f.z0, f.mult, f.left, f.right, wrapping_add(acc, f.bias));
}
// Saturate to int8, then the activation range (inside int8, act_min <= act_max).
inline int32_t sat_int8(int32_t y) {
#ifdef TT_SMLAD
  return __ssat(y, 8);
#else
  return y < -128 ? -128 : (y > 127 ? 127 : y);
#endif
}
inline int8_t requantize_fast(const RequantTail& t, const FastQuant& f, int32_t acc) {
  if (f.exact_only) return requantize(t, ChannelQuant{f.bias, f.mult, f.left - f.right}, acc);
  int32_t y = sat_int8(requant_sum(f, acc));
  y = y < t.act_min ? t.act_min : y;
  y = y > t.act_max ? t.act_max : y;
  return static_cast<int8_t>(y);
}

// The fast requantization over a run of accumulators, every parameter a register for the
// whole run (scalars, not struct fields a char store could alias). Specialized on a right
// shift (the usual multiplier below 1/2) and on an activation range that is all of int8
// (no clamp beyond the saturation to int8), so those cost nothing.
template <bool kRound, bool kClamp>
__attribute__((noinline)) void requantize_run_fast(const int32_t* acc, int32_t n, int8_t* out, int32_t out_stride,
                                                   int64_t z0, int32_t bias, int32_t mult, int32_t shift,
                                                   int32_t lo, int32_t hi) {
#pragma GCC unroll 2
  for (const int32_t* end = acc + n; acc != end; ++acc, out += out_stride) {
    const int32_t a = wrapping_add(*acc, bias);
    int32_t y;
    if (kRound) y = requant_high(z0, a, mult) >> shift;  // shift = right - 1
    else y = requant_apply(z0, mult, shift, 0, a);       // shift = left
    y = sat_int8(y);
    if (kClamp) {
      y = y < lo ? lo : y;
      y = y > hi ? hi : y;
    }
    *out = static_cast<int8_t>(y);
  }
}

// requantize() over a run of accumulators of one channel: out[i * out_stride] = requantize(acc[i]).
void requantize_run(const RequantTail& t, const FastQuant& f, const int32_t* acc, int32_t n, int8_t* out,
                    int32_t out_stride) {
  if (f.exact_only) {
    const ChannelQuant q{f.bias, f.mult, f.left - f.right};
    for (int32_t i = 0; i < n; ++i, out += out_stride) *out = requantize(t, q, acc[i]);
    return;
  }
  const bool clamp = t.act_min != -128 || t.act_max != 127;
  const int32_t lo = t.act_min, hi = t.act_max;
  if (f.right > 0) {
    if (clamp) requantize_run_fast<true, true>(acc, n, out, out_stride, f.z0, f.bias, f.mult, f.right - 1, lo, hi);
    else requantize_run_fast<true, false>(acc, n, out, out_stride, f.z0, f.bias, f.mult, f.right - 1, lo, hi);
  } else if (clamp) {
    requantize_run_fast<false, true>(acc, n, out, out_stride, f.z0, f.bias, f.mult, f.left, lo, hi);
  } else {
    requantize_run_fast<false, false>(acc, n, out, out_stride, f.z0, f.bias, f.mult, f.left, lo, hi);
  }
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
  const int32_t off2 = pack_offset2(offset);
  for (; i + 4 <= n; i += 4) {
    const uint32_t u = load_u32(x + i);
    const int32_t a = __sxtab16(off2, static_cast<int8x4_t>(u));
    const int32_t b = sxtab16_ror8(off2, u);
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

// n int8 values + offset -> int16 in natural order.
inline void expand_s8_natural(const int8_t* x, int32_t n, int32_t offset, int16_t* out) {
  int32_t i = 0;
#ifdef TT_SMLAD
  // Four bytes at a time: SXTAB16 adds the offset to (x0, x2) and (x1, x3), PKHBT / PKHTB
  // put them back in order.
  const int32_t off2 = pack_offset2(offset);
  for (; i + 4 <= n; i += 4) {
    const uint32_t u = load_u32(x + i);
    const int32_t even = __sxtab16(off2, static_cast<int8x4_t>(u)), odd = sxtab16_ror8(off2, u);
    int32_t x01, x23;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(x01) : "r"(even), "r"(odd));
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(x23) : "r"(odd), "r"(even));
    memcpy(out + i, &x01, 4);
    memcpy(out + i + 2, &x23, 4);
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
  const int32_t off2 = pack_offset2(offset);
  for (; i + 4 <= n; i += 4) {
    const int32_t wa = static_cast<int32_t>(load_u32(w + i)), wb = static_cast<int32_t>(load_u32(w + i + 2));
    const uint32_t u0 = load_u32(x0 + i), u1 = load_u32(x1 + i);
    s0 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u0)), wa, s0);
    s0 = __smlad(sxtab16_ror8(off2, u0), wb, s0);
    s1 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u1)), wa, s1);
    s1 = __smlad(sxtab16_ror8(off2, u1), wb, s1);
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
  const bool row_inside = p.dilation_w == 1 && x0 >= 0 && x0 + p.kw <= p.x_w;
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t iy = y0 + ky * p.dilation_h;
    if (row_inside && iy >= 0 && iy < p.x_h) {  // the window row is kw * ic consecutive bytes
      expand_s8_natural(p.x + (static_cast<int64_t>(iy) * p.x_w + x0) * p.ic, p.kw * p.ic, p.in_offset, o);
      o += p.kw * p.ic;
      continue;
    }
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
// buf holds the window in SMLAD order over its first `layout` values (>= the window's taps; the
// padded windows of window_rows are longer).
int32_t split_correction(const ConvCore& p, const int16_t* buf, int32_t oc, int32_t layout) {
  const int32_t taps = p.kh * p.kw, n = layout;
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
      a0 += split_correction(p, buf, oc, n);
      a1 += split_correction(p, buf, oc + 1, n);
    }
    out[oc] = requantize_fast(p.tail, fast_quant(p.tail, oc), a0);
    out[oc + 1] = requantize_fast(p.tail, fast_quant(p.tail, oc + 1), a1);
  }
  if (oc < p.oc) {
    int32_t a = dot_s16_s8(buf, p.w + static_cast<int64_t>(oc) * n, n);
    if (p.sel) a += split_correction(p, buf, oc, n);
    out[oc] = requantize_fast(p.tail, fast_quant(p.tail, oc), a);
  }
}

}  // namespace

namespace {
constexpr int32_t kWindowBuf = 2048;  // int16 windows of a run of pixels on the stack (4 KB)
constexpr int32_t kPadTaps = 64;      // windows up to this long padded to a multiple of 4 taps
void window_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out);
bool short_window_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out);
bool plain_pointwise(const ConvCore& p);
void pointwise_run(const ConvCore& p, int32_t oc0, int32_t noc, const int8_t* x, int32_t pixels, int8_t* out,
                   int32_t out_stride);
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
  if (plain_pointwise(p)) {
    const int8_t* x = p.x + static_cast<int64_t>(oy0) * p.ow * p.ic;
    const int32_t pixels = (oy1 - oy0) * p.ow;
    for (int32_t oc = 0; oc < p.oc; oc += 2) pointwise_run(p, oc, p.oc - oc >= 2 ? 2 : 1, x, pixels, out + oc, p.oc);
    return;
  }
  const int32_t n = p.kh * p.kw * p.ic;
  if (n > kMaxTaps) {
    reference::conv_rows(p, oy0, oy1, out);
    return;
  }
  if (short_window_rows(p, oy0, oy1, out)) return;
  if (2 * n <= kWindowBuf) {
    window_rows(p, oy0, oy1, out);
    return;
  }
  int16_t buf[kMaxTaps];
  for (int32_t oy = oy0; oy < oy1; ++oy)
    for (int32_t ox = 0; ox < p.ow; ++ox) {
      expand_window(p, oy, ox, buf);
      pixel_from_window(p, buf, out + (static_cast<int64_t>(oy - oy0) * p.ow + ox) * p.oc);
    }
}

namespace {

#ifdef TT_SMLAD
// Two pixels (halfword pairs xNa, xNb) by two channels (wMa, wMb): four SMLAD sums.
inline void smlad_2x2(int32_t x0a, int32_t x0b, int32_t x1a, int32_t x1b, int32_t w0a, int32_t w0b, int32_t w1a,
                      int32_t w1b, int32_t* s00, int32_t* s01, int32_t* s10, int32_t* s11) {
  *s00 = __smlad(x0b, w0b, __smlad(x0a, w0a, *s00));
  *s10 = __smlad(x1b, w0b, __smlad(x1a, w0a, *s10));
  *s01 = __smlad(x0b, w1b, __smlad(x0a, w1a, *s01));
  *s11 = __smlad(x1b, w1b, __smlad(x1a, w1a, *s11));
}
#endif

// The scalar end of a 2x2 block: n more products of two pixels by two weight rows.
template <typename X, typename W>
inline void mac2x2_scalar(const X* x0, const X* x1, const W* w0, const W* w1, int32_t n, int32_t& s00,
                          int32_t& s01, int32_t& s10, int32_t& s11) {
  for (int32_t t = 0; t < n; ++t) {
    s00 += x0[t] * w0[t];
    s01 += x0[t] * w1[t];
    s10 += x1[t] * w0[t];
    s11 += x1[t] * w1[t];
  }
}

// Sums of two pixels' raw int8 values (no offset: it is folded into the channels'
// constants) times two weight rows interleaved by groups of four input channels
// (wq: w0 of the group, then w1, each in SMLAD order; `groups` groups), then the last
// `tail` channels from wt0 / wt1 (natural order): acc = {x0.w0, x0.w1, x1.w0, x1.w1}.
// G > 0: exactly G groups, known at compile time (the loop unrolled); the sums start at
// {b0, b1, b0, b1} (the folded offsets) instead of 0.
struct Sums2x2 {
  int32_t s00, s01, s10, s11;
#if !defined(TT_SMLAD) && defined(__SSE2__)
  __m128i sum0 = _mm_setzero_si128(), sum1 = _mm_setzero_si128();  // lanes: w0 pairs, then w1 pairs
#endif
};
// One group of four input channels of dot2x2_folded.
inline void group_2x2(Sums2x2& s, const int8_t* x0, const int8_t* x1, const int16_t* wq) {
#ifdef TT_SMLAD
  const uint32_t u0 = load_u32(x0), u1 = load_u32(x1);
  const int32_t x0a = __sxtb16(static_cast<int8x4_t>(u0)), x0b = sxtb16_ror8(u0);
  const int32_t x1a = __sxtb16(static_cast<int8x4_t>(u1)), x1b = sxtb16_ror8(u1);
  smlad_2x2(x0a, x0b, x1a, x1b, static_cast<int32_t>(load_u32(wq)), static_cast<int32_t>(load_u32(wq + 2)),
            static_cast<int32_t>(load_u32(wq + 4)), static_cast<int32_t>(load_u32(wq + 6)), &s.s00, &s.s01, &s.s10,
            &s.s11);
#elif defined(__SSE2__)
  // x86-64 (the host library): the group's 4 inputs as int16, twice, times both rows' 4
  // weights (natural order there, see weight_lane), pairs summed by PMADDWD.
  const __m128i v0 = _mm_cvtsi32_si128(static_cast<int32_t>(load_u32(x0)));
  const __m128i v1 = _mm_cvtsi32_si128(static_cast<int32_t>(load_u32(x1)));
  const __m128i e0 = _mm_srai_epi16(_mm_unpacklo_epi8(v0, v0), 8), e1 = _mm_srai_epi16(_mm_unpacklo_epi8(v1, v1), 8);
  const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wq));
  s.sum0 = _mm_add_epi32(s.sum0, _mm_madd_epi16(_mm_unpacklo_epi64(e0, e0), w));
  s.sum1 = _mm_add_epi32(s.sum1, _mm_madd_epi16(_mm_unpacklo_epi64(e1, e1), w));
#else
  for (int32_t k = 0; k < 4; ++k) {
    s.s00 += x0[k] * wq[k];
    s.s01 += x0[k] * wq[4 + k];
    s.s10 += x1[k] * wq[k];
    s.s11 += x1[k] * wq[4 + k];
  }
#endif
}
#ifdef TT_SMLAD
// G groups of dot2x2_folded (G = 2, 4, 7) in one asm block: per group two input words, two
// LDRD of weights, SXTB16 four times, eight SMLAD, in 13 registers (the compiler's schedule
// of the same operations reloads input words and spills sums).
template <int G>
void groups_2x2_asm(Sums2x2& s, const int8_t* x0, const int8_t* x1, const int16_t* wq);
#define TT_G2X2(G)                                     \
  "ldr %[a], [%[x0], #(" #G ") * 4]\n\t"              \
  "ldrd %[wa], %[wb], [%[w], #(" #G ") * 16]\n\t"     \
  "sxtb16 %[b], %[a], ror #8\n\t"                     \
  "sxtb16 %[a], %[a]\n\t"                             \
  "smlad %[s00], %[a], %[wa], %[s00]\n\t"             \
  "smlad %[s00], %[b], %[wb], %[s00]\n\t"             \
  "ldr %[c], [%[x1], #(" #G ") * 4]\n\t"              \
  "sxtb16 %[d], %[c], ror #8\n\t"                     \
  "sxtb16 %[c], %[c]\n\t"                             \
  "smlad %[s10], %[c], %[wa], %[s10]\n\t"             \
  "smlad %[s10], %[d], %[wb], %[s10]\n\t"             \
  "ldrd %[wa], %[wb], [%[w], #(" #G ") * 16 + 8]\n\t" \
  "smlad %[s01], %[a], %[wa], %[s01]\n\t"             \
  "smlad %[s01], %[b], %[wb], %[s01]\n\t"             \
  "smlad %[s11], %[c], %[wa], %[s11]\n\t"             \
  "smlad %[s11], %[d], %[wb], %[s11]\n\t"
#define TT_G2X2_ASM(G, TEXT)                                                                                    \
  template <>                                                                                                   \
  inline void groups_2x2_asm<G>(Sums2x2 & s, const int8_t* x0, const int8_t* x1, const int16_t* wq) {            \
    int32_t a, b, c, d, wa, wb;                                                                                 \
    __asm__(TEXT                                                                                                \
            : [s00] "+&r"(s.s00), [s01] "+&r"(s.s01), [s10] "+&r"(s.s10), [s11] "+&r"(s.s11), [a] "=&r"(a),      \
              [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d), [wa] "=&r"(wa), [wb] "=&r"(wb)                          \
            : [x0] "r"(x0), [x1] "r"(x1), [w] "r"(wq)                                                           \
            : "memory");                                                                                        \
  }
TT_G2X2_ASM(2, TT_G2X2(0) TT_G2X2(1))
TT_G2X2_ASM(4, TT_G2X2(0) TT_G2X2(1) TT_G2X2(2) TT_G2X2(3))
TT_G2X2_ASM(7, TT_G2X2(0) TT_G2X2(1) TT_G2X2(2) TT_G2X2(3) TT_G2X2(4) TT_G2X2(5) TT_G2X2(6))
#undef TT_G2X2_ASM
#undef TT_G2X2
#endif

// The groups of 4 taps of one 2x2 block: G > 0 known at compile time (unrolled, or the
// assembly block on the Cortex-M4), G == 0 a run-time count. A full specialization rather
// than `if constexpr`, as the Arduino cores compile libraries as C++14.
template <int G>
inline void groups_2x2(Sums2x2& s, const int8_t*& x0, const int8_t*& x1, const int16_t* wq, int32_t) {
#ifdef TT_SMLAD
  groups_2x2_asm<G>(s, x0, x1, wq);
#else
#pragma GCC unroll 16
  for (int32_t g = 0; g < G; ++g) group_2x2(s, x0 + 4 * g, x1 + 4 * g, wq + 8 * g);
#endif
  x0 += 4 * G;
  x1 += 4 * G;
}

template <>
inline void groups_2x2<0>(Sums2x2& s, const int8_t*& x0, const int8_t*& x1, const int16_t* wq, int32_t groups) {
  for (const int8_t* end = x0 + 4 * groups; x0 != end; x0 += 4, x1 += 4, wq += 8) group_2x2(s, x0, x1, wq);
}

template <int G = 0>
inline void dot2x2_folded(const int8_t* x0, const int8_t* x1, const int16_t* wq, int32_t groups,
                          const int16_t* wt0, const int16_t* wt1, int32_t tail, int32_t* acc, int32_t b0 = 0,
                          int32_t b1 = 0) {
  Sums2x2 s{b0, b1, b0, b1};
  groups_2x2<G>(s, x0, x1, wq, groups);
#if !defined(TT_SMLAD) && defined(__SSE2__)
  alignas(16) int32_t l0[4], l1[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(l0), s.sum0);
  _mm_store_si128(reinterpret_cast<__m128i*>(l1), s.sum1);
  s.s00 += l0[0] + l0[1];
  s.s01 += l0[2] + l0[3];
  s.s10 += l1[0] + l1[1];
  s.s11 += l1[2] + l1[3];
#endif
  mac2x2_scalar(x0, x1, wt0, wt1, tail, s.s00, s.s01, s.s10, s.s11);
  acc[0] = s.s00;
  acc[1] = s.s01;
  acc[2] = s.s10;
  acc[3] = s.s11;
}

// dot2_s8_s16 over the pixel pairs of a run of n pixels for an input depth N known at
// compile time (no loop set-up per pair); returns the pixels done (n rounded down to even).
template <int N>
int32_t dot_pairs_fixed(const int8_t* x, int32_t n, int32_t offset, const int16_t* w, int32_t* acc) {
  int32_t i = 0;
  for (; i + 2 <= n; i += 2, x += 2 * N) {
    int32_t s0 = 0, s1 = 0;
#ifdef TT_SMLAD
    const int32_t off2 = pack_offset2(offset);
#pragma GCC unroll 16
    for (int32_t k = 0; k < N; k += 4) {
      const int32_t wa = static_cast<int32_t>(load_u32(w + k)), wb = static_cast<int32_t>(load_u32(w + k + 2));
      const uint32_t u0 = load_u32(x + k), u1 = load_u32(x + N + k);
      s0 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u0)), wa, s0);
      s0 = __smlad(sxtab16_ror8(off2, u0), wb, s0);
      s1 = __smlad(__sxtab16(off2, static_cast<int8x4_t>(u1)), wa, s1);
      s1 = __smlad(sxtab16_ror8(off2, u1), wb, s1);
    }
#else
    for (int32_t k = 0; k < N; ++k) {  // weights in natural order off the Cortex-M4 (weight_lane)
      s0 += (x[k] + offset) * w[k];
      s1 += (x[N + k] + offset) * w[k];
    }
#endif
    acc[i] = s0;
    acc[i + 1] = s1;
  }
  return i;
}

// The pixel pairs of a run of n pixels of depth 4 * G (no tail) by two weight rows, G known
// at compile time (no loop set-up per pair), the folded offsets f0 / f1 as the sums' start;
// returns the pixels done (n rounded down to even).
template <int G>
int32_t pairs_2x2_fixed(const int8_t* x, int32_t n, const int16_t* wq, int32_t f0, int32_t f1, int32_t* acc0,
                        int32_t* acc1) {
  int32_t i = 0;
  for (; i + 2 <= n; i += 2, x += 8 * G) {
    int32_t a[4];
    dot2x2_folded<G>(x, x + 4 * G, wq, G, nullptr, nullptr, 0, a, f0, f1);
    acc0[i] = a[0];
    acc1[i] = a[1];
    acc0[i + 1] = a[2];
    acc1[i + 1] = a[3];
  }
  return i;
}

// Where weight q (0..3) of a group of four goes in the expanded rows of the pointwise paths:
// SMLAD order on the Cortex-M4 (the order SXTB16 splits input words into), natural order
// elsewhere (the portable and SSE2 loops read inputs in order).
inline int32_t weight_lane(int32_t q) {
#ifdef TT_SMLAD
  return q == 1 ? 2 : (q == 2 ? 1 : q);
#else
  return q;
#endif
}

// Weight row of output channel oc as int16 with the trained channels merged in: the groups
// of four input channels in weight_lane order, group g at grp + gstride * g, the last ic % 4
// channels in natural order at tail. Returns the row's sum (for a folded input offset).
// Weights row[0 .. 4 * groups) as int16 groups of four in weight_lane order, group g at
// d + gstride * g; returns their sum.
int32_t expand_weight_groups(const int8_t* row, int32_t groups, int16_t* d, int32_t gstride) {
  int32_t sum = 0;
  for (int32_t g = 0; g < groups; ++g, d += gstride) {
#ifdef TT_SMLAD
    const uint32_t u = load_u32(row + 4 * g);
    const int32_t a = __sxtb16(static_cast<int8x4_t>(u)), b = sxtb16_ror8(u);  // (w0, w2), (w1, w3)
    memcpy(d, &a, 4);
    memcpy(d + 2, &b, 4);
    sum = __smlad(a, 0x00010001, __smlad(b, 0x00010001, sum));
#else
    for (int32_t q = 0; q < 4; ++q) {
      d[weight_lane(q)] = row[4 * g + q];
      sum += row[4 * g + q];
    }
#endif
  }
  return sum;
}

int32_t expand_weight_row(const ConvCore& p, int32_t oc, int16_t* grp, int32_t gstride, int16_t* tail) {
  const int8_t* row = p.w + static_cast<int64_t>(oc) * p.ic;
  const int32_t groups = p.ic / 4;
  int32_t sum = expand_weight_groups(row, groups, grp, gstride);
  for (int32_t c = 4 * groups; c < p.ic; ++c) {
    tail[c - 4 * groups] = row[c];
    sum += row[c];
  }
  if (p.sel) {
    const int8_t* ram = p.w_ram + static_cast<int64_t>(oc) * p.nsel;
    for (int32_t j = 0; j < p.nsel; ++j) {
      const int32_t c = core_load_i32(p.sel + 4 * j);
      *(c < 4 * groups ? grp + gstride * (c >> 2) + weight_lane(c & 3) : tail + (c - 4 * groups)) = ram[j];
      sum += ram[j] - row[c];
    }
  }
  return sum;
}

// Weight row of output channel oc with the trained channels merged in, int16 in weight_lane order.
void pointwise_weight_row(const ConvCore& p, int32_t oc, int16_t* w) {
  const int32_t groups = p.ic / 4;
  expand_weight_row(p, oc, w, 4, w + 4 * groups);
}

// The weight rows of output channels oc and oc + 1 (trained channels merged in) for
// dot2x2_folded: interleaved groups in wq[0 .. 8 * (ic / 4)), the last ic % 4 channels of
// each row after them; sums[r] = the row's sum (for the folded input offset).
void pointwise_weight_pair(const ConvCore& p, int32_t oc, int16_t* wq, int32_t* sums) {
  const int32_t groups = p.ic / 4, tail = p.ic - 4 * groups;
  for (int32_t r = 0; r < 2; ++r) sums[r] = expand_weight_row(p, oc + r, wq + 4 * r, 8, wq + 8 * groups + r * tail);
}

// A 1x1 convolution over `pixels` consecutive input pixels x[i * ic], output channels
// [oc0, oc0 + noc) with noc 1 or 2, pixel i's channel oc at out[i * out_stride + oc - oc0]:
// two pixels by two channels per pass, the requantization of each channel hoisted.
void pointwise_run(const ConvCore& p, int32_t oc0, int32_t noc, const int8_t* x, int32_t pixels, int8_t* out,
                   int32_t out_stride) {
  alignas(4) int16_t w[kMaxTaps];  // word-aligned: the asm blocks read it with LDRD
  int16_t* w0 = w;
  int32_t sums[2] = {0, 0};
  const int32_t groups = p.ic / 4, tail = p.ic - 4 * groups;
  const int16_t* wq = w;
  const int16_t* wt0 = w + 8 * groups;
  const int16_t* wt1 = wt0 + tail;
  if (noc == 2) pointwise_weight_pair(p, oc0, w, sums);
  else pointwise_weight_row(p, oc0, w0);
  const FastQuant q0 = fast_quant(p.tail, oc0), q1 = fast_quant(p.tail, oc0 + noc - 1);
  int32_t acc0[kPointwiseChunk], acc1[kPointwiseChunk];
  for (int32_t i0 = 0; i0 < pixels; i0 += kPointwiseChunk) {
    const int32_t n = pixels - i0 < kPointwiseChunk ? pixels - i0 : kPointwiseChunk;
    const int8_t* xi = x + static_cast<int64_t>(i0) * p.ic;
    int32_t a[4];
    int32_t i = 0;
    if (noc == 1) {
      switch (p.ic) {  // the input depths of the seed models' fused pointwise convolutions, fully unrolled
        case 8: i = dot_pairs_fixed<8>(xi, n, p.in_offset, w0, acc0); break;
        case 16: i = dot_pairs_fixed<16>(xi, n, p.in_offset, w0, acc0); break;
        case 24: i = dot_pairs_fixed<24>(xi, n, p.in_offset, w0, acc0); break;
        case 32: i = dot_pairs_fixed<32>(xi, n, p.in_offset, w0, acc0); break;
        case 40: i = dot_pairs_fixed<40>(xi, n, p.in_offset, w0, acc0); break;
        default: break;
      }
      xi += static_cast<int64_t>(i) * p.ic;
      for (; i + 2 <= n; i += 2, xi += 2 * p.ic)
        dot2_s8_s16(xi, xi + p.ic, p.in_offset, w0, p.ic, &acc0[i], &acc0[i + 1]);
      if (i < n) dot2_s8_s16(xi, xi, p.in_offset, w0, p.ic, &acc0[i], &a[0]);
      requantize_run(p.tail, q0, acc0, n, out + static_cast<int64_t>(i0) * out_stride, out_stride);
      continue;
    }
    // sum (x + offset) * w = sum x * w + offset * sum w: exact in int32 for any int8 window
    // of up to kMaxTaps values, so the offset leaves the inner loop.
    const int32_t f0 = p.in_offset * sums[0], f1 = p.in_offset * sums[1];
    if (tail == 0) {
      // Input depths 8 and 16 (the expansions of the seed models' first blocks): the block's
      // fixed cost outweighs its few MACs there, so those loops are unrolled; deeper inputs
      // amortize it (and unrolled, GCC spills the weights).
      if (groups == 2) i = pairs_2x2_fixed<2>(xi, n, wq, f0, f1, acc0, acc1);
      else if (groups == 4) i = pairs_2x2_fixed<4>(xi, n, wq, f0, f1, acc0, acc1);
      xi += static_cast<int64_t>(i) * p.ic;
    }
    for (; i + 2 <= n; i += 2, xi += 2 * p.ic) {
      dot2x2_folded(xi, xi + p.ic, wq, groups, wt0, wt1, tail, a, f0, f1);
      acc0[i] = a[0];
      acc1[i] = a[1];
      acc0[i + 1] = a[2];
      acc1[i + 1] = a[3];
    }
    if (i < n) {
      dot2x2_folded(xi, xi, wq, groups, wt0, wt1, tail, a, f0, f1);
      acc0[i] = a[0];
      acc1[i] = a[1];
    }
    int8_t* o = out + static_cast<int64_t>(i0) * out_stride;
    requantize_run(p.tail, q0, acc0, n, o, out_stride);
    if (noc == 2) requantize_run(p.tail, q1, acc1, n, o + 1, out_stride);
  }
}

// Sums of two expanded windows (int16, SMLAD order) times two int8 weight rows:
// acc = {x0.w0, x0.w1, x1.w0, x1.w1}.
inline void dot2x2_s16_s8(const int16_t* x0, const int16_t* x1, const int8_t* w0, const int8_t* w1, int32_t n,
                          int32_t* acc) {
  int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0, i = 0;
#ifdef TT_SMLAD
  // In assembly: the compiler's scheduling hoists every load and spills; this order keeps
  // the 4 sums, 4 pointers, the count, 4 weight halfword pairs and one input word in the 14
  // registers: both rows' weights first, each input word used twice as soon as it is loaded.
  int32_t g = n >> 2;
  if (g > 0) {
    const int16_t* xa = x0;
    const int16_t* xb = x1;
    const int8_t* wa = w0;
    const int8_t* wb = w1;
    int32_t t0, t1, t2, t3, v;
    __asm__(
        "1:\n\t"
        "ldr %[t0], [%[wa]], #4\n\t"
        "ldr %[t2], [%[wb]], #4\n\t"
        "sxtb16 %[t1], %[t0], ror #8\n\t"
        "sxtb16 %[t0], %[t0]\n\t"
        "sxtb16 %[t3], %[t2], ror #8\n\t"
        "sxtb16 %[t2], %[t2]\n\t"
        "ldr %[v], [%[xa]], #4\n\t"
        "smlad %[s00], %[v], %[t0], %[s00]\n\t"
        "smlad %[s01], %[v], %[t2], %[s01]\n\t"
        "ldr %[v], [%[xa]], #4\n\t"
        "smlad %[s00], %[v], %[t1], %[s00]\n\t"
        "smlad %[s01], %[v], %[t3], %[s01]\n\t"
        "ldr %[v], [%[xb]], #4\n\t"
        "smlad %[s10], %[v], %[t0], %[s10]\n\t"
        "smlad %[s11], %[v], %[t2], %[s11]\n\t"
        "ldr %[v], [%[xb]], #4\n\t"
        "smlad %[s10], %[v], %[t1], %[s10]\n\t"
        "smlad %[s11], %[v], %[t3], %[s11]\n\t"
        "subs %[g], %[g], #1\n\t"
        "bne 1b"
        : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [xa] "+r"(xa), [xb] "+r"(xb),
          [wa] "+r"(wa), [wb] "+r"(wb), [g] "+r"(g), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2),
          [t3] "=&r"(t3), [v] "=&r"(v)
        :
        : "cc", "memory");
  }
  i = n & ~3;
#elif defined(__SSE2__)
  // x86-64 (the host library): eight window values (two groups in SMLAD order: t, t+2, t+1,
  // t+3) per pass; each weight row's eight bytes widened to int16 and put in the same order
  // (PSHUFLW / PSHUFHW 0, 2, 1, 3), then PMADDWD sums the pairs.
  __m128i a00 = _mm_setzero_si128(), a01 = a00, a10 = a00, a11 = a00;
  for (; i + 8 <= n; i += 8) {
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x0 + i));
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x1 + i));
    __m128i u0 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w0 + i));
    __m128i u1 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w1 + i));
    u0 = _mm_srai_epi16(_mm_unpacklo_epi8(u0, u0), 8);
    u1 = _mm_srai_epi16(_mm_unpacklo_epi8(u1, u1), 8);
    u0 = _mm_shufflehi_epi16(_mm_shufflelo_epi16(u0, _MM_SHUFFLE(3, 1, 2, 0)), _MM_SHUFFLE(3, 1, 2, 0));
    u1 = _mm_shufflehi_epi16(_mm_shufflelo_epi16(u1, _MM_SHUFFLE(3, 1, 2, 0)), _MM_SHUFFLE(3, 1, 2, 0));
    a00 = _mm_add_epi32(a00, _mm_madd_epi16(v0, u0));
    a01 = _mm_add_epi32(a01, _mm_madd_epi16(v0, u1));
    a10 = _mm_add_epi32(a10, _mm_madd_epi16(v1, u0));
    a11 = _mm_add_epi32(a11, _mm_madd_epi16(v1, u1));
  }
  alignas(16) int32_t l[4][4];
  _mm_store_si128(reinterpret_cast<__m128i*>(l[0]), a00);
  _mm_store_si128(reinterpret_cast<__m128i*>(l[1]), a01);
  _mm_store_si128(reinterpret_cast<__m128i*>(l[2]), a10);
  _mm_store_si128(reinterpret_cast<__m128i*>(l[3]), a11);
  s00 = l[0][0] + l[0][1] + l[0][2] + l[0][3];
  s01 = l[1][0] + l[1][1] + l[1][2] + l[1][3];
  s10 = l[2][0] + l[2][1] + l[2][2] + l[2][3];
  s11 = l[3][0] + l[3][1] + l[3][2] + l[3][3];
#endif
#ifndef TT_SMLAD
  for (; i + 4 <= n; i += 4) {
    for (int32_t k = 0; k < 4; ++k) {
      const int32_t j = k == 1 ? 2 : (k == 2 ? 1 : k);  // SMLAD order of the windows
      s00 += x0[i + k] * w0[i + j];
      s01 += x0[i + k] * w1[i + j];
      s10 += x1[i + k] * w0[i + j];
      s11 += x1[i + k] * w1[i + j];
    }
  }
#endif
  mac2x2_scalar(x0 + i, x1 + i, w0 + i, w1 + i, n - i, s00, s01, s10, s11);
  acc[0] = s00;
  acc[1] = s01;
  acc[2] = s10;
  acc[3] = s11;
}

// conv_rows for any window of at most kWindowBuf / 2 taps: the windows of a run of output
// pixels expanded once (offset int16, SMLAD order), then two output channels by two pixels
// per pass over them, each channel's requantization hoisted out of the run.
void window_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out) {
  const int32_t n = p.kh * p.kw * p.ic;
  // A short window whose length is not a multiple of 4 (the first convolution's 27 taps) is
  // padded with zero taps to one, its weight rows copied with zeros after them: no scalar
  // end in the inner loop.
  const int32_t np = n % 4 != 0 && n <= kPadTaps ? (n + 3) & ~3 : n;
  int32_t run = kWindowBuf / np;
  if (run > kPointwiseChunk) run = kPointwiseChunk;
  int16_t buf[kWindowBuf];
  int32_t acc0[kPointwiseChunk], acc1[kPointwiseChunk];
  alignas(4) int8_t wpad[2][kPadTaps];
  const int32_t total = (oy1 - oy0) * p.ow;
  for (int32_t i0 = 0; i0 < total; i0 += run) {
    const int32_t cnt = total - i0 < run ? total - i0 : run;
    for (int32_t k = 0; k < cnt; ++k) {
      const int32_t i = i0 + k;
      int16_t* win = buf + k * np;
      expand_window(p, oy0 + i / p.ow, i % p.ow, win);
      if (np != n) {  // zeros after the natural-order tail, then that last group in SMLAD order
        for (int32_t t = n; t < np; ++t) win[t] = 0;
        const int16_t t1 = win[np - 3];
        win[np - 3] = win[np - 2];
        win[np - 2] = t1;
      }
    }
    int8_t* o = out + static_cast<int64_t>(i0) * p.oc;
    for (int32_t oc = 0; oc < p.oc; oc += 2) {
      const int32_t oc1 = oc + 1 < p.oc ? oc + 1 : oc;  // an odd last channel computed twice, written once
      const int8_t* w0 = p.w + static_cast<int64_t>(oc) * n;
      const int8_t* w1 = p.w + static_cast<int64_t>(oc1) * n;
      if (np != n) {
        for (int32_t t = 0; t < np; ++t) {
          wpad[0][t] = t < n ? w0[t] : 0;
          wpad[1][t] = t < n ? w1[t] : 0;
        }
        w0 = wpad[0];
        w1 = wpad[1];
      }
      int32_t a[4];
      int32_t k = 0;
      for (; k + 2 <= cnt; k += 2) {
        dot2x2_s16_s8(buf + k * np, buf + (k + 1) * np, w0, w1, np, a);
        acc0[k] = a[0];
        acc1[k] = a[1];
        acc0[k + 1] = a[2];
        acc1[k + 1] = a[3];
      }
      if (k < cnt) {
        dot2x2_s16_s8(buf + k * np, buf + k * np, w0, w1, np, a);
        acc0[k] = a[0];
        acc1[k] = a[1];
      }
      if (p.sel)
        for (int32_t j = 0; j < cnt; ++j) {
          acc0[j] += split_correction(p, buf + j * np, oc, np);
          acc1[j] += split_correction(p, buf + j * np, oc1, np);
        }
      requantize_run(p.tail, fast_quant(p.tail, oc), acc0, cnt, o + oc, p.oc);
      if (oc1 != oc) requantize_run(p.tail, fast_quant(p.tail, oc1), acc1, cnt, o + oc1, p.oc);
    }
  }
}

// n bytes from src to dst, a word at a time (the short rows of a window).
TT_KEEP_LOOPS inline void copy_bytes(int8_t* dst, const int8_t* src, int32_t n) {
  for (; n >= 4; n -= 4, dst += 4, src += 4) {
    const uint32_t v = load_u32(src);
    memcpy(dst, &v, 4);
  }
  for (; n > 0; --n) *dst++ = *src++;
}

// N bytes from src to dst, N known at compile time (a 3x3x3 window's rows: 9).
template <int N>
inline void copy_fixed(int8_t* dst, const int8_t* src) {
  for (int32_t i = 0; i + 4 <= N; i += 4) {
    const uint32_t v = load_u32(src + i);
    memcpy(dst + i, &v, 4);
  }
  for (int32_t i = N & ~3; i < N; ++i) dst[i] = src[i];
}

// The window of output pixel (oy, ox) as raw int8 in natural order (taps outside the input
// hold the input zero point zp, so x + offset is 0 there and they add nothing, as the
// reference skips them).
TT_KEEP_LOOPS void window_s8(const ConvCore& p, int32_t oy, int32_t ox, int8_t zp, int8_t* o) {
  const int32_t y0 = oy * p.stride_h - p.pad_top, x0 = ox * p.stride_w - p.pad_left;
  const int32_t row = p.kw * p.ic;
  const bool row_inside = p.dilation_w == 1 && x0 >= 0 && x0 + p.kw <= p.x_w;
  for (int32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t iy = y0 + ky * p.dilation_h;
    if (iy < 0 || iy >= p.x_h) {
      for (int32_t t = 0; t < row; ++t) o[t] = zp;
      o += row;
      continue;
    }
    const int8_t* line = p.x + static_cast<int64_t>(iy) * p.x_w * p.ic;
    if (row_inside) {  // the window row is kw * ic consecutive bytes
      copy_bytes(o, line + static_cast<int64_t>(x0) * p.ic, row);
      o += row;
      continue;
    }
    for (int32_t kx = 0; kx < p.kw; ++kx, o += p.ic) {
      const int32_t ix = x0 + kx * p.dilation_w;
      if (ix < 0 || ix >= p.x_w) {
        for (int32_t c = 0; c < p.ic; ++c) o[c] = zp;
      } else {
        copy_bytes(o, line + static_cast<int64_t>(ix) * p.ic, p.ic);
      }
    }
  }
}

// The windows (window_s8, padded with zeros to np bytes) of cnt output pixels from (oy, ox)
// on in row-major order into buf, np bytes apart. Every parameter a local: the byte stores
// could alias the core's fields otherwise, which the compiler would then reload per pixel.
TT_KEEP_LOOPS void short_windows(const ConvCore& p, int32_t oy, int32_t ox, int32_t cnt, int32_t np, int8_t* buf) {
  const int32_t ow = p.ow, kh = p.kh, kw = p.kw, ic = p.ic, x_w = p.x_w, x_h = p.x_h;
  const int32_t stride_w = p.stride_w, stride_h = p.stride_h, pad_left = p.pad_left, pad_top = p.pad_top;
  const int32_t dil_h = p.dilation_h, row = kw * ic, n = kh * row;
  const int8_t zp = static_cast<int8_t>(-p.in_offset);
  const int64_t step = static_cast<int64_t>(dil_h) * x_w * ic;  // between a window's rows
  const bool fixed = row == 9 && kh == 3;                        // 3x3x3
  // the output columns [a, b) whose window columns lie inside the input (dilation_w 1)
  const int32_t a = pad_left > 0 ? (pad_left + stride_w - 1) / stride_w : 0;
  const int32_t b = x_w - kw + pad_left >= 0 ? (x_w - kw + pad_left) / stride_w + 1 : 0;
  const int32_t pitch = stride_w * ic;  // input bytes between neighbouring windows
  int8_t* win = buf;
  for (int32_t k = 0; k < cnt;) {
    // this output row's pixels up to cnt; those in [a, b), when the window's rows lie inside
    // the input, are kh rows of kw * ic consecutive bytes each
    const int32_t end = ox + (cnt - k) < ow ? ox + (cnt - k) : ow;
    const int32_t y0 = oy * stride_h - pad_top;
    const bool rows_inside = y0 >= 0 && y0 + (kh - 1) * dil_h < x_h && p.dilation_w == 1;
    int32_t lo = end, hi = end;  // the inside run of this row's pixels
    if (rows_inside) {
      lo = ox > a ? ox : a;
      hi = end < b ? end : b;
      if (lo > hi) lo = hi = end;
    }
    for (; ox < lo; ++ox, ++k, win += np) window_s8(p, oy, ox, zp, win);
    if (ox < hi) {
      const int8_t* src = p.x + (static_cast<int64_t>(y0) * x_w + ox * stride_w - pad_left) * ic;
      const int32_t m = hi - ox;
      if (fixed) {
        for (int32_t i = 0; i < m; ++i, src += pitch, win += np) {
          copy_fixed<9>(win, src);
          copy_fixed<9>(win + 9, src + step);
          copy_fixed<9>(win + 18, src + 2 * step);
        }
      } else {
        for (int32_t i = 0; i < m; ++i, src += pitch, win += np)
          for (int32_t ky = 0; ky < kh; ++ky) copy_bytes(win + ky * row, src + ky * step, row);
      }
      ox += m;
      k += m;
    }
    for (; ox < end; ++ox, ++k, win += np) window_s8(p, oy, ox, zp, win);
    if (ox == ow) {
      ox = 0;
      ++oy;
    }
  }
  for (int32_t k = 0; np != n && k < cnt; ++k)
    for (int32_t t = n; t < np; ++t) buf[k * np + t] = 0;  // zero weights there
}

// conv_rows for a short window (at most kPadTaps taps: the first convolution's 3x3x3) without
// split channels: each pixel's window copied once as raw int8 (window_s8), padded with zero
// taps to a multiple of four, then the pointwise path's 2x2 blocks (dot2x2_folded: the input
// offset folded into each channel's constant) over those windows as if they were pixels of
// a 1x1 convolution. False (nothing written) where it does not apply: window_rows' case.
// Channels [oc0, oc0 + 2 * pairs) (an odd last channel's pair repeats it) of a short window
// as dot2x2_folded's weight pairs: pair j's interleaved rows at wq + 2 * np * j, zero weights
// after the n taps; f[j]: the folded input offsets of pair j's two rows.
void short_window_weights(const ConvCore& p, int32_t oc0, int32_t pairs, int32_t np, int16_t* wq, int32_t* f) {
  const int32_t n = p.kh * p.kw * p.ic;
  for (int32_t r = 0; r < 2 * pairs; ++r) {
    const int32_t oc = oc0 + r < p.oc ? oc0 + r : p.oc - 1;
    const int8_t* w = p.w + static_cast<int64_t>(oc) * n;
    int16_t* d = wq + 2 * np * (r / 2) + 4 * (r % 2);
    int32_t sum = expand_weight_groups(w, n / 4, d, 8);
    if (np != n) {  // the last group: the window's last n % 4 taps, then zeros
      int16_t* last = d + 8 * (n / 4);
      for (int32_t q = 0; q < 4; ++q) {
        const int32_t t = 4 * (n / 4) + q, v = t < n ? w[t] : 0;
        last[weight_lane(q)] = static_cast<int16_t>(v);
        sum += v;
      }
    }
    f[r] = p.in_offset * sum;
  }
}

bool short_window_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out) {
  const int32_t n = p.kh * p.kw * p.ic;
  const int32_t np = (n + 3) & ~3, groups = np / 4;
  if (n > kPadTaps || p.sel || p.in_offset < -127 || p.in_offset > 128) return false;
  // Expanded weights of up to `cap` channel pairs on the stack (1 KB): all of them once per
  // call where they fit (the seed models' first convolutions: 16 channels), else a chunk of
  // pairs at a time for each run of pixels.
  constexpr int32_t kWeights = 512;
  constexpr int32_t kMaxPairs = 32;
  const int32_t cap = kWeights / (2 * np) < kMaxPairs ? kWeights / (2 * np) : kMaxPairs;
  const int32_t pairs = (p.oc + 1) / 2;
  const bool once = pairs <= cap;
  alignas(4) int16_t wq[kWeights];
  int32_t f[2 * kMaxPairs];
  if (once) short_window_weights(p, 0, pairs, np, wq, f);
  // The windows of a run of pixels on the stack (2 KB): with the weights, a frame below
  // dw_channel's, which the same band chains run.
  constexpr int32_t kBufBytes = 2048;
  const int32_t run = kBufBytes / np < kPointwiseChunk ? kBufBytes / np : kPointwiseChunk;
  alignas(4) int8_t buf[kBufBytes];
  int32_t acc0[kPointwiseChunk], acc1[kPointwiseChunk];
  const int32_t total = (oy1 - oy0) * p.ow;
  for (int32_t i0 = 0; i0 < total; i0 += run) {
    const int32_t cnt = total - i0 < run ? total - i0 : run;
    short_windows(p, i0 / p.ow + oy0, i0 % p.ow, cnt, np, buf);
    int8_t* o = out + static_cast<int64_t>(i0) * p.oc;
    for (int32_t j0 = 0; j0 < pairs; j0 += cap) {
      const int32_t chunk = pairs - j0 < cap ? pairs - j0 : cap;
      if (!once) short_window_weights(p, 2 * j0, chunk, np, wq, f);
      for (int32_t j = 0; j < chunk; ++j) {
        const int32_t oc = 2 * (j0 + j);
        const int32_t oc1 = oc + 1 < p.oc ? oc + 1 : oc;  // an odd last channel computed twice, written once
        const int16_t* w = wq + 2 * np * (once ? j0 + j : j);
        const int32_t f0 = f[2 * (once ? j0 + j : j)], f1 = f[2 * (once ? j0 + j : j) + 1];
        int32_t a[4];
        // the windows are np = 4 * groups bytes apart: pixels of a 1x1 convolution of depth np
        int32_t k = groups == 7 ? pairs_2x2_fixed<7>(buf, cnt, w, f0, f1, acc0, acc1) : 0;
        for (; k + 2 <= cnt; k += 2) {
          const int8_t* x0 = buf + k * np;
          dot2x2_folded(x0, x0 + np, w, groups, nullptr, nullptr, 0, a, f0, f1);
          acc0[k] = a[0];
          acc1[k] = a[1];
          acc0[k + 1] = a[2];
          acc1[k + 1] = a[3];
        }
        if (k < cnt) {
          dot2x2_folded(buf + k * np, buf + k * np, w, groups, nullptr, nullptr, 0, a, f0, f1);
          acc0[k] = a[0];
          acc1[k] = a[1];
        }
        requantize_run(p.tail, fast_quant(p.tail, oc), acc0, cnt, o + oc, p.oc);
        if (oc1 != oc) requantize_run(p.tail, fast_quant(p.tail, oc1), acc1, cnt, o + oc1, p.oc);
      }
    }
  }
  return true;
}

// Whether conv_rows can treat the convolution as a matrix product over consecutive pixels.
bool plain_pointwise(const ConvCore& p) {
  return p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_top == 0 && p.pad_left == 0 &&
         p.ow == p.x_w && p.oh <= p.x_h && 2 * p.ic <= kMaxTaps;
}

}  // namespace

void conv_pixels(const ConvCore& p, int32_t i0, int32_t n, int8_t* out) {
  if (!plain_pointwise(p)) {
    for (int32_t i = i0; i < i0 + n; ++i) conv_pixel(p, i / p.ow, i % p.ow, out + static_cast<int64_t>(i - i0) * p.oc);
    return;
  }
  const int8_t* x = p.x + static_cast<int64_t>(i0) * p.ic;
  for (int32_t oc = 0; oc < p.oc; oc += 2) pointwise_run(p, oc, p.oc - oc >= 2 ? 2 : 1, x, n, out + oc, p.oc);
}

void conv_pointwise_channels(const ConvCore& p, int32_t oc0, int32_t n, int8_t* out, int32_t out_stride) {
  if (p.ic > kMaxTaps || p.kh != 1 || p.kw != 1) {
    reference::conv_pointwise_channels(p, oc0, n, out, out_stride);
    return;
  }
  int32_t oc = oc0;
  for (; oc + 2 <= oc0 + n; oc += 2) pointwise_run(p, oc, 2, p.x, p.oh * p.ow, out + (oc - oc0), out_stride);
  if (oc < oc0 + n) pointwise_run(p, oc, 1, p.x, p.oh * p.ow, out + (oc - oc0), out_stride);
}

namespace {

// Depthwise through a ring of padded input rows: each input row the windows touch is
// expanded once per channel into int16 (x + offset; 0 where the window leaves the
// input, which adds nothing, as the reference skips those taps), span_h rows kept.
// Every output pixel then runs the same branch-free window over those rows.
constexpr int32_t kDwRingElems = 1536;  // int16 on the stack (3 KB)
constexpr int32_t kDwChunk = 64;        // accumulators of a row requantized together

// One padded row: ring[j] = x(iy, j - pad_left) + offset inside the input, else 0.
// The zero loops stay loops: rows and margins are short, a memset call costs more than them
// (GCC would turn them into memset calls; clang has no such option and needs none here:
// TT_KEEP_LOOPS).
__attribute__((noinline)) TT_KEEP_LOOPS void dw_load_row(
    const DwCore& p, const int8_t* in, int32_t in_stride, int32_t iy, int32_t row_len, int16_t* dst) {
  if (iy < 0 || iy >= p.x_h) {
    for (int32_t j = 0; j < row_len; ++j) dst[j] = 0;
    return;
  }
  const int32_t lo = p.pad_left < row_len ? p.pad_left : row_len;  // first column inside the input
  int32_t hi = p.pad_left + p.x_w;                                 // one past the last
  if (hi > row_len) hi = row_len;
  int32_t j = 0;
  for (; j < lo; ++j) dst[j] = 0;
  const int8_t* src = in + (static_cast<int64_t>(iy) * p.x_w + (j - p.pad_left)) * in_stride;
  if (in_stride == 1) {
    expand_s8_natural(src, hi - j, p.in_offset, dst + j);
    j = hi;
  } else {
    for (; j < hi; ++j, src += in_stride) dst[j] = static_cast<int16_t>(*src + p.in_offset);
  }
  for (; j < row_len; ++j) dst[j] = 0;
}

inline int32_t pack_pair(int32_t lo, int32_t hi) {
  return static_cast<int32_t>((static_cast<uint32_t>(lo) & 0xFFFFu) | (static_cast<uint32_t>(hi) << 16));
}

// Sum over a K x K undilated window starting at column c of rows r[0..K):
// pairs of taps by SMLAD (wp: K/2 packed weight pairs per row), the odd last tap by MLA.
template <int K>
inline int32_t dw_window(const int16_t* const* r, int32_t c, const int32_t* wp, const int32_t* wl) {
  int32_t acc = 0;
#pragma GCC unroll 8
  for (int32_t ky = 0; ky < K; ++ky) {
    const int16_t* x = r[ky] + c;
#pragma GCC unroll 4
    for (int32_t k = 0; k < K / 2; ++k) {
#ifdef TT_SMLAD
      acc = __smlad(static_cast<int32_t>(load_u32(x + 2 * k)), wp[ky * (K / 2) + k], acc);
#else
      acc += x[2 * k] * static_cast<int16_t>(wp[ky * (K / 2) + k]) + x[2 * k + 1] * (wp[ky * (K / 2) + k] >> 16);
#endif
    }
    acc += x[K - 1] * wl[ky];
  }
  return acc;
}

// Packed weights of a K x K undilated window: per row K/2 SMLAD pairs and the last tap.
struct DwPacked {
  int32_t wp[7 * 3], wl[7];
};
template <int K>
void dw_pack(const int32_t* wv, DwPacked* w) {
  for (int32_t ky = 0; ky < K; ++ky) {
    for (int32_t k = 0; k < K / 2; ++k) w->wp[ky * (K / 2) + k] = pack_pair(wv[ky * K + 2 * k], wv[ky * K + 2 * k + 1]);
    w->wl[ky] = wv[ky * K + K - 1];
  }
}

// Sums of m consecutive outputs of one row (window columns c0, c0 + stride_w, ...) into acc.
template <int K>
void dw_run_fixed(const int16_t* const* rows, const DwPacked& w, int32_t c0, int32_t stride_w, int32_t m,
                  int32_t* acc) {
  const int16_t* r[K];
  for (int32_t ky = 0; ky < K; ++ky) r[ky] = rows[ky];
  for (int32_t i = 0, c = c0; i < m; ++i, c += stride_w) acc[i] = dw_window<K>(r, c, w.wp, w.wl);
}

#ifdef TT_SMLAD
// One row of dw3_pairs: p = (x[c], x[c+1]) for the first output, q = (x[c+S], x[c+S+1]) for
// the second; the third tap x[c+2] is t's low half (S == 1, t = (x[c+2], x[c+3])) or q's
// (S == 2); the row's third weight is w2's top half when kTop, else its bottom half.
template <int S, bool kTop>
inline void dw3_row(const int16_t* r, int32_t w01, int32_t w2, int32_t& o0, int32_t& o1) {
  const int32_t p = static_cast<int32_t>(load_u32(r)), q = static_cast<int32_t>(load_u32(r + S));
  o0 = __smlad(p, w01, o0);
  o1 = __smlad(q, w01, o1);
  const int32_t t = S == 1 ? static_cast<int32_t>(load_u32(r + 2)) : q;
  const int32_t last = S == 1 ? t : r[4];  // the second output's third tap in its low half (S == 2)
  if (kTop) {
    o0 = __smlabt(t, w2, o0);
    o1 = S == 1 ? __smlatt(last, w2, o1) : __smlabt(last, w2, o1);
  } else {
    o0 = __smlabb(t, w2, o0);
    o1 = S == 1 ? __smlatb(last, w2, o1) : __smlabb(last, w2, o1);
  }
}
#endif

// 3x3 undilated, stride S (1 or 2): two outputs per pass (window columns c, c + S of rows
// r0..r2, from column 0), npairs passes into acc[0 .. 2 * npairs). Weights: w01[ky] the
// packed pair (w[ky][0], w[ky][1]); w2a = (w[0][2], w[1][2]) and w2b = (w[2][2], -) packed,
// so that every weight stays in a register (no spills in the loop).
template <int S>
__attribute__((noinline)) void dw3_pairs(const int16_t* r0, const int16_t* r1, const int16_t* r2, int32_t npairs,
                                         int32_t w01_0, int32_t w01_1, int32_t w01_2, int32_t w2a, int32_t w2b,
                                         int32_t* acc) {
  for (int32_t i = 0; i < npairs; ++i, r0 += 2 * S, r1 += 2 * S, r2 += 2 * S, acc += 2) {
#ifdef TT_SMLAD
    int32_t o0 = 0, o1 = 0;
    dw3_row<S, false>(r0, w01_0, w2a, o0, o1);
    dw3_row<S, true>(r1, w01_1, w2a, o0, o1);
    dw3_row<S, false>(r2, w01_2, w2b, o0, o1);
    acc[0] = o0;
    acc[1] = o1;
#else
    const int16_t* r[3] = {r0, r1, r2};
    const int32_t w01[3] = {w01_0, w01_1, w01_2};
    const int32_t w2[3] = {static_cast<int16_t>(w2a), w2a >> 16, static_cast<int16_t>(w2b)};
    for (int32_t k = 0; k < 2; ++k) {
      int32_t a = 0;
      for (int32_t ky = 0; ky < 3; ++ky) {
        const int16_t* x = r[ky] + k * S;
        a += x[0] * static_cast<int16_t>(w01[ky]) + x[1] * (w01[ky] >> 16) + x[2] * w2[ky];
      }
      acc[k] = a;
    }
#endif
  }
}

// dw_run_fixed<3> for strides 1 and 2: pairs of outputs by dw3_pairs, an odd last one alone.
void dw3_run(const int16_t* const* rows, const DwPacked& w, int32_t c0, int32_t stride_w, int32_t m, int32_t* acc) {
  const int32_t pairs = m / 2;
  const int32_t w2a = pack_pair(w.wl[0], w.wl[1]), w2b = pack_pair(w.wl[2], 0);
  if (stride_w == 1)
    dw3_pairs<1>(rows[0] + c0, rows[1] + c0, rows[2] + c0, pairs, w.wp[0], w.wp[1], w.wp[2], w2a, w2b, acc);
  else
    dw3_pairs<2>(rows[0] + c0, rows[1] + c0, rows[2] + c0, pairs, w.wp[0], w.wp[1], w.wp[2], w2a, w2b, acc);
  if (m & 1) {
    const int16_t* r[3] = {rows[0], rows[1], rows[2]};
    acc[m - 1] = dw_window<3>(r, c0 + (m - 1) * stride_w, w.wp, w.wl);
  }
}

// K x K undilated (K = 5, 7), stride S (1 or 2): two outputs per pass (window columns c,
// c + S), npairs passes into acc[0 .. 2 * npairs); the weights as dw_window's. With S == 2
// the second output's pairs are the first's shifted by one pair (the same loads).
template <int K, int S>
__attribute__((noinline)) void dwk_pairs(const int16_t* const* rows, int32_t c0, int32_t npairs, const DwPacked& w,
                                         int32_t* acc) {
  const int16_t* r[K];
  for (int32_t ky = 0; ky < K; ++ky) r[ky] = rows[ky] + c0;
  for (int32_t i = 0; i < npairs; ++i, acc += 2) {
    int32_t o0 = 0, o1 = 0;
#pragma GCC unroll 8
    for (int32_t ky = 0; ky < K; ++ky) {
      const int16_t* x = r[ky] + 2 * S * i;
#pragma GCC unroll 4
      for (int32_t k = 0; k < K / 2; ++k) {
        const int32_t wk = w.wp[ky * (K / 2) + k];
#ifdef TT_SMLAD
        o0 = __smlad(static_cast<int32_t>(load_u32(x + 2 * k)), wk, o0);
        o1 = __smlad(static_cast<int32_t>(load_u32(x + S + 2 * k)), wk, o1);
#else
        o0 += x[2 * k] * static_cast<int16_t>(wk) + x[2 * k + 1] * (wk >> 16);
        o1 += x[S + 2 * k] * static_cast<int16_t>(wk) + x[S + 2 * k + 1] * (wk >> 16);
#endif
      }
      o0 += x[K - 1] * w.wl[ky];
      o1 += x[S + K - 1] * w.wl[ky];
    }
    acc[0] = o0;
    acc[1] = o1;
  }
}

// dw_run_fixed<K> (K = 5, 7) for strides 1 and 2: pairs by dwk_pairs, an odd last output alone.
template <int K>
void dwk_run(const int16_t* const* rows, const DwPacked& w, int32_t c0, int32_t stride_w, int32_t m, int32_t* acc) {
  if (stride_w == 1) dwk_pairs<K, 1>(rows, c0, m / 2, w, acc);
  else dwk_pairs<K, 2>(rows, c0, m / 2, w, acc);
  if (m & 1) {
    const int16_t* r[K];
    for (int32_t ky = 0; ky < K; ++ky) r[ky] = rows[ky];
    acc[m - 1] = dw_window<K>(r, c0 + (m - 1) * stride_w, w.wp, w.wl);
  }
}

#if !defined(TT_SMLAD) && defined(__SSE2__)
// x86-64 (the host library): four outputs at window columns c + S i (i = 0..3) of rows r[0..K)
// by PMADDWD. Per row, the tap pairs (k, k + 1) of the four outputs: at stride 1 interleaved
// from two 4-element loads (each reads exactly what its outputs use); at stride 2 they are the
// adjacent pairs of one 8-element load at c + k, which reaches one element past this block's
// last tap (dw_run_sse2 uses such a block only while another output follows in the row). The
// odd last tap against (w, 0).
template <int K, int S>
inline void dw_block4_sse2(const int16_t* const* r, int32_t c, const DwPacked& w, int32_t* acc) {
  static_assert(S == 1 || S == 2, "stride 1 or 2");
  const auto pairs = [](const int16_t* x) {
    if (S == 2) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)),
                              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + 1)));
  };
  const auto single = [](const int16_t* x) {
    if (S == 2) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    return _mm_unpacklo_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)), _mm_setzero_si128());
  };
  __m128i sum = _mm_setzero_si128();
#pragma GCC unroll 7
  for (int32_t ky = 0; ky < K; ++ky) {
    const int16_t* x = r[ky] + c;
#pragma GCC unroll 3
    for (int32_t k = 0; k < K / 2; ++k)
      sum = _mm_add_epi32(sum, _mm_madd_epi16(pairs(x + 2 * k), _mm_set1_epi32(w.wp[ky * (K / 2) + k])));
    // at stride 2 the odd halves of this load meet 0 weights
    sum = _mm_add_epi32(sum, _mm_madd_epi16(single(x + K - 1), _mm_set1_epi32(w.wl[ky] & 0xFFFF)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(acc), sum);
}

// dw_run_fixed<K> at stride S (1, 2): blocks of four outputs, the rest one at a time.
template <int K, int S>
void dw_run_sse2(const int16_t* const* rows, const DwPacked& w, int32_t c0, int32_t m, int32_t* acc) {
  int32_t i = 0;
  for (; S == 1 ? i + 4 <= m : i + 4 < m; i += 4) dw_block4_sse2<K, S>(rows, c0 + S * i, w, acc + i);
  for (; i < m; ++i) acc[i] = dw_window<K>(rows, c0 + S * i, w.wp, w.wl);
}
#endif

void dw_run_generic(const DwCore& p, const int16_t* const* rows, const int32_t* wv, int32_t c0, int32_t m,
                    int32_t* acc) {
  for (int32_t i = 0, c = c0; i < m; ++i, c += p.stride_w) {
    int32_t a = 0;
    for (int32_t ky = 0; ky < p.kh; ++ky)
      for (int32_t kx = 0; kx < p.kw; ++kx) a += rows[ky][c + kx * p.dilation_w] * wv[ky * p.kw + kx];
    acc[i] = a;
  }
}

// Small planes, 3x3 stride 1: the whole padded plane in the ring (rows in order), every
// output of the plane as one run of dw3_pairs over the flattened rows (output (oy, ox) at flat
// oy * row_len + ox; the kw - 1 columns between rows are computed and dropped), compacted, then
// requantized in one call: the per-row set-up of dw_channel's ring loop dominates small planes.
// False (nothing done) when the plane or its flat run is too large.
constexpr int32_t kDwFlat = 80;  // flat outputs of one plane (8x8 with 3x3: 78)
__attribute__((noinline)) bool dw3_whole_plane(const DwCore& p, const FastQuant& q, const DwPacked& w,
                                               const int8_t* in, int32_t in_stride, int8_t* out, int32_t out_stride,
                                               int32_t row_len, int16_t* ring) {
  const int32_t rows_total = p.oh + 2, flat = (p.oh - 1) * row_len + p.ow;
  if (flat > kDwFlat || rows_total * row_len + 8 > kDwRingElems) return false;
  for (int32_t k = 0; k < rows_total; ++k) dw_load_row(p, in, in_stride, k - p.pad_top, row_len, ring + k * row_len);
  for (int32_t j = 0; j < 8; ++j) ring[rows_total * row_len + j] = 0;  // read by an odd last pair
  int32_t acc[kDwFlat + 2];
  const int32_t w2a = pack_pair(w.wl[0], w.wl[1]), w2b = pack_pair(w.wl[2], 0);
#if !defined(TT_SMLAD) && defined(__SSE2__)
  (void)w2a;
  (void)w2b;
  const int16_t* rows[3] = {ring, ring + row_len, ring + 2 * row_len};
  dw_run_sse2<3, 1>(rows, w, 0, flat, acc);
#else
  dw3_pairs<1>(ring, ring + row_len, ring + 2 * row_len, (flat + 1) / 2, w.wp[0], w.wp[1], w.wp[2], w2a, w2b, acc);
#endif
  for (int32_t oy = 1; oy < p.oh; ++oy)  // compact in place: destinations never pass their sources
    for (int32_t ox = 0; ox < p.ow; ++ox) acc[oy * p.ow + ox] = acc[oy * row_len + ox];
  requantize_run(p.tail, q, acc, p.oh * p.ow, out, out_stride);
  return true;
}

}  // namespace

void dw_channel(const DwCore& p, int32_t oc, const int8_t* in, int32_t in_stride, int8_t* out, int32_t out_stride) {
  const int32_t taps = p.kh * p.kw;
  const int32_t span_h = (p.kh - 1) * p.dilation_h + 1;
  const int32_t row_len = (p.ow - 1) * p.stride_w + (p.kw - 1) * p.dilation_w + 1;
  if (taps > kMaxDwTaps || static_cast<int64_t>(span_h) * row_len > kDwRingElems || p.oh < 1 || p.ow < 1) {
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
  int32_t wv[kMaxDwTaps];
  for (int32_t t = 0; t < taps; ++t) wv[t] = w[t * wstride];
  const FastQuant q = fast_quant(p.tail, oc);
  int16_t ring[kDwRingElems];
  const bool square = p.kh == p.kw && p.dilation_h == 1 && p.dilation_w == 1;
  const int32_t fixed = square && (p.kw == 3 || p.kw == 5 || p.kw == 7) ? p.kw : 0;
  DwPacked packed;
  if (fixed == 3) dw_pack<3>(wv, &packed);
  else if (fixed == 5) dw_pack<5>(wv, &packed);
  else if (fixed == 7) dw_pack<7>(wv, &packed);
  if (fixed == 3 && p.stride_h == 1 && p.stride_w == 1 &&
      dw3_whole_plane(p, q, packed, in, in_stride, out, out_stride, row_len, ring))
    return;
  // Stored input row iy = k - pad_top for ring row k >= 0, kept in slot k % span_h. The sums
  // of consecutive outputs (flat index oy * ow + ox) gather in acc and are requantized together.
  int32_t next_k = 0;
  const int16_t* rows[kMaxDwTaps];
  int32_t acc[kDwChunk];
  int32_t filled = 0;
  int64_t flushed = 0;  // flat index of acc[0]
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const int32_t k0 = oy * p.stride_h;
    for (int32_t k = next_k > k0 ? next_k : k0; k < k0 + span_h; ++k)
      dw_load_row(p, in, in_stride, k - p.pad_top, row_len, ring + (k % span_h) * row_len);
    next_k = k0 + span_h;
    for (int32_t ky = 0; ky < p.kh; ++ky) rows[ky] = ring + ((k0 + ky * p.dilation_h) % span_h) * row_len;
    for (int32_t ox = 0; ox < p.ow;) {
      const int32_t m = p.ow - ox < kDwChunk - filled ? p.ow - ox : kDwChunk - filled;
      const int32_t c0 = ox * p.stride_w;
#if !defined(TT_SMLAD) && defined(__SSE2__)
      if (fixed == 3 && p.stride_w == 1) dw_run_sse2<3, 1>(rows, packed, c0, m, acc + filled);
      else if (fixed == 5 && p.stride_w == 1) dw_run_sse2<5, 1>(rows, packed, c0, m, acc + filled);
      else if (fixed == 7 && p.stride_w == 1) dw_run_sse2<7, 1>(rows, packed, c0, m, acc + filled);
      else if (fixed == 3 && p.stride_w == 2) dw_run_sse2<3, 2>(rows, packed, c0, m, acc + filled);
      else if (fixed == 5 && p.stride_w == 2) dw_run_sse2<5, 2>(rows, packed, c0, m, acc + filled);
      else if (fixed == 7 && p.stride_w == 2) dw_run_sse2<7, 2>(rows, packed, c0, m, acc + filled);
      else
#endif
      if (fixed == 3 && p.stride_w <= 2) dw3_run(rows, packed, c0, p.stride_w, m, acc + filled);
      else if (fixed == 3) dw_run_fixed<3>(rows, packed, c0, p.stride_w, m, acc + filled);
      else if (fixed == 5 && p.stride_w <= 2) dwk_run<5>(rows, packed, c0, p.stride_w, m, acc + filled);
      else if (fixed == 7 && p.stride_w <= 2) dwk_run<7>(rows, packed, c0, p.stride_w, m, acc + filled);
      else if (fixed == 5) dw_run_fixed<5>(rows, packed, c0, p.stride_w, m, acc + filled);
      else if (fixed == 7) dw_run_fixed<7>(rows, packed, c0, p.stride_w, m, acc + filled);
      else dw_run_generic(p, rows, wv, c0, m, acc + filled);
      filled += m;
      ox += m;
      if (filled == kDwChunk) {
        requantize_run(p.tail, q, acc, filled, out + flushed * out_stride, out_stride);
        flushed += filled;
        filled = 0;
      }
    }
  }
  if (filled) requantize_run(p.tail, q, acc, filled, out + flushed * out_stride, out_stride);
}

#ifdef TT_SMLAD
namespace {

// Depthwise over a channel-interleaved input (depth multiplier 1), four channels at a time,
// K x K undilated windows (K = 3, 5, 7). The rows the windows touch are copied once into a
// ring of padded rows holding only the group's four channels (one 32-bit word per pixel),
// the padding filled with the input zero point: x + input_offset is then exactly 0 there,
// so every output runs the same branch-free window and the sums equal the reference's,
// which skips those taps. Per tap: one word load, SXTAB16 twice (the even and odd channels
// with the offset added), four SMLAxy against weights pre-split the same way once per group.
// Cortex-M4 only (dw_four_channel_path).
// Strided and small convolutions, where dw_channel expands 2-4 input values per output or
// spends its row set-up on a few outputs, get cheaper; a wide stride-1 plane costs about the same.
constexpr int32_t kDw4Chunk = 32;       // output pixels per group requantized together
constexpr int32_t kDw4RingWords = 768;  // the padded rows of a group, twice (3 KB on the stack)

struct Dw4Weights {
  int32_t pair[2 * 49];  // per tap t: [2t] = (w[c0], w[c0+2]) and [2t+1] = (w[c0+1], w[c0+3]) as int16 pairs
};

// Weights of channels c0..c0+3 (split trained channels from SRAM) as SMLAxy halfword pairs.
void dw4_weights(const DwCore& p, int32_t c0, Dw4Weights* w) {
  const int8_t* src[4];
  int32_t stride[4];
  for (int32_t k = 0; k < 4; ++k) {
    src[k] = p.w + c0 + k;
    stride[k] = p.oc;
    if (p.sel) {
      const int32_t j = split_slot(p.sel, p.nsel, c0 + k);
      if (j >= 0) {
        src[k] = p.w_ram + j;
        stride[k] = p.nsel;
      }
    }
  }
  const int32_t taps = p.kh * p.kw;
  for (int32_t t = 0; t < taps; ++t) {
    w->pair[2 * t] = pack_pair(src[0][t * stride[0]], src[2][t * stride[2]]);
    w->pair[2 * t + 1] = pack_pair(src[1][t * stride[1]], src[3][t * stride[3]]);
  }
}

// The four sums of one output whose window starts at word r of the first of K padded rows
// (row_bytes apart), into a[0], a[kDw4Chunk], a[2 kDw4Chunk], a[3 kDw4Chunk] (the group's
// accumulator columns). Defined for K = 3, 5, 7 below.
template <int K>
void dw4_window(const uint32_t* r, int32_t row_bytes, int32_t off2, const int32_t* w, int32_t* a);

// K x K (3, 5, 7) in one asm block: 12 registers, none spilled (the compiler's own schedule
// of the same operations hoists the loads and spills the accumulators).
#define TT_DW4_TAP(T, COL)                                       \
  "ldr %[v], [%[q], #" #COL " * 4]\n\t"                          \
  "ldrd %[we], %[wo], [%[w], #(" #T ") * 8]\n\t"                 \
  "sxtab16 %[e], %[off], %[v]\n\t"                               \
  "sxtab16 %[v], %[off], %[v], ror #8\n\t"                       \
  "smlabb %[s0], %[e], %[we], %[s0]\n\t"                         \
  "smlatt %[s2], %[e], %[we], %[s2]\n\t"                         \
  "smlabb %[s1], %[v], %[wo], %[s1]\n\t"                         \
  "smlatt %[s3], %[v], %[wo], %[s3]\n\t"
#define TT_DW4_ROW3(T) TT_DW4_TAP(T, 0) TT_DW4_TAP(T + 1, 1) TT_DW4_TAP(T + 2, 2)
#define TT_DW4_ROW5(T) TT_DW4_ROW3(T) TT_DW4_TAP(T + 3, 3) TT_DW4_TAP(T + 4, 4)
#define TT_DW4_ROW7(T) TT_DW4_ROW5(T) TT_DW4_TAP(T + 5, 5) TT_DW4_TAP(T + 6, 6)
#define TT_DW4_NEXT "add %[q], %[q], %[rs]\n\t"
#define TT_DW4_WINDOW(K, TEXT)                                                                                    \
  template <>                                                                                                    \
  inline void dw4_window<K>(const uint32_t* r, int32_t row_bytes, int32_t off2, const int32_t* w, int32_t* a) { \
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, e, we, wo;                                                           \
    uint32_t v;                                                                                                  \
    const uint32_t* q = r;                                                                                       \
    __asm__(TEXT                                                                                                 \
            : [s0] "+&r"(s0), [s1] "+&r"(s1), [s2] "+&r"(s2), [s3] "+&r"(s3), [v] "=&r"(v), [e] "=&r"(e),        \
              [we] "=&r"(we), [wo] "=&r"(wo), [q] "+&r"(q)                                                       \
            : [rs] "r"(row_bytes), [off] "r"(off2), [w] "r"(w)                                                   \
            : "memory");                                                                                         \
    a[0] = s0;                                                                                                   \
    a[kDw4Chunk] = s1;                                                                                           \
    a[2 * kDw4Chunk] = s2;                                                                                       \
    a[3 * kDw4Chunk] = s3;                                                                                       \
  }
TT_DW4_WINDOW(3, TT_DW4_ROW3(0) TT_DW4_NEXT TT_DW4_ROW3(3) TT_DW4_NEXT TT_DW4_ROW3(6))
TT_DW4_WINDOW(5, TT_DW4_ROW5(0) TT_DW4_NEXT TT_DW4_ROW5(5) TT_DW4_NEXT TT_DW4_ROW5(10) TT_DW4_NEXT TT_DW4_ROW5(15)
                     TT_DW4_NEXT TT_DW4_ROW5(20))
TT_DW4_WINDOW(7, TT_DW4_ROW7(0) TT_DW4_NEXT TT_DW4_ROW7(7) TT_DW4_NEXT TT_DW4_ROW7(14) TT_DW4_NEXT TT_DW4_ROW7(21)
                     TT_DW4_NEXT TT_DW4_ROW7(28) TT_DW4_NEXT TT_DW4_ROW7(35) TT_DW4_NEXT TT_DW4_ROW7(42))
#undef TT_DW4_WINDOW
#undef TT_DW4_NEXT
#undef TT_DW4_ROW7
#undef TT_DW4_ROW5
#undef TT_DW4_ROW3
#undef TT_DW4_TAP

// One padded row of the group, written to dst and to its twin dst2: [j] = the four channels
// of input pixel (iy, j - pad_left), or four zero points outside the input.
TT_KEEP_LOOPS void dw4_load_row(const DwCore& p, const int8_t* x, int32_t ic, int32_t iy, int32_t row_len,
                                uint32_t zp4, uint32_t* dst, uint32_t* dst2) {
  int32_t lo = row_len, hi = row_len;  // a row outside the input: all padding
  if (iy >= 0 && iy < p.x_h) {
    lo = p.pad_left < 0 ? 0 : (p.pad_left < row_len ? p.pad_left : row_len);
    hi = p.pad_left + p.x_w < row_len ? p.pad_left + p.x_w : row_len;
  }
  int32_t j = 0;
  for (; j < lo; ++j) dst[j] = dst2[j] = zp4;
  const int8_t* src = x + (static_cast<int64_t>(iy) * p.x_w + (j - p.pad_left)) * ic;
  for (; j < hi; ++j, src += ic) dst[j] = dst2[j] = load_u32(src);
  for (; j < row_len; ++j) dst[j] = dst2[j] = zp4;
}

// Channels [c0, c0 + 4) from x: channel c0 + k of pixel i at x[i * in_stride + k].
template <int K>
__attribute__((noinline)) void dw4_group(const DwCore& p, const int8_t* x, int32_t in_stride, int32_t c0,
                                         int32_t row_len, int8_t* out) {
  Dw4Weights w;
  dw4_weights(p, c0, &w);
  FastQuant q[4];
  for (int32_t k = 0; k < 4; ++k) q[k] = fast_quant(p.tail, c0 + k);
  const int32_t off2 = pack_offset2(p.in_offset);
  const uint32_t zp = static_cast<uint8_t>(-p.in_offset);
  const uint32_t zp4 = zp * 0x01010101u;
  // Ring row k (stored input row k - pad_top, as in dw_channel) in slot k % K
  // and again in slot k % K + K, so the K rows of any output row lie in order in memory.
  uint32_t ring[kDw4RingWords];
  const int32_t row_bytes = 4 * row_len;
  int32_t acc[4][kDw4Chunk];
  int32_t filled = 0, next_k = 0;
  int64_t flushed = 0;  // flat output index of acc[.][0]
  for (int32_t oy = 0; oy < p.oh; ++oy) {
    const int32_t k0 = oy * p.stride_h;
    for (int32_t k = next_k > k0 ? next_k : k0; k < k0 + K; ++k)
      dw4_load_row(p, x, in_stride, k - p.pad_top, row_len, zp4, ring + (k % K) * row_len,
                   ring + (k % K + K) * row_len);
    next_k = k0 + K;
    const uint32_t* r = ring + (k0 % K) * row_len;
    for (int32_t ox = 0; ox < p.ow; ++ox, r += p.stride_w) {
      dw4_window<K>(r, row_bytes, off2, w.pair, &acc[0][filled]);
      if (++filled == kDw4Chunk) {
        for (int32_t k = 0; k < 4; ++k)
          requantize_run(p.tail, q[k], acc[k], filled, out + flushed * p.oc + c0 + k, p.oc);
        flushed += filled;
        filled = 0;
      }
    }
  }
  if (filled)
    for (int32_t k = 0; k < 4; ++k) requantize_run(p.tail, q[k], acc[k], filled, out + flushed * p.oc + c0 + k, p.oc);
}

// The row length (words) of dw4_group's ring, or 0 when it does not apply (depth multiplier 1
// is the caller's): at least four channels, K x K undilated with K = 3, 5, 7, an input zero point inside int8
// and the ring within kDw4RingWords; and only where it is cheaper than dw_channel's planes
// (QEMU instruction counts per output, dw_channel -> this path: 3x3 stride 2 61 -> 48 and
// 91 -> 55, 3x3 on 4x4 88 -> 63, 5x5 99-105 -> 78-83, 7x7 on 8x8 150 -> 135 and on 4x4
// 237 -> 162); not for stride-1 rows of more than 16 outputs (3x3) or 8 (7x7), where
// dw_channel's planes are cheaper (3x3 on 64x64 36 vs 42, 7x7 on 16x16 119 vs 127).
int32_t dw4_row_len(const DwCore& p) {
  const int32_t k = p.kh;
  if (p.oc < 4 || p.kw != k || (k != 3 && k != 5 && k != 7) || p.dilation_h != 1 || p.dilation_w != 1) return 0;
  if (p.in_offset < -127 || p.in_offset > 128 || p.oh < 1 || p.ow < 1) return 0;
  const int64_t row_len = static_cast<int64_t>(p.ow - 1) * p.stride_w + k;
  if (row_len * 2 * k > kDw4RingWords) return 0;
  if (p.stride_h == 1 && p.stride_w == 1 && ((k == 3 && p.ow > 16) || (k == 7 && p.ow > 8))) return 0;
  return static_cast<int32_t>(row_len);
}

}  // namespace
#endif  // TT_SMLAD

// The four-channel path is the Cortex-M4's (SXTAB16 / SMLAxy); elsewhere the per-channel planes
// (on x86-64 with SSE2 runs) are as fast or faster.
bool dw_four_channel_path(const DwCore& p) {
#ifdef TT_SMLAD
  return dw4_row_len(p) != 0;
#else
  (void)p;
  return false;
#endif
}

bool dw_four_channels(const DwCore& p, int32_t c0, const int8_t* in, int32_t in_stride, int8_t* out) {
#ifdef TT_SMLAD
  const int32_t row_len = dw4_row_len(p);
  if (!row_len || c0 < 0 || c0 + 4 > p.oc) return false;
  if (p.kh == 3) dw4_group<3>(p, in, in_stride, c0, row_len, out);
  else if (p.kh == 5) dw4_group<5>(p, in, in_stride, c0, row_len, out);
  else dw4_group<7>(p, in, in_stride, c0, row_len, out);
  return true;
#else
  (void)p, (void)c0, (void)in, (void)in_stride, (void)out;
  return false;
#endif
}

void dw_interleaved(const DwCore& p, const int8_t* in, int32_t ic, int8_t* out) {
  const int32_t m = p.oc / ic;
  int32_t c = 0;
  if (m == 1)
    while (c + 4 <= p.oc && dw_four_channels(p, c, in + c, ic, out)) c += 4;
  for (; c < p.oc; ++c) dw_channel(p, c, in + c / m, ic, out + c, p.oc);
}

}  // namespace optimized
}  // namespace tt
