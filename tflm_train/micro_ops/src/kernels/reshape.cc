// RESHAPE: the output shape is the output tensor's (static) shape; the bytes
// are copied unchanged (the optional shape input is not needed).
#include <string.h>

#include "kernel_util.h"

namespace tt {
namespace {

struct ReshapeData {
  int32_t input, output;
  uint32_t bytes;
};

tt_status parse(Context& ctx, const NodeRec& node, ReshapeData* d) {
  tt_status st = check_arity(ctx, node, 1, 2, 1);
  if (st != TT_OK) return st;
  d->input = node.input(0);
  d->output = node.output(0);
  if (ctx.type(d->input) != ctx.type(d->output))
    return ctx.fail(TT_SHAPE_MISMATCH, "input is ", schema::type_name(ctx.type(d->input)), ", output is ",
                    schema::type_name(ctx.type(d->output)));
  if (ctx.shape(d->input).elements() != ctx.shape(d->output).elements())
    return ctx.fail(TT_SHAPE_MISMATCH, "input has ", static_cast<long long>(ctx.shape(d->input).elements()),
                    " elements, output ", static_cast<long long>(ctx.shape(d->output).elements()));
  d->bytes = ctx.bytes(d->output);
  return TT_OK;
}

tt_status size(Context& ctx, const NodeRec& node, OpMemory* memory) {
  ReshapeData d;
  memory->op_data_bytes = sizeof(ReshapeData);
  return parse(ctx, node, &d);
}

tt_status prepare(Context& ctx, NodeRec& node) { return parse(ctx, node, static_cast<ReshapeData*>(node.op_data)); }

tt_status eval(Context& ctx, const NodeRec& node) {
  const ReshapeData& d = *static_cast<const ReshapeData*>(node.op_data);
  const uint8_t* src = ctx.data(d.input);
  uint8_t* dst = ctx.data(d.output);
  if (d.bytes && src != dst) memcpy(dst, src, d.bytes);
  return TT_OK;
}

}  // namespace

extern const Kernel kReshape = {schema::kOpReshape, nullptr, "RESHAPE", size, prepare, eval};

}  // namespace tt
