// Forward int8 CONV_2D of the training graph, shared with the depthwise kernel
// (which runs a FUSED pointwise convolution one output channel at a time).
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_

#include "../../kernels/conv_core.h"
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
  ConvCore core;             // the shared compute core's view of all of the above
};

// The compute core's window, weights and tail from a parsed forward op
// (ConvForward, or the depthwise kernel's DwForward: the same field names).
template <typename Parsed>
void fill_window_core(const Parsed& p, DwCore* c) {
  c->x_h = p.x.h;
  c->x_w = p.x.w;
  c->in_offset = p.in_offset;
  c->w = p.w.full;
  c->oc = p.oc;
  c->kh = p.kh;
  c->kw = p.kw;
  if (p.w.split()) {
    c->w_ram = p.w.ram;
    c->sel = p.w.sel;
    c->nsel = p.w.nsel;
  }
  c->stride_h = p.g.stride_h;
  c->stride_w = p.g.stride_w;
  c->dilation_h = p.g.dilation_h;
  c->dilation_w = p.g.dilation_w;
  c->pad_top = p.g.pad_top + p.x.top;  // a virtual PAD / crop moves the stored input's origin
  c->pad_left = p.g.pad_left + p.x.left;
  c->oh = p.oh;
  c->ow = p.ow;
  c->tail.bias = p.has_bias ? p.bias.data : nullptr;
  c->tail.mult = p.mult;
  c->tail.shift = p.shift;
  c->tail.shift_bytes = 4;  // int32 tables in the training metadata
  c->tail.per_channel = p.nq != 1;
  c->tail.out_offset = p.out_offset;
  c->tail.act_min = p.act_min;
  c->tail.act_max = p.act_max;
}

// Parse the context's current op as a forward CONV_2D (int8).
tt_status parse_conv_forward(TrainContext& ctx, ConvForward* p);
// Declare the conv's reads (x, weights, bias) for the current step.
tt_status declare_conv_reads(TrainContext& ctx, const ConvForward& p);
// Parse the context's current op as a forward DEPTHWISE_CONV_2D (int8) into its compute
// core, its input as stored and its output (depthwise_conv_2d.cc; for band chains).
tt_status parse_depthwise_forward(TrainContext& ctx, DwCore* core, Spatial* x, int8_t** y);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_CONV_2D_H_
