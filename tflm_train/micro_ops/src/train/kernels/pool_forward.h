// Parsing shared by the forward pooling kernels of the training graph.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_

#include "../../kernels/pool_core.h"
#include "train_kernel_util.h"

namespace tt {
namespace train {

// Parse and declare accesses (when preparing) of an int8 pool: input and output
// 1xHxWxC in the arena with one quantization, attrs filter/stride/padding/activation;
// the op as the compute core shared with the inference kernels sees it.
tt_status parse_pool_forward(TrainContext& ctx, PoolCore* p);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_POOL_FORWARD_H_
