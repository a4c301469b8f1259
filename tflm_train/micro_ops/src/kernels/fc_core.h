// The int8 compute core of FULLY_CONNECTED, shared by the inference kernel
// (src/kernels/fully_connected.cc) and the training graph's forward kernel
// (src/train/kernels/fully_connected.cc): one forward path. Everything is resolved
// by the caller's prepare / parse: pointers, offsets, the requantization tables and
// the split trained channels. One implementation (the reference loop): a head of a few
// units is a negligible share of a step.
#ifndef TFLM_TRAIN_MICRO_KERNELS_FC_CORE_H_
#define TFLM_TRAIN_MICRO_KERNELS_FC_CORE_H_

#include <stdint.h>

#include "conv_core.h"

namespace tt {

// y[r][u] = requantize(sum_k (x[r][k] + in_offset) * (w[u][k] + filter_offset)) over an
// input viewed as [rows, depth] and weights [units, depth].
struct FcCore {
  const int8_t* x = nullptr;
  int32_t rows = 0, depth = 0, units = 0;
  int32_t in_offset = 0;      // -input zero point
  int32_t filter_offset = 0;  // -filter zero point (per-tensor weights only; else 0)
  const int8_t* w = nullptr;  // every element (flash, or the SRAM copy)
  // Split trained channels of the last axis (depth): rows of nsel values in SRAM replace
  // columns sel[0..nsel) (an int32 little-endian list, ascending).
  const int8_t* w_ram = nullptr;
  const uint8_t* sel = nullptr;
  int32_t nsel = 0;
  RequantTail tail;  // bias, multiplier and shift per unit (or one for all)
};

// Every output into out[r * units + u].
void fc_rows(const FcCore& p, int8_t* out);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_KERNELS_FC_CORE_H_
