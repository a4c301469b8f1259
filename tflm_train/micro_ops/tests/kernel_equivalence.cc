// Optimized compute cores == reference compute cores, byte for byte, on random
// shapes (src/kernels/conv_core.h): odd and prime channel counts, kernel sizes 1-7
// (square and not), every stride 1-3, dilation 1-2, padding on every edge (any
// amount, as a virtual PAD gives), per-channel and per-tensor requantization,
// int8 and int32 shift tables, with and without bias, split trained channels,
// channel-interleaved inputs (dw_channel, and dw_interleaved with its four-channel path) and
// plane inputs (the training graph's in-place and fused depthwise modes) and depth multipliers.
//
// Built for the host (tests/test_kernel_equivalence.py) and for the Cortex-M4,
// where it runs in QEMU through semihosting (the SMLAD paths). Prints
//   TT kernels cases=<n> conv=<n> pointwise=<n> depthwise=<n> ok
// or the first mismatch, and exits non-zero on a mismatch.
// Argument (host) / define TT_CASES (firmware): the number of random cases.
#include <stdint.h>
#include <string.h>

#include "../src/kernels/conv_core.h"

#include "driver_util.h"

#ifndef TT_CASES
#define TT_CASES 300
#endif

namespace {

using tt_test::next_u32;
using tt_test::put_count;
int32_t uniform(int32_t lo, int32_t hi) { return lo + static_cast<int32_t>(next_u32() % static_cast<uint32_t>(hi - lo + 1)); }
template <typename T, int N>
T pick(const T (&v)[N]) { return v[next_u32() % N]; }

constexpr int32_t kMaxX = 14 * 14 * 40;
constexpr int32_t kMaxW = 40 * 7 * 7 * 40;
constexpr int32_t kMaxOut = 14 * 14 * 80;
alignas(4) int8_t g_x[kMaxX + 4];
alignas(4) int8_t g_w[kMaxW + 4];
alignas(4) int8_t g_wram[kMaxW + 4];
alignas(4) int8_t g_x4[4 * 14 * 14 + 4];  // four channels of an input plane, interleaved
alignas(4) uint8_t g_bias[4 * 1024];
alignas(4) uint8_t g_mult[4 * 1024];
alignas(4) uint8_t g_shift[4 * 1024];
alignas(4) uint8_t g_sel[4 * 128];
int8_t g_ref[kMaxOut + 64];
int8_t g_opt[kMaxOut + 64];

void put_i32(uint8_t* p, int32_t v) { memcpy(p, &v, 4); }

void fill(int8_t* p, int32_t n) {
  for (int32_t i = 0; i < n; ++i) p[i] = static_cast<int8_t>(next_u32() >> 24);
}

// Random requantization tail for `channels` output channels.
tt::RequantTail random_tail(int32_t channels) {
  tt::RequantTail t;
  t.per_channel = next_u32() & 1;
  t.shift_bytes = (next_u32() & 1) ? 4 : 1;
  const int32_t n = t.per_channel ? channels : 1;
  for (int32_t i = 0; i < n; ++i) {
    // mostly TFLite's [2^30, 2^31); also 0 (flushed), INT32_MIN, an unnormalized and a negative one
    const uint32_t kind = next_u32() % 16;
    put_i32(g_mult + 4 * i, kind == 0   ? 0
                            : kind == 1 ? static_cast<int32_t>(0x80000000u)
                            : kind == 2 ? static_cast<int32_t>(next_u32() >> (1 + next_u32() % 31))
                            : kind == 3 ? -static_cast<int32_t>(next_u32() >> 2)
                                        : static_cast<int32_t>((1u << 30) + (next_u32() >> 2)));
    const int32_t shift = uniform(-31, 3);
    if (t.shift_bytes == 4) put_i32(g_shift + 4 * i, shift); else g_shift[i] = static_cast<uint8_t>(static_cast<int8_t>(shift));
  }
  t.mult = g_mult;
  t.shift = g_shift;
  t.bias = nullptr;
  if (next_u32() & 1) {
    // Mostly small; sometimes anywhere in int32 (acc + bias then reaches the extremes and wraps,
    // where the requantization's 64-bit forms must still equal the reference).
    const bool wide = next_u32() % 4 == 0;
    for (int32_t i = 0; i < channels; ++i)
      put_i32(g_bias + 4 * i, wide ? static_cast<int32_t>(next_u32()) : uniform(-20000, 20000));
    t.bias = g_bias;
  }
  t.out_offset = next_u32() % 16 == 0 ? uniform(-100000, 100000) : uniform(-128, 127);  // beyond int8: corrupt
  t.act_min = (next_u32() & 1) ? -128 : uniform(-128, 0);
  t.act_max = (next_u32() & 1) ? 127 : uniform(t.act_min, 127);
  if (next_u32() % 16 == 0) {  // what only a corrupt model has: a range beyond int8, or an empty one
    t.act_min = uniform(-100000, 100);
    t.act_max = uniform(-100, 100000);
  }
  return t;
}

// A random sorted subset of [0, n) as an int32 list; returns its size (0: no split).
int32_t random_split(int32_t n) {
  if (next_u32() % 3 != 0) return 0;
  int32_t k = 0;
  for (int32_t c = 0; c < n && k < 80; ++c)
    if (next_u32() % 3 == 0) put_i32(g_sel + 4 * k++, c);
  return k;
}

// Output size and padding of a window: random total padding (any edge), as a virtual PAD gives.
bool window(int32_t in, int32_t k, int32_t stride, int32_t dilation, int32_t* out, int32_t* pad_before) {
  const int32_t span = (k - 1) * dilation + 1;
  const int32_t before = uniform(0, span - 1), after = uniform(0, span - 1);
  const int32_t total = in + before + after;
  if (total < span) return false;
  *out = (total - span) / stride + 1;
  *pad_before = before;
  return true;
}

bool same(const int8_t* a, const int8_t* b, int32_t n, const char* what, int32_t c) {
  for (int32_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) {
      TT_PRINT("TT mismatch ");
      TT_PRINT(what);
      char buf[64];
      int32_t v = c, k = 0;
      char d[16];
      do { d[k++] = static_cast<char>('0' + v % 10); v /= 10; } while (v && k < 15);
      int32_t j = 0;
      buf[j++] = ' ';
      while (k) buf[j++] = d[--k];
      buf[j] = 0;
      TT_PRINT(buf);
      TT_PRINT("\n");
      return false;
    }
  }
  return true;
}

