// AVERAGE_POOL_2D, int8 (input and output share quantization, as TFLite
// requires): the window sum over in-image taps divided by their count,
// rounded half away from zero, then clamped.
#include "int8_common.h"
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
  const int8_t* x = as_i8(ctx.data(d.input));
  int8_t* y = as_i8(ctx.data(d.output));
  for (int32_t b = 0; b < d.batches; ++b) {
    for (int32_t oy = 0; oy < d.out_h; ++oy) {
      const int32_t y0 = oy * d.stride_h - d.pad_h;
      const int32_t fy0 = y0 < 0 ? -y0 : 0;
      const int32_t fy1 = d.in_h - y0 < d.filter_h ? d.in_h - y0 : d.filter_h;
      for (int32_t ox = 0; ox < d.out_w; ++ox) {
        const int32_t x0 = ox * d.stride_w - d.pad_w;
        const int32_t fx0 = x0 < 0 ? -x0 : 0;
        const int32_t fx1 = d.in_w - x0 < d.filter_w ? d.in_w - x0 : d.filter_w;
        const int32_t count = (fy1 - fy0) * (fx1 - fx0);
        if (fy1 <= fy0 || fx1 <= fx0) return ctx.fail(TT_INTERNAL_ERROR, "empty pooling window");
        for (int32_t c = 0; c < d.channels; ++c) {
          int32_t acc = 0;
          for (int32_t fy = fy0; fy < fy1; ++fy)
            for (int32_t fx = fx0; fx < fx1; ++fx)
              acc += x[((b * d.in_h + y0 + fy) * d.in_w + x0 + fx) * d.channels + c];
          acc = rounded_average(acc, count);  // int8_common.h, shared with training
          y[((b * d.out_h + oy) * d.out_w + ox) * d.channels + c] =
              static_cast<int8_t>(clamp_i32(acc, d.act_min, d.act_max));
        }
      }
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kAveragePool2D = {schema::kOpAveragePool2D, nullptr, "AVERAGE_POOL_2D", size, prepare, eval};

}  // namespace tt
