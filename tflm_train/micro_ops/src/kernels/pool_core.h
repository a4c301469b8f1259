// The int8 compute cores of AVERAGE_POOL_2D, MAX_POOL_2D and MEAN, used by the
// inference kernels (src/kernels) and the training graph's forward kernels
// (src/train/kernels): one forward path per op, each kernel only parses its
// own model format into these descriptions.
#ifndef TFLM_TRAIN_MICRO_KERNELS_POOL_CORE_H_
#define TFLM_TRAIN_MICRO_KERNELS_POOL_CORE_H_

#include <stdint.h>

#include "../../include/tflm_train.h"

namespace tt {

// A 2-D pool over one 1xHxWxC image as stored (NHWC), output 1 x oh x ow x C.
struct PoolCore {
  const int8_t* x = nullptr;
  int8_t* y = nullptr;
  int32_t h = 0, w = 0, c = 0, oh = 0, ow = 0;
  int32_t filter_h = 1, filter_w = 1, stride_h = 1, stride_w = 1;
  int32_t pad_top = 0, pad_left = 0;
  int32_t act_min = -128, act_max = 127;
};

// The in-image part of output (oy, ox)'s pooling window: rows [y0, y1), columns [x0, x1)
// (also the window of the pooling gradients, src/train/kernels/pool_grad.h).
struct PoolWindow {
  int32_t y0, y1, x0, x1;
};

inline PoolWindow pool_window(int32_t oy, int32_t ox, int32_t h, int32_t w, int32_t filter_h, int32_t filter_w,
                              int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left) {
  const int32_t ty = oy * stride_h - pad_top, tx = ox * stride_w - pad_left;
  return {ty < 0 ? 0 : ty, ty + filter_h < h ? ty + filter_h : h,  //
          tx < 0 ? 0 : tx, tx + filter_w < w ? tx + filter_w : w};
}

// The window sum over the in-image taps divided by their count, rounded half away
// from zero, clamped. False (nothing defined written) if a window has no in-image tap.
bool average_pool(const PoolCore& p);
// The maximum over the in-image taps of the window, clamped.
void max_pool(const PoolCore& p);

// MEAN over a set of axes (TFLite's integer mean): each output element is
//   clamp(MBQM(sum - zp_in * count, multiplier, shift) + zp_out)
// over the `count` input elements it reduces; outputs in row-major order of the kept dims.
struct MeanCore {
  const int8_t* x = nullptr;
  int8_t* y = nullptr;
  int32_t rank = 0;
  int32_t dims[TT_MAX_RANK] = {1, 1, 1, 1, 1, 1};
  bool reduced[TT_MAX_RANK] = {false, false, false, false, false, false};
  int64_t count = 1, out_elements = 1;
  int32_t zp_in = 0, zp_out = 0, multiplier = 0, shift = 0;
};

void mean(const MeanCore& p);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_POOL_CORE_H_
