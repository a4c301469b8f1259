// Window geometry shared by the forward pooling kernels of the training graph.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_

#include "train_kernel_util.h"

namespace tt {
namespace train {

struct PoolForward {
  const int8_t* x = nullptr;
  int8_t* y = nullptr;
  int32_t h = 0, w = 0, c = 0, oh = 0, ow = 0, fh = 0, fw = 0;
  ConvGeometry g;
  int32_t act_min = 0, act_max = 0;
  // Clipped window of output (oy, ox): rows [y0, y1), columns [x0, x1).
  void window(int32_t oy, int32_t ox, int32_t* y0, int32_t* y1, int32_t* x0, int32_t* x1) const {
    const int32_t ty = oy * g.stride_h - g.pad_top, tx = ox * g.stride_w - g.pad_left;
    *y0 = ty < 0 ? 0 : ty;
    *y1 = ty + fh < h ? ty + fh : h;
    *x0 = tx < 0 ? 0 : tx;
    *x1 = tx + fw < w ? tx + fw : w;
  }
};

// Parse and declare accesses (when preparing) of an int8 pool: input and output
// 1xHxWxC in the arena with one quantization, attrs filter/stride/padding/activation.
tt_status parse_pool_forward(TrainContext& ctx, PoolForward* p);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_