const int32_t kChannels[] = {1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 17, 24, 31, 32, 40, 97};
const int32_t kKernels[] = {1, 1, 1, 2, 3, 3, 3, 5, 7};

bool conv_case(int32_t c) {
  tt::ConvCore p;
  p.ic = pick(kChannels);
  p.oc = pick(kChannels);
  p.kh = pick(kKernels);
  p.kw = (next_u32() & 3) ? p.kh : pick(kKernels);
  if ((next_u32() & 3) == 0) {  // a first convolution: 3x3 over 3 channels (the short-window path)
    p.ic = 3;
    p.kh = p.kw = 3;
  }
  p.stride_h = uniform(1, 3);
  p.stride_w = (next_u32() & 1) ? p.stride_h : uniform(1, 3);
  p.dilation_h = (next_u32() % 4 == 0) ? 2 : 1;
  p.dilation_w = (next_u32() % 4 == 0) ? 2 : 1;
  p.x_h = uniform(1, 14);
  p.x_w = uniform(1, 14);
  if (p.x_h * p.x_w * p.ic > kMaxX || p.oc * p.kh * p.kw * p.ic > kMaxW) return true;
  if (!window(p.x_h, p.kh, p.stride_h, p.dilation_h, &p.oh, &p.pad_top)) return true;
  if (!window(p.x_w, p.kw, p.stride_w, p.dilation_w, &p.ow, &p.pad_left)) return true;
  if (p.oh * p.ow * p.oc > kMaxOut) return true;
  p.in_offset = uniform(-127, 128);
  fill(g_x, p.x_h * p.x_w * p.ic);
  fill(g_w, p.oc * p.kh * p.kw * p.ic);
  p.x = g_x;
  p.w = g_w;
  p.nsel = random_split(p.ic);
  if (p.nsel) {
    p.sel = g_sel;
    fill(g_wram, p.oc * p.kh * p.kw * p.nsel);
    p.w_ram = g_wram;
  }
  p.tail = random_tail(p.oc);
  const int32_t n = p.oh * p.ow * p.oc;
  tt::reference::conv_rows(p, 0, p.oh, g_ref);
  tt::optimized::conv_rows(p, 0, p.oh, g_opt);
  if (!same(g_ref, g_opt, n, "conv_rows", c)) return false;
  {  // a run of pixels, as the in-place pixel layouts compute them
    const int32_t total = p.oh * p.ow, i0 = uniform(0, total - 1), m = uniform(1, total - i0);
    tt::optimized::conv_pixels(p, i0, m, g_opt);
    if (!same(g_ref + static_cast<int64_t>(i0) * p.oc, g_opt, m * p.oc, "conv_pixels", c)) return false;
  }
  {  // a band of rows, as the in-place row layouts compute them
    const int32_t oy0 = uniform(0, p.oh - 1), oy1 = uniform(oy0 + 1, p.oh);
    tt::optimized::conv_rows(p, oy0, oy1, g_opt);
    if (!same(g_ref + static_cast<int64_t>(oy0) * p.ow * p.oc, g_opt, (oy1 - oy0) * p.ow * p.oc, "conv_rows band", c))
      return false;
  }
  const int32_t oy = uniform(0, p.oh - 1), ox = uniform(0, p.ow - 1);
  tt::reference::conv_pixel(p, oy, ox, g_ref);
  tt::optimized::conv_pixel(p, oy, ox, g_opt);
  return same(g_ref, g_opt, p.oc, "conv_pixel", c);
}

