// Shared by AVERAGE_POOL_2D_GRAD and MAX_POOL_2D_GRAD: the window geometry of the
// forward pool (attrs filter_h/w, stride_h/w, pad_top/left) and the operands.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_GRAD_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_GRAD_H_

#include "../../kernels/pool_core.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {

template <typename G>
struct PoolGrad {
  const G* g = nullptr;         // [1, OH, OW, C]
  const int8_t* x = nullptr;    // [1, H, W, C] (max pool)
  G* out = nullptr;             // [1, H, W, C]
  int32_t h = 0, w = 0, c = 0, oh = 0, ow = 0, fh = 0, fw = 0, sh = 1, sw = 1, pt = 0, pl = 0;
  void window(int32_t oy, int32_t ox, int32_t* y0, int32_t* y1, int32_t* x0, int32_t* x1) const {
    const PoolWindow win = pool_window(oy, ox, h, w, fh, fw, sh, sw, pt, pl);
    *y0 = win.y0;
    *y1 = win.y1;
    *x0 = win.x0;
    *x1 = win.x1;
  }
};

// `with_input`: the op also reads the forward input x (MAX_POOL_2D_GRAD).
// G: the gradients' storage type (float or Half; both operands alike).
template <typename G>
tt_status parse_pool_grad(TrainContext& ctx, bool with_input, PoolGrad<G>* p);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_GRAD_H_
