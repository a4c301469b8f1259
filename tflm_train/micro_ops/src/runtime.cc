#include "runtime.h"

namespace tt {

Str Model::tensor_name(int32_t t) {
  const Vector name = reader.string_field(tensor(t), schema::kTensorName);
  Str s;
  s.data = reinterpret_cast<const char*>(reader.bytes(name));
  s.length = name.length;
  return s;
}

Shape Context::shape(int32_t t) {
  FlatReader& r = reader();
  const Vector v = r.vector_field(rt_.model.tensor(t), schema::kTensorShape, 4);
  Shape s;
  s.dims = reinterpret_cast<const int32_t*>(r.bytes(v));  // alignment checked by tt_init
  s.rank = static_cast<int32_t>(v.length);
  return s;
}

uint8_t Context::type(int32_t t) { return reader().u8(rt_.model.tensor(t), schema::kTensorType, schema::kFloat32); }

uint32_t Context::bytes(int32_t t) {
  // Fits in uint32: checked by tt_init for every tensor.
  return static_cast<uint32_t>(shape(t).elements()) * schema::type_size(type(t));
}

const uint8_t* Context::constant_data(int32_t t) {
  if (rt_.tensors) return (rt_.tensors[t].flags & kConstant) ? rt_.tensors[t].data : nullptr;
  FlatReader& r = reader();
  const uint32_t index = r.u32(rt_.model.tensor(t), schema::kTensorBuffer, 0);
  if (index == 0 || index >= rt_.model.buffers.length) return nullptr;
  const Table buffer = r.table_in(rt_.model.buffers, index);
  const Vector data = r.vector_field(buffer, schema::kBufferData, 1);
  if (data.length) return r.bytes(data);
  const uint64_t offset = r.u64(buffer, schema::kBufferOffset, 0);
  const uint64_t size = r.u64(buffer, schema::kBufferSize, 0);
  // External data (models over 2 GB); bounds checked by tt_init.
  if (offset > 1 && size) return r.base() + offset;
  return nullptr;
}

bool Context::is_constant(int32_t t) { return constant_data(t) != nullptr; }

float Context::scale(int32_t t) { return scale_count(t) ? scale_at(t, 0) : 0.0f; }

int32_t Context::zero_point(int32_t t) {
  const Vector zp = reader().vector_field(rt_.model.quantization(t), schema::kQuantZeroPoint, 8);
  if (!zp.length) return 0;
  const int64_t v = reader().i64_in(zp, 0);
  // Range checked by tt_init (every zero point fits in int32).
  return static_cast<int32_t>(v);
}

uint32_t Context::scale_count(int32_t t) {
  return reader().vector_field(rt_.model.quantization(t), schema::kQuantScale, 4).length;
}

float Context::scale_at(int32_t t, uint32_t i) {
  const Vector s = reader().vector_field(rt_.model.quantization(t), schema::kQuantScale, 4);
  return reader().f32_in(s, i);
}

Context::Quantization Context::quantization(int32_t t) {
  const Table q = rt_.model.quantization(t);
  Quantization out;
  out.scales = reader().vector_field(q, schema::kQuantScale, 4);
  out.zero_points = reader().vector_field(q, schema::kQuantZeroPoint, 8);
  return out;
}

int32_t Context::quantized_dimension(int32_t t) {
  return reader().i32(rt_.model.quantization(t), schema::kQuantizedDimension, 0);
}

Table Context::options(const NodeRec& node, uint8_t expected_type) {
  FlatReader& r = reader();
  const Table op = r.table_at_pos(node.op_table);
  const Table options = r.table_field(op, schema::kOperatorBuiltinOptions);
  if (options.present() && r.u8(op, schema::kOperatorBuiltinOptionsType, 0) != expected_type) {
    r.fail("builtin options of the wrong type for the operator", node.op_table);
    return Table();
  }
  return options;
}

}  // namespace tt