bool pointwise_case(int32_t c) {
  tt::ConvCore p;
  p.ic = pick(kChannels);
  p.oc = pick(kChannels);
  p.x_h = p.oh = uniform(1, 14);
  p.x_w = p.ow = uniform(1, 14);
  if (p.x_h * p.x_w * p.ic > kMaxX) return true;
  p.in_offset = uniform(-127, 128);
  fill(g_x, p.x_h * p.x_w * p.ic);
  fill(g_w, p.oc * p.ic);
  p.x = g_x;
  p.w = g_w;
  p.nsel = random_split(p.ic);
  if (p.nsel) {
    p.sel = g_sel;
    fill(g_wram, p.oc * p.nsel);
    p.w_ram = g_wram;
  }
  p.tail = random_tail(p.oc);
  // one channel into a plane, or up to four interleaved (the fused depthwise's scratch)
  const int32_t n = 1 + static_cast<int32_t>(next_u32() % 4);
  for (int32_t oc = 0; oc < p.oc; oc += n) {
    const int32_t m = oc + n <= p.oc ? n : p.oc - oc;
    tt::reference::conv_pointwise_channels(p, oc, m, g_ref, n);
    tt::optimized::conv_pointwise_channels(p, oc, m, g_opt, n);
    for (int32_t i = 0; i < p.oh * p.ow; ++i)
      for (int32_t k = m; k < n; ++k) g_ref[i * n + k] = g_opt[i * n + k] = 0;  // unwritten lanes
    if (!same(g_ref, g_opt, p.oh * p.ow * n, "conv_pointwise_channels", c)) return false;
  }
  return true;
}

