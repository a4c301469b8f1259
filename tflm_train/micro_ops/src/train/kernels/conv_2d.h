// Forward int8 CONV_2D of the training graph, shared with the depthwise kernel
// (which runs a FUSED pointwise convolution one output channel at a time).
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_

#include "train_kernel_util.h"

namespace tt {
namespace train {

struct ConvForward {
  Spatial x;
  Int8Weights w;             // [OC, KH, KW, IC]
  I32Values bias;
  bool has_bias = false;
  int8_t* y = nullptr;       // [1, OH, OW, OC] (nullptr for CHANNEL storage)
  int32_t y_tensor = -1;
  uint8_t y_storage = 0;
  int32_t oh = 0, ow = 0, oc = 0, kh = 0, kw = 0, ic = 0;
  ConvGeometry g;            // padding relative to the logical input
  int32_t in_offset = 0, out_offset = 0, act_min = 0, act_max = 0;
  const uint8_t* mult = nullptr;  // requantization, int32 per output channel (or one)
  const uint8_t* shift = nullptr;
  uint32_t nq = 0;
};

// Parse the context's current op as a forward CONV_2D (int8).
tt_status parse_conv_forward(TrainContext& ctx, ConvForward* p);
// Declare the conv's reads (x, weights, bias) for the current step.
tt_status declare_conv_reads(TrainContext& ctx, const ConvForward& p);
// Output pixel (oy, ox): all OC channels into `out`.
void conv_pixel(const ConvForward& p, int32_t oy, int32_t ox, int8_t* out);
// A 1x1 stride-1 convolution's output channel `oc` over every pixel into `out` (OH*OW).
void pointwise_channel(const ConvForward& p, int32_t oc, int8_t* out);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_
