// Helpers of the training kernels: operand checks, views of activations
// (virtual PAD / crop / channel storage), of int8 weights (split channels) and
// of float32 attribute tables, and the conv geometry.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_TRAIN_KERNEL_UTIL_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_TRAIN_KERNEL_UTIL_H_

#include <math.h>
#include <string.h>

#include <initializer_list>

#include "../../quant.h"
#include "../train_runtime.h"
#include "grad_storage.h"

namespace tt {
namespace train {

// Mode bits accepted by a kernel.
enum ModeBits : uint32_t {
  kAllowNormal = 1u << tfmt::kNormal,
  kAllowInPlace = 1u << tfmt::kInPlace,
  kAllowAlias = 1u << tfmt::kAlias,
  kAllowSkip = 1u << tfmt::kSkip,
  kAllowFused = 1u << tfmt::kFused,
};

// Arity, mode and (in place) layout checks shared by every kernel.
tt_status expect_arity(TrainContext& ctx, int32_t inputs, int32_t outputs);
tt_status expect_mode(TrainContext& ctx, uint32_t allowed);
tt_status expect_dtype(TrainContext& ctx, const TensorDesc& t, uint8_t dtype, const char* role);
tt_status expect_rank(TrainContext& ctx, const TensorDesc& t, int32_t rank, const char* role);
tt_status expect_same_shape(TrainContext& ctx, const TensorDesc& a, const TensorDesc& b, const char* what);
// Storage a kernel can address directly (arena / persistent / flash), for `role`.
tt_status expect_addressable(TrainContext& ctx, const TensorDesc& t, const char* role);
// An in-place step: `inplace_input` is `input`'s buffer (resolved through a
// virtual PAD) and output 0 starts at its offset.
// One int8 input and one int8 output of the same shape, both addressable
// (the forward RELU, RELU6, LEAKY_RELU).
tt_status expect_unary_int8(TrainContext& ctx, TensorDesc* x, TensorDesc* y);
tt_status expect_in_place_over(TrainContext& ctx, const TensorDesc& input, const TensorDesc& output);
// TT_OK unless the op runs in place; then its layout must be 'elementwise' and over `input`.
tt_status expect_elementwise_in_place(TrainContext& ctx, const TensorDesc& input, const TensorDesc& output);
// The step's scratch holds at least `bytes`.
tt_status expect_scratch(TrainContext& ctx, uint32_t bytes);

Str name_of(TrainContext& ctx, const TensorDesc& t);
inline float* f32_data(const TensorDesc& t) { return reinterpret_cast<float*>(t.data); }
// A gradient tensor's elements in its storage type G (float or Half, grad_storage.h).
template <typename G>
inline G* grad_data(const TensorDesc& t) {
  return reinterpret_cast<G*>(t.data);
}
// Whether a gradient is stored as binary16 (else float32; expect_dtype checks which).
inline bool is_half(const TensorDesc& t) { return t.dtype == tfmt::kFloat16; }
// The instantiation of a kernel function for the gradient storage of input 0 (float32 or
// float16), and for GRAD_INPUT ops also of output 0 (float32 -> float16: the int8 head).
using KernelFn = tt_status (*)(TrainContext&);
inline tt_status by_grad_dtype(TrainContext& ctx, KernelFn as_float, KernelFn as_half) {
  return (is_half(ctx.tensor(ctx.input(0))) ? as_half : as_float)(ctx);
}
inline tt_status by_grad_dtypes(TrainContext& ctx, KernelFn float_float, KernelFn float_half, KernelFn half_half) {
  if (is_half(ctx.tensor(ctx.input(0)))) return half_half(ctx);
  return (is_half(ctx.tensor(ctx.output(0))) ? float_half : float_float)(ctx);
}
inline int8_t* i8_data(const TensorDesc& t) { return reinterpret_cast<int8_t*>(t.data); }

// A 1xHxWxC activation as stored: the tensor itself, the source of a virtual PAD
// (a read) or of a virtual crop (a write). The op sees a logical tensor of
// height `lh`; stored row `y` is logical row `y + top` (columns likewise).
struct Spatial {
  int32_t tensor = -1;   // the tensor whose bytes are touched
  uint8_t* data = nullptr;
  int32_t h = 0, w = 0, c = 0;
  int32_t top = 0, left = 0;
  int32_t lh = 0, lw = 0;
  bool channel = false;  // CHANNEL storage: one channel at a time in a fused step's scratch
};
tt_status spatial_of(TrainContext& ctx, const TensorDesc& t, uint8_t dtype, const char* role, Spatial* s);

// int8 weights wherever they live: in flash, copied whole to SRAM (a trained
// parameter), or split (trained channels of the last axis in SRAM, packed in
// ascending channel order; the other channels in flash).
struct Int8Weights {
  const int8_t* full = nullptr;   // every element (the SRAM copy, or flash when frozen / split)
  int8_t* ram = nullptr;          // writable trained elements: == full (whole copy) or the split channels
  int32_t dims[4] = {0, 0, 0, 0};
  int32_t rank = 0;
  int32_t last = 0;               // size of the last axis
  const uint8_t* sel = nullptr;   // split: int32 channel list (little-endian, maybe unaligned)
  int32_t nsel = 0;
  bool split() const { return sel != nullptr; }
  int32_t selected(int32_t j) const { return load_i32(sel + 4 * j); }
  // Split: position of channel c among the trained ones, -1 if frozen (binary search).
  int32_t slot(int32_t c) const;
  // Element (row, c), row = flat index over every axis but the last.
  int8_t at(int32_t row, int32_t c) const {
    if (sel) {
      const int32_t j = slot(c);
      if (j >= 0) return ram[row * nsel + j];
    }
    return full[row * last + c];
  }
};
tt_status int8_weights_of(TrainContext& ctx, const TensorDesc& t, const char* role, Int8Weights* w);

// A float32 table of `n` entries (weight_scale, bias_scale attrs) or one entry for all.
struct F32Table {
  const uint8_t* data = nullptr;
  uint32_t length = 0;
  float at(int32_t i) const { return load_f32(data + 4u * (length == 1 ? 0u : static_cast<uint32_t>(i))); }
};
tt_status f32_table(TrainContext& ctx, const char* attr, int32_t n, F32Table* table);
// An int32 list attr of exactly `n` entries (n < 0: any length).
struct I32List {
  const uint8_t* data = nullptr;
  uint32_t length = 0;
  int32_t at(int32_t i) const { return load_i32(data + 4u * static_cast<uint32_t>(i)); }
};
tt_status i32_list(TrainContext& ctx, const char* attr, int32_t n, I32List* list);
// An int8 zero point attr: in [-128, 127] (kernels subtract it from int8 values in int32).
tt_status int8_zero_point_attr(TrainContext& ctx, const char* attr, int32_t* zp);
// A constant int32 bias (flash or SRAM, maybe unaligned) of `n` entries; absent input: empty.
struct I32Values {
  const uint8_t* data = nullptr;
  int32_t at(int32_t i) const { return load_i32(data + 4 * i); }
};

// Geometry attrs of conv-like training ops (stride, dilation, explicit padding).
struct ConvGeometry {
  int32_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1, pad_top = 0, pad_left = 0;
};
tt_status conv_geometry_attrs(TrainContext& ctx, ConvGeometry* g);
// Forward conv / pool attrs: padding "SAME" / "VALID" -> the TFLite padding of a
// window over a logical input of `in_h` x `in_w` producing `out_h` x `out_w`.
tt_status forward_window(TrainContext& ctx, int32_t in_h, int32_t in_w, int32_t k_h, int32_t k_w, int32_t out_h,
                         int32_t out_w, ConvGeometry* g);
// The fused activation's int8 clamp on output tensor `y` (attr "activation").
tt_status activation_clamp(TrainContext& ctx, const TensorDesc& y, int32_t* lo, int32_t* hi);
// Per-tensor quantization of an int8 activation.
tt_status activation_quant(TrainContext& ctx, const TensorDesc& t, const char* role, float* scale, int32_t* zp);

// Row-major element copy that is safe when dst <= src overlap (ascending).
inline void copy_ascending(uint8_t* dst, const uint8_t* src, size_t n) {
  if (dst != src) memmove(dst, src, n);
}

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_TRAIN_KERNEL_UTIL_H_