bool depthwise_case(int32_t c) {
  tt::DwCore p;
  const int32_t ic = pick(kChannels), m = (next_u32() % 4 == 0) ? uniform(2, 3) : 1;
  p.oc = ic * m;
  p.kh = pick(kKernels);
  p.kw = (next_u32() & 3) ? p.kh : pick(kKernels);
  p.stride_h = uniform(1, 3);
  p.stride_w = (next_u32() & 1) ? p.stride_h : uniform(1, 3);
  p.dilation_h = (next_u32() % 4 == 0) ? 2 : 1;
  p.dilation_w = (next_u32() % 4 == 0) ? 2 : 1;
  p.x_h = uniform(1, 14);
  p.x_w = uniform(1, 14);
  if (next_u32() % 4 == 0) {  // the small-plane 3x3 stride-1 path (whole plane in one run)
    p.kh = p.kw = 3;
    p.stride_h = p.stride_w = p.dilation_h = p.dilation_w = 1;
    p.x_h = uniform(1, 9);
    p.x_w = uniform(1, 9);
  }
  if (p.x_h * p.x_w * ic > kMaxX) return true;
  if (!window(p.x_h, p.kh, p.stride_h, p.dilation_h, &p.oh, &p.pad_top)) return true;
  if (!window(p.x_w, p.kw, p.stride_w, p.dilation_w, &p.ow, &p.pad_left)) return true;
  if (p.oh * p.ow * p.oc > kMaxOut) return true;
  p.in_offset = uniform(-127, 128);
  fill(g_x, p.x_h * p.x_w * ic);
  fill(g_w, p.kh * p.kw * p.oc);
  p.w = g_w;
  p.nsel = random_split(p.oc);
  if (p.nsel) {
    p.sel = g_sel;
    fill(g_wram, p.kh * p.kw * p.nsel);
    p.w_ram = g_wram;
  }
  p.tail = random_tail(p.oc);
  const bool plane = next_u32() & 1;  // one channel's plane (in place / fused) or interleaved (normal)
  for (int32_t oc = 0; oc < p.oc; ++oc) {
    const int8_t* in = plane ? g_x : g_x + oc / m;
    const int32_t stride = plane ? 1 : ic;
    tt::reference::dw_channel(p, oc, in, stride, g_ref + oc, p.oc);
    tt::optimized::dw_channel(p, oc, in, stride, g_opt + oc, p.oc);
  }
  if (!same(g_ref, g_opt, p.oh * p.ow * p.oc, "dw_channel", c)) return false;
  if (!plane && m == 1 && p.oc >= 4) {
    // four channels from a four-channel interleaved copy (the fused / in-place scratch)
    const int32_t c0 = static_cast<int32_t>(next_u32() % static_cast<uint32_t>(p.oc - 3));
    for (int32_t i = 0; i < p.x_h * p.x_w; ++i)
      for (int32_t k = 0; k < 4; ++k) g_x4[4 * i + k] = g_x[i * ic + c0 + k];
    memcpy(g_opt, g_ref, static_cast<size_t>(p.oh * p.ow * p.oc));
    for (int32_t i = 0; i < p.oh * p.ow; ++i)
      for (int32_t k = 0; k < 4; ++k) g_opt[i * p.oc + c0 + k] ^= 0x5A;
    if (tt::optimized::dw_four_channels(p, c0, g_x4, 4, g_opt) &&
        !same(g_ref, g_opt, p.oh * p.ow * p.oc, "dw_four_channels", c))
      return false;
  }
  if (plane) return true;
  // every channel at once from the interleaved input (the four-channel path where it applies)
  memset(g_opt, 0x5A, static_cast<size_t>(p.oh * p.ow * p.oc));
  tt::optimized::dw_interleaved(p, g_x, ic, g_opt);
  return same(g_ref, g_opt, p.oh * p.ow * p.oc, "dw_interleaved", c);
}


}  // namespace

#ifdef __arm__
extern "C" void tt_calibrate(void);  // port/cortex_m/markers.cc: the markers QEMU's counter reads

int main() {
  tt_calibrate();
  const int32_t cases = TT_CASES;
#else
int main(int argc, char** argv) {
  int32_t cases = TT_CASES;
  if (argc > 1) cases = atoi(argv[1]);
  if (argc > 2) tt_test::rng_state() = static_cast<uint32_t>(strtoul(argv[2], nullptr, 0)) | 1u;
#endif
  int32_t conv = 0, pw = 0, dw = 0;
  for (int32_t c = 0; c < cases; ++c) {
    bool ok = true;
    switch (c % 3) {
      case 0: ok = conv_case(c); ++conv; break;
      case 1: ok = pointwise_case(c); ++pw; break;
      default: ok = depthwise_case(c); ++dw; break;
    }
    if (!ok) return 1;
  }
  put_count("TT kernels cases=", cases);
  put_count(" conv=", conv);
  put_count(" pointwise=", pw);
  put_count(" depthwise=", dw);
  TT_PRINT(" ok\nTT end\n");
  return 0;
}
