// Helpers shared by the kernels: checks with one-line errors, quantization
// parameters, padding arithmetic, op-data carving.
#ifndef TFLM_TRAIN_MICRO_KERNELS_KERNEL_UTIL_H_
#define TFLM_TRAIN_MICRO_KERNELS_KERNEL_UTIL_H_

#include <math.h>

#include "../quant.h"
#include "../runtime.h"

namespace tt {

// The node must have `min_inputs`..`max_inputs` inputs (the mandatory ones
// present) and exactly `outputs` outputs.
tt_status check_arity(Context& ctx, const NodeRec& node, int32_t min_inputs, int32_t max_inputs, int32_t outputs);

tt_status check_type(Context& ctx, int32_t t, uint8_t type, const char* role);
tt_status check_rank(Context& ctx, int32_t t, int32_t rank, const char* role);

// Per-tensor quantization of an activation: one positive finite scale and a
// zero point inside the type's range.
tt_status per_tensor_quant(Context& ctx, int32_t t, const char* role, float* scale, int32_t* zero_point);

// The value range of an integer tensor type (int8, uint8, int16).
bool integer_range(uint8_t type, int32_t* qmin, int32_t* qmax);

// Output clamp of a fused activation, with a message for unsupported ones.
tt_status fused_activation_range(Context& ctx, uint8_t activation, int32_t output, int32_t* lo, int32_t* hi);

// The real multiplier M = a / b as (multiplier, shift); fails for a
// multiplier that is not positive and finite or too large to apply.
tt_status quantized_multiplier(Context& ctx, double real, const char* what, int32_t* multiplier, int* shift);

// Requantization of a conv-like op with a symmetric int8 filter quantized per
// tensor or per output channel along `quantized_dim`: one (multiplier, shift)
// per output channel for s_in * s_w[c] / s_out, as TFLite computes it (double).
tt_status per_channel_multipliers(Context& ctx, int32_t filter, int32_t out_c, int32_t quantized_dim, float s_in,
                                  float s_out, int32_t* multiplier, int8_t* shift);

// Output size and leading (top/left) padding of a windowed op along one axis,
// TFLite's SAME/VALID rules: SAME: out = ceil(in / stride), the total padding
// split with the extra pixel at the end; VALID: out = ceil((in - eff + 1) / stride).
int32_t window_output_size(uint8_t padding, int32_t in, int32_t filter, int32_t stride, int32_t dilation);
int32_t window_padding(int32_t in, int32_t filter, int32_t stride, int32_t dilation, int32_t out);

// Strides and dilations up to kMaxStride keep every window offset inside int32
// (filter windows are at most 65000 taps).
constexpr int32_t kMaxStride = 4096;
tt_status check_window(Context& ctx, int32_t stride_h, int32_t stride_w, int32_t dilation_h, int32_t dilation_w);

// The tensor's shape must equal `dims` (count entries); message names the role.
tt_status check_shape(Context& ctx, int32_t t, const int32_t* dims, int32_t count, const char* role);

// An elementwise op of one int8 input and one int8 output of the same shape
// (RELU, RELU6, LEAKY_RELU): its tensors and element count.
tt_status check_unary_int8(Context& ctx, const NodeRec& node, int32_t* input, int32_t* output, int32_t* elements);

// Carves aligned arrays out of a kernel's op data block.
class OpDataLayout {
 public:
  explicit OpDataLayout(void* base) : base_(static_cast<uint8_t*>(base)) {}
  template <typename T>
  T* take(uint32_t count) {
    used_ = (used_ + alignof(T) - 1) & ~static_cast<uint32_t>(alignof(T) - 1);
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += count * static_cast<uint32_t>(sizeof(T));
    return p;
  }
  uint32_t bytes() const { return used_; }

 private:
  uint8_t* base_;
  uint32_t used_ = 0;
};

inline const int8_t* as_i8(const uint8_t* p) { return reinterpret_cast<const int8_t*>(p); }
inline int8_t* as_i8(uint8_t* p) { return reinterpret_cast<int8_t*>(p); }

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_KERNEL_UTIL_H_
