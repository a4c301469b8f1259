// Window geometry shared by AVERAGE_POOL_2D and MAX_POOL_2D.
#ifndef TFLM_TRAIN_MICRO_KERNELS_POOL_COMMON_H_
#define TFLM_TRAIN_MICRO_KERNELS_POOL_COMMON_H_

#include "kernel_util.h"
#include "pool_core.h"

namespace tt {

struct PoolData {
  int32_t input, output;
  int32_t batches, in_h, in_w, channels, out_h, out_w;
  int32_t filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
};

// Validates an int8 NHWC pool node and fills the geometry and output clamp.
tt_status parse_pool(Context& ctx, const NodeRec& node, PoolData* d);

// Batch b of the node's input and output as the shared compute core sees it (pool_core.h).
PoolCore pool_core(Context& ctx, const PoolData& d, int32_t b);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_POOL_COMMON_H_
