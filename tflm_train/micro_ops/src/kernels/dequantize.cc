// DEQUANTIZE: int8/uint8/int16 -> float32, y = float(s * (q - zp)) with the
// product in double (TFLite's reference dequantize).
#include <string.h>

#include "kernel_util.h"

namespace tt {
namespace {

struct DequantizeData {
  int32_t input, output;
  int32_t elements;
  uint8_t in_type;
  double scale;
  int32_t zero_point;
};

tt_status parse(Context& ctx, const NodeRec& node, DequantizeData* d) {
  tt_status st = check_arity(ctx, node, 1, 1, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  d->output = node.output(0);
  d->in_type = ctx.type(d->input);
  if (d->in_type != schema::kInt8 && d->in_type != schema::kUInt8 && d->in_type != schema::kInt16)
    return ctx.fail(TT_UNSUPPORTED, "input type ", schema::type_name(d->in_type));
  if ((st = check_type(ctx, d->output, schema::kFloat32, "output")) != TT_OK) return st;
  const Shape in = ctx.shape(d->input);
  if ((st = check_shape(ctx, d->output, in.dims, in.rank, "output")) != TT_OK) return st;
  d->elements = static_cast<int32_t>(in.elements());
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  DequantizeData d;
  memory->op_data_bytes = sizeof(DequantizeData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) {
  DequantizeData* d = static_cast<DequantizeData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float scale;
  if ((st = per_tensor_quant(ctx, d->input, "input", &scale, &d->zero_point)) != TT_OK) return st;
  d->scale = static_cast<double>(scale);
  return TT_OK;
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const DequantizeData& d = *static_cast<const DequantizeData*>(node.op_data);
  const uint8_t* x = ctx.data(d.input);
  float* y = reinterpret_cast<float*>(ctx.data(d.output));
  for (int32_t i = 0; i < d.elements; ++i) {
    int32_t q;
    switch (d.in_type) {
      case schema::kInt8: q = static_cast<int8_t>(x[i]); break;
      case schema::kUInt8: q = x[i]; break;
      default: {  // memcpy: a constant input may sit unaligned in the model
        int16_t v;
        memcpy(&v, x + 2 * i, 2);
        q = v;
        break;
      }
    }
    y[i] = static_cast<float>(d.scale * static_cast<double>(q - d.zero_point));
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kDequantize = {schema::kOpDequantize, nullptr, "DEQUANTIZE", size, prepare, eval};

}  // namespace tt
