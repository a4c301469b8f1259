// The int8 compute cores of CONV_2D and DEPTHWISE_CONV_2D, shared by the
// inference kernels (src/kernels) and the training graph's forward kernels
// (src/train/kernels): one forward path per op. Everything is resolved before
// the call (by prepare / the op's parse): pointers, the padding relative to the
// stored input (a virtual PAD or crop only moves the origin), the
// requantization tables and the split trained channels.
//
// Two implementations, in TFLite Micro's reference / optimized split:
//   reference::  (conv_core_reference.cc) plain loops, the specification;
//   optimized::  (conv_core_optimized.cc) im2col into offset int16, several output
//                channels or pixels per inner loop, SXTB16/SXTAB16 + SMLAD on
//                Cortex-M4 (arm_acle.h), depthwise interior without bounds checks
//                and with the input offset folded into per-row weight sums.
// Both give the same bytes (integer sums are exact in any order;
// tests/test_kernel_equivalence.py checks it on random shapes on the host and in
// QEMU). The build picks one: -DTT_REFERENCE_KERNELS selects the reference.
#ifndef TFLM_TRAIN_MICRO_KERNELS_CONV_CORE_H_
#define TFLM_TRAIN_MICRO_KERNELS_CONV_CORE_H_

#include <stdint.h>
#include <string.h>

#include "../quant.h"

namespace tt {

// Bias + requantization + output offset + clamp of one output channel.
struct RequantTail {
  const uint8_t* bias = nullptr;   // int32 little-endian per channel (maybe unaligned), or nullptr
  const uint8_t* mult = nullptr;   // int32 little-endian, per channel or one for all
  const uint8_t* shift = nullptr;  // per channel or one: int8, or int32 little-endian (low byte read)
  uint8_t shift_bytes = 1;         // 1 (int8 table) or 4 (int32 table)
  bool per_channel = true;
  int32_t out_offset = 0, act_min = -128, act_max = 127;
};

inline int32_t core_load_i32(const uint8_t* p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

// Per-channel requantization parameters, loaded once per channel (hoisted out of pixel loops).
struct ChannelQuant {
  int32_t bias, mult, shift;
};
inline ChannelQuant channel_quant(const RequantTail& t, int32_t oc) {
  const uint32_t q = t.per_channel ? static_cast<uint32_t>(oc) : 0u;
  return {t.bias ? core_load_i32(t.bias + 4 * oc) : 0, core_load_i32(t.mult + 4 * q),
          static_cast<int8_t>(t.shift[q * t.shift_bytes])};
}
inline int8_t requantize(const RequantTail& t, const ChannelQuant& q, int32_t acc) {
  acc = multiply_by_quantized_multiplier(wrapping_add(acc, q.bias), q.mult, q.shift);
  return static_cast<int8_t>(clamp_i32(wrapping_add(acc, t.out_offset), t.act_min, t.act_max));
}

// A depthwise convolution: output channel oc reads input channel oc / multiplier.
// Also the window, weights and tail part of a convolution (ConvCore).
struct DwCore {
  int32_t x_h = 0, x_w = 0;   // the input as stored
  int32_t in_offset = 0;      // -input zero point
  const int8_t* w = nullptr;  // every element (flash, or the SRAM copy): depthwise [kh][kw][oc], conv [oc][kh][kw][ic]
  int32_t oc = 0, kh = 1, kw = 1;
  // Split trained channels of the last axis: rows of nsel values in SRAM replace
  // channels sel[0..nsel) (an int32 little-endian list, ascending).
  const int8_t* w_ram = nullptr;
  const uint8_t* sel = nullptr;
  int32_t nsel = 0;
  int32_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int32_t pad_top = 0, pad_left = 0;  // relative to the stored input
  int32_t oh = 0, ow = 0;
  RequantTail tail;
};

// A convolution (one group: filter depth == input depth) over a 1xHxWxC input as stored.
struct ConvCore : DwCore {
  const int8_t* x = nullptr;  // input pixel (y, x) at x + (y * x_w + x) * ic
  int32_t ic = 0;
};

#define TT_CONV_CORE_API                                                                                         \
  /* Output pixel (oy, ox): every output channel into out[0..oc). */                                            \
  void conv_pixel(const ConvCore& p, int32_t oy, int32_t ox, int8_t* out);                                      \
  /* Output rows [oy0, oy1) into out (row-major, oc per pixel). */                                              \
  void conv_rows(const ConvCore& p, int32_t oy0, int32_t oy1, int8_t* out);                                     \
  /* Output pixels [i0, i0 + n) in row-major order (pixel i = (i / ow, i % ow)) into out (oc per pixel). */     \
  void conv_pixels(const ConvCore& p, int32_t i0, int32_t n, int8_t* out);                                      \
  /* A 1x1 stride-1 unpadded convolution's output channels [oc0, oc0 + n) over every pixel: pixel i's */         \
  /* channel oc at out[i * out_stride + oc - oc0]. */                                                            \
  void conv_pointwise_channels(const ConvCore& p, int32_t oc0, int32_t n, int8_t* out, int32_t out_stride);      \
  /* Depthwise output channel oc from its input plane in[(y * x_w + x) * in_stride], */                         \
  /* written at out[(oy * ow + ox) * out_stride]. */                                                            \
  void dw_channel(const DwCore& p, int32_t oc, const int8_t* in, int32_t in_stride, int8_t* out, int32_t out_stride); \
  /* Every output channel from a channel-interleaved input of ic channels, input pixel (y, x) at */              \
  /* in + (y * x_w + x) * ic, output channel oc reading input channel oc / (p.oc / ic), written */               \
  /* interleaved at out[(oy * ow + ox) * p.oc + oc]. */                                                          \
  void dw_interleaved(const DwCore& p, const int8_t* in, int32_t ic, int8_t* out);                              \
  /* Depthwise output channels [c0, c0 + 4) (depth multiplier 1) from an input whose channel c0 + k of */        \
  /* pixel (y, x) is at in[(y * x_w + x) * in_stride + k], written interleaved at */                             \
  /* out[(oy * ow + ox) * p.oc + c0 + k]; false (nothing written) where no four-channel path applies */          \
  /* (always for the reference: dw_channel per channel is then the caller's way). */                           \
  bool dw_four_channels(const DwCore& p, int32_t c0, const int8_t* in, int32_t in_stride, int8_t* out);        \
  /* Whether dw_four_channels computes the channels of p (p.oc >= c0 + 4 aside). */                             \
  bool dw_four_channel_path(const DwCore& p);

namespace reference {
TT_CONV_CORE_API
}  // namespace reference
namespace optimized {
TT_CONV_CORE_API
}  // namespace optimized
#undef TT_CONV_CORE_API

#ifdef TT_REFERENCE_KERNELS
namespace kernels = reference;
#else
namespace kernels = optimized;
#endif

// Split channels: the slot of channel c among the trained ones, -1 if frozen (binary search).
inline int32_t split_slot(const uint8_t* sel, int32_t nsel, int32_t c) {
  int32_t lo = 0, hi = nsel - 1;
  while (lo <= hi) {
    const int32_t mid = (lo + hi) / 2;
    const int32_t v = core_load_i32(sel + 4 * mid);
    if (v == c) return mid;
    if (v < c) lo = mid + 1; else hi = mid - 1;
  }
  return -1;
}

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_CONV_CORE_H_
