// AVERAGE_POOL_2D, int8 (input and output share quantization, as TFLite
// requires): the window sum over in-image taps divided by their count,
// rounded half away from zero, then clamped (pool_core.h, shared with training).
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
  for (int32_t b = 0; b < d.batches; ++b)
    if (!average_pool(pool_core(ctx, d, b))) return ctx.fail(TT_INTERNAL_ERROR, "empty pooling window");
  return TT_OK;
}

}  // namespace

extern const Kernel kAveragePool2D = {schema::kOpAveragePool2D, nullptr, "AVERAGE_POOL_2D", size, prepare, eval};

}  // namespace tt
