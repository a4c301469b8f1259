// Shared by the fused weight-gradient + QAS update ops (CONV_2D_UPDATE,
// DEPTHWISE_CONV_2D_UPDATE, FULLY_CONNECTED_UPDATE): the trained weight, its
// selected channels (last axis), QAS table, learning rate, saved input and RNG.
// G: the output gradient's storage type (float or Half), widened on every load.
#ifndef TFLM_TRAIN_MICRO_TRAIN_KERNELS_WEIGHT_UPDATE_H_
#define TFLM_TRAIN_MICRO_TRAIN_KERNELS_WEIGHT_UPDATE_H_

#include "train_kernel_util.h"

namespace tt {
namespace train {

template <typename G>
struct WeightUpdate {
  const G* g = nullptr;       // output gradient (after the clamp)
  Int8Weights w;              // the trained weight (SRAM: whole or split)
  I32List channels;           // selected channels of the last axis, ascending
  F32Table scale;             // weight_scale (per output channel / channel, or one)
  float lr = 0.0f, in_scale = 0.0f;
  int32_t in_zp = 0;
  uint32_t* rng = nullptr;
  // Trained element (row, j-th selected channel) in SRAM.
  int8_t* element(int32_t row, int32_t j) const {
    return w.split() ? w.ram + static_cast<int64_t>(row) * w.nsel + j
                     : w.ram + static_cast<int64_t>(row) * w.last + channels.at(j);
  }
  float deq(int8_t q) const { return static_cast<float>(q - in_zp) * in_scale; }
};

// Operands [grad_y, x, weight, rng] -> [weight, rng]; `scale_entries`: the size
// of weight_scale when per channel. Declares the accesses when preparing.
template <typename G>
tt_status parse_weight_update(TrainContext& ctx, int32_t scale_entries, WeightUpdate<G>* p);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_KERNELS_WEIGHT_UPDATE_H_
