// ADD, int8 with NumPy-style broadcasting: TFLite Micro's reference integer add.
// Both inputs are rescaled to a common scale 2 * max(s1, s2) with 20 bits of
// headroom (x << 20, then multipliers below one), summed, and rescaled to the
// output:
//   a = MBQM((x1 - zp1) << 20, M1),  b = MBQM((x2 - zp2) << 20, M2)
//   y = clamp(MBQM(a + b, Mout) + zp_out)
// with M1 = s1 / (2 max), M2 = s2 / (2 max), Mout = 2 max / (2^20 s_out).
#include "int8_common.h"
#include "kernel_util.h"

namespace tt {
namespace {


struct AddData {
  int32_t input1, input2, output;
  int32_t input1_offset, input2_offset, output_offset;
  AddRescale rescale;  // int8_common.h, shared with the training graph's ADD
  int32_t act_min, act_max;
  int32_t elements;
  bool broadcast;
  int32_t out_dims[TT_MAX_RANK];  // shapes extended to 6 dims (leading ones)
  int32_t stride1[TT_MAX_RANK];   // element strides, 0 along broadcast dims
  int32_t stride2[TT_MAX_RANK];
};

// Extend `s` to 6 dims and compute its strides (0 where the dim is 1 and broadcast).
void broadcast_strides(const Shape& s, const int32_t* out_dims, int32_t* strides) {
  int32_t ext[TT_MAX_RANK];
  for (int32_t i = 0; i < TT_MAX_RANK; ++i) {
    const int32_t k = i - (TT_MAX_RANK - s.rank);
    ext[i] = k >= 0 ? s.dim(k) : 1;
  }
  int32_t stride = 1;
  for (int32_t i = TT_MAX_RANK - 1; i >= 0; --i) {
    strides[i] = (ext[i] == 1 && out_dims[i] != 1) ? 0 : stride;
    stride *= ext[i];
  }
}

tt_status parse(Context& ctx, const NodeRec& node, AddData* d) {
  tt_status st = check_arity(ctx, node, 2, 2, 1);
  if (st != TT_OK) return st;
  d->input1 = node.input(0);
  d->input2 = node.input(1);
  d->output = node.output(0);
  if ((st = check_type(ctx, d->input1, schema::kInt8, "input 1")) != TT_OK) return st;
  if ((st = check_type(ctx, d->input2, schema::kInt8, "input 2")) != TT_OK) return st;
  if ((st = check_type(ctx, d->output, schema::kInt8, "output")) != TT_OK) return st;
  const Shape a = ctx.shape(d->input1), b = ctx.shape(d->input2), out = ctx.shape(d->output);
  // The broadcast shape, right-aligned.
  const int32_t rank = a.rank > b.rank ? a.rank : b.rank;
  int32_t expected[TT_MAX_RANK];
  for (int32_t i = 0; i < rank; ++i) {
    const int32_t ka = i - (rank - a.rank), kb = i - (rank - b.rank);
    const int32_t da = ka >= 0 ? a.dim(ka) : 1, db = kb >= 0 ? b.dim(kb) : 1;
    if (da != db && da != 1 && db != 1)
      return ctx.fail(TT_SHAPE_MISMATCH, "input shapes do not broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    expected[i] = da == 1 ? db : da;
  }
  if ((st = check_shape(ctx, d->output, expected, rank, "output")) != TT_OK) return st;
  for (int32_t i = 0; i < TT_MAX_RANK; ++i) {
    const int32_t k = i - (TT_MAX_RANK - rank);
    d->out_dims[i] = k >= 0 ? expected[k] : 1;
  }
  broadcast_strides(a, d->out_dims, d->stride1);
  broadcast_strides(b, d->out_dims, d->stride2);
  d->elements = static_cast<int32_t>(out.elements());
  d->broadcast = a.elements() != out.elements() || b.elements() != out.elements();
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  AddData d;
  const tt_status st = parse(ctx, node, &d);
  memory->op_data_bytes = sizeof(AddData);
  return st;
}

tt_status prepare(Context& ctx, NodeRec& node) {
  AddData* d = static_cast<AddData*>(node.op_data);
  tt_status st = parse(ctx, node, d);
  if (st != TT_OK) return st;
  float s1, s2, s_out;
  int32_t zp1, zp2, zp_out;
  if ((st = per_tensor_quant(ctx, d->input1, "input 1", &s1, &zp1)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->input2, "input 2", &s2, &zp2)) != TT_OK) return st;
  if ((st = per_tensor_quant(ctx, d->output, "output", &s_out, &zp_out)) != TT_OK) return st;
  d->input1_offset = -zp1;
  d->input2_offset = -zp2;
  d->output_offset = zp_out;
  if (!add_rescale(s1, s2, s_out, &d->rescale))
    return ctx.fail(TT_UNSUPPORTED, "output scale below 2^-20 of the input scales");
  const uint8_t activation = ctx.reader().u8(ctx.options(node, schema::kOptionsAdd), schema::kAddActivation, 0);
  return fused_activation_range(ctx, activation, d->output, &d->act_min, &d->act_max);
}

inline int8_t add_one(const AddData& d, int32_t x1, int32_t x2) {
  const int32_t sum = add_rescaled(d.rescale, x1 + d.input1_offset, x2 + d.input2_offset);
  return static_cast<int8_t>(clamp_i32(sum + d.output_offset, d.act_min, d.act_max));
}

tt_status eval(Context& ctx, const NodeRec& node) {
  const AddData& d = *static_cast<const AddData*>(node.op_data);
  const int8_t* x1 = as_i8(ctx.data(d.input1));
  const int8_t* x2 = as_i8(ctx.data(d.input2));
  int8_t* y = as_i8(ctx.data(d.output));
  if (!d.broadcast) {
    add_elementwise(d.rescale, d.input1_offset, d.input2_offset, d.output_offset, d.act_min, d.act_max, x1, x2, y,
                    d.elements);
    return TT_OK;
  }
  int32_t index[TT_MAX_RANK] = {0, 0, 0, 0, 0, 0};
  for (int32_t i = 0; i < d.elements; ++i) {
    int32_t o1 = 0, o2 = 0;
    for (int32_t k = 0; k < TT_MAX_RANK; ++k) {
      o1 += index[k] * d.stride1[k];
      o2 += index[k] * d.stride2[k];
    }
    y[i] = add_one(d, x1[o1], x2[o2]);
    for (int32_t k = TT_MAX_RANK - 1; k >= 0; --k) {  // odometer increment
      if (++index[k] < d.out_dims[k]) break;
      index[k] = 0;
    }
  }
  return TT_OK;
}

}  // namespace

extern const Kernel kAdd = {schema::kOpAdd, nullptr, "ADD", size, prepare, eval};

}  // namespace tt
