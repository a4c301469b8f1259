// MAX_POOL_2D, int8: the maximum over the in-image taps of the window, clamped
// (pool_core.h, shared with training).
#include "pool_common.h"

namespace tt {
namespace {

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  PoolData d;
  memory->op_data_bytes = sizeof(PoolData);
  return parse_pool(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) { return parse_pool(ctx, node, static_cast<PoolData*>(node.op_data)); }

tt_status eval(Context& ctx, const NodeRec& node) {
  const PoolData& d = *static_cast<const PoolData*>(node.op_data);
  for (int32_t b = 0; b < d.batches; ++b) max_pool(pool_core(ctx, d, b));
  return TT_OK;
}

}  // namespace

extern const Kernel kMaxPool2D = {schema::kOpMaxPool2D, nullptr, "MAX_POOL_2D", size, prepare, eval};

}  // namespace tt
