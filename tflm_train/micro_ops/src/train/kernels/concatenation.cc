// CONCATENATION (forward, int8) of the training graph: as TFLite Micro's
// (src/kernels/concatenation.cc), every input shares the output's quantization
// and, for each index of the dimensions before the axis, each input's block
// from the axis on is copied in input order. Attrs: axis (the QuantGraph's),
// activation (NONE).
#include <string.h>

#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

constexpr int32_t kMaxInputs = 10;  // TFLite Micro's limit

struct Concatenation {
  const uint8_t* x[kMaxInputs] = {};
  int64_t block[kMaxInputs] = {};  // bytes per outer index
  int32_t count = 0;
  int64_t outer = 1;
  uint8_t* y = nullptr;
};

// The op's axis as a dimension of a rank-`rank` tensor.
tt_status positive_axis(TrainContext& ctx, int32_t rank, int32_t* axis) {
  tt_status st = ctx.attr_int("axis", axis);
  if (st != TT_OK) return st;
  if (*axis < 0) *axis += rank;
  if (*axis < 0 || *axis >= rank) return ctx.fail(TT_MALFORMED_MODEL, "axis out of range for rank ", rank);
  return TT_OK;
}

tt_status parse(TrainContext& ctx, Concatenation* p) {
  const int32_t n = ctx.input_count();
  if (n < 1 || n > kMaxInputs) return ctx.fail(TT_UNSUPPORTED, "has ", n, " inputs, 1 to ", kMaxInputs, " expected");
  tt_status st = expect_arity(ctx, n, 1);
  if (st != TT_OK) return st;
  Str act;
  if ((st = ctx.attr_string("activation", &act)) != TT_OK) return st;
  if (!str_equal(act, "NONE")) return ctx.fail(TT_UNSUPPORTED, "a fused activation (NONE expected)");
  const TensorDesc y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, y, tfmt::kInt8, "output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, y, "output")) != TT_OK) return st;
  int32_t axis;
  if ((st = positive_axis(ctx, y.rank, &axis)) != TT_OK) return st;
  float s_out;
  int32_t zp_out;
  if ((st = activation_quant(ctx, y, "output", &s_out, &zp_out)) != TT_OK) return st;
  int32_t along = 0;
  for (int32_t i = 0; i < n; ++i) {
    const TensorDesc x = ctx.tensor(ctx.input(i));
    if ((st = expect_dtype(ctx, x, tfmt::kInt8, "input")) != TT_OK) return st;
    if ((st = expect_addressable(ctx, x, "input")) != TT_OK) return st;
    float s;
    int32_t zp;
    if ((st = activation_quant(ctx, x, "input", &s, &zp)) != TT_OK) return st;
    if (s != s_out || zp != zp_out)
      return ctx.fail(TT_UNSUPPORTED, "input ", i, " is quantized unlike the output (int8 CONCATENATION does not "
                      "requantize)");
    if (x.rank != y.rank) return ctx.fail(TT_SHAPE_MISMATCH, "input ", i, " has another rank than the output");
    int64_t block = 1;
    for (int32_t k = 0; k < y.rank; ++k) {
      if (k != axis && x.dims[k] != y.dims[k])
        return ctx.fail(TT_SHAPE_MISMATCH, "input ", i, " differs from the output in dimension ", k);
      if (k >= axis) block *= x.dims[k];
    }
    p->x[i] = x.data;
    p->block[i] = block;
    along += x.dims[axis];
  }
  if (along != y.dims[axis]) return ctx.fail(TT_SHAPE_MISMATCH, "inputs do not add up to the output along the axis");
  p->outer = 1;
  for (int32_t k = 0; k < axis; ++k) p->outer *= y.dims[k];
  p->count = n;
  p->y = y.data;
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  Concatenation p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  if (st != TT_OK) return st;
  for (int32_t i = 0; i < p.count; ++i)
    if ((st = ctx.reads(ctx.tensor(ctx.input(i)))) != TT_OK) return st;
  return ctx.writes(ctx.tensor(ctx.output(0)));
}

tt_status eval(TrainContext& ctx) {
  Concatenation p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  uint8_t* y = p.y;
  for (int64_t k = 0; k < p.outer; ++k) {
    for (int32_t i = 0; i < p.count; ++i) {
      memcpy(y, p.x[i] + k * p.block[i], static_cast<size_t>(p.block[i]));
      y += p.block[i];
    }
  }
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainConcatenation = {"CONCATENATION", prepare, eval};

}  // namespace train
}  // namespace tt
