// Where tensors live: placement of every non-constant tensor (and each op's
// scratch memory) inside the planned region of the arena.
//
// Two interchangeable placements fill TensorRec::offset / NodeRec::scratch_offset
// and return the planned region's size:
// - place_first_fit: for plain .tflite files (no plan inside), a lifetime-aware
//   greedy first-fit: largest buffer first, each at the lowest 16-byte aligned
//   offset that overlaps no buffer alive at the same time.
// - place_at_offsets: a plan computed elsewhere (the Python planner, carried by
//   an exported training file); checked, never trusted.
// Both need the lifetimes from compute_lifetimes().
#ifndef TFLM_TRAIN_MICRO_PLANNER_H_
#define TFLM_TRAIN_MICRO_PLANNER_H_

#include "runtime.h"

namespace tt {

// first_use/last_use of every tensor: graph inputs from op 0, graph outputs to
// the last op, others from their producer to their last consumer.
void compute_lifetimes(Runtime& rt);

tt_status place_first_fit(Runtime& rt, uint32_t* planned_bytes, Message& msg);

// `offsets`: one per tensor of the subgraph (TT_NO_OFFSET: none). Scratch
// memory is placed after the planned tensors.
tt_status place_at_offsets(Runtime& rt, const uint32_t* offsets, size_t count, uint32_t* planned_bytes,
                           Message& msg);

}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_PLANNER_H_
