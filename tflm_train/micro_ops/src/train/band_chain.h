// Band chains (train.fbs 2.1, window rule of 2.2; docs/training_file_format.md "Band chains"): a run of
// forward CONV_2D / DEPTHWISE_CONV_2D steps in mode BAND that runs at its last step
// (band_rows > 0), band by band of output rows, each intermediate tensor held as a
// window of rows (storage BAND). The planner's rule: tflm_train/planner/bands.py.
#ifndef TFLM_TRAIN_MICRO_TRAIN_BAND_CHAIN_H_
#define TFLM_TRAIN_MICRO_TRAIN_BAND_CHAIN_H_

#include "train_runtime.h"

namespace tt {
namespace train {

// Most ops in one chain (one compute core each on the stack while the chain runs).
constexpr int32_t kMaxBandOps = 8;
// The training metadata minor version (of major 2) whose window rule the runtime runs.
constexpr int32_t kBandRuleMinor = 2;

// Band rows of step k (0 unless it is the last step of a band chain).
int32_t band_rows_of(TrainRuntime& rt, uint32_t k);
// True if a band chain writes its output `out` over its input `in` (the last step's
// inplace_input; prepare_band_chain checks the offsets row by row against the bands).
bool band_writes_over(TrainRuntime& rt, int32_t in, int32_t out);
// The step at which step k's scratch is in use: the last step of its band chain, else k.
uint32_t scratch_step_of(TrainRuntime& rt, uint32_t k);
// At the last step of a chain (ctx at that step): validate the chain (ops, tensors, the
// windows' rows recomputed from the geometry) / run it. The context is left at that step.
tt_status prepare_band_chain(TrainContext& ctx);
tt_status eval_band_chain(TrainContext& ctx);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_BAND_CHAIN_H_
