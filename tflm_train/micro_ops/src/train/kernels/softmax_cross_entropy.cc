// SOFTMAX_CROSS_ENTROPY(logits, label) -> loss, grad_logits (docs/training_graph.md):
//   z = deq(logits) (int8) or logits (float32); m = max z; d = z - m;
//   e = f32(exp(double(d))); S = sum e (sequential); p = e / S;
//   loss = f32(log(double(S))) - d[label]; grad = p - onehot(label).
// exp and log are evaluated in double and rounded to float32.
#include "train_kernel_util.h"

namespace tt {
namespace train {
namespace {

struct Loss {
  const uint8_t* logits = nullptr;
  bool quantized = false;
  float scale = 0.0f;
  int32_t zp = 0;
  const int32_t* label = nullptr;
  float* loss = nullptr;
  float* grad = nullptr;
  int32_t n = 0;
};

tt_status parse(TrainContext& ctx, Loss* p) {
  tt_status st = expect_arity(ctx, 2, 2);
  if (st != TT_OK) return st;
  const TensorDesc z = ctx.tensor(ctx.input(0)), label = ctx.tensor(ctx.input(1)), loss = ctx.tensor(ctx.output(0)),
                   grad = ctx.tensor(ctx.output(1));
  p->quantized = z.dtype == tfmt::kInt8;
  if (!p->quantized && (st = expect_dtype(ctx, z, tfmt::kFloat32, "logits")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, label, tfmt::kInt32, "label")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, loss, tfmt::kFloat32, "loss")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, grad, tfmt::kFloat32, "gradient")) != TT_OK) return st;
  for (const TensorDesc* t : {&z, &label, &loss, &grad})
    if ((st = expect_addressable(ctx, *t, "operand")) != TT_OK) return st;
  int32_t classes;
  if ((st = ctx.attr_int("num_classes", &classes)) != TT_OK) return st;
  if (z.elements != classes || grad.elements != classes || label.elements != 1 || loss.elements != 1 || classes < 1)
    return ctx.fail(TT_SHAPE_MISMATCH, "logits and gradient must have num_classes = ", classes,
                    " elements, label and loss one");
  bool none;
  if ((st = ctx.attr_float_or_none("logits_scale", &p->scale, &none)) != TT_OK) return st;
  if (none == p->quantized) return ctx.fail(TT_MALFORMED_MODEL, "logits_scale must be given exactly for int8 logits");
  if (p->quantized && (st = int8_zero_point_attr(ctx, "logits_zero_point", &p->zp)) != TT_OK) return st;
  p->n = classes;
  p->logits = z.data;
  p->label = reinterpret_cast<const int32_t*>(label.data);
  p->loss = f32_data(loss);
  p->grad = f32_data(grad);
  return TT_OK;
}

tt_status prepare(TrainContext& ctx) {
  Loss p;
  tt_status st = expect_mode(ctx, kAllowNormal);
  if (st == TT_OK) st = parse(ctx, &p);
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.reads(ctx.tensor(ctx.input(i)));
  for (int32_t i = 0; st == TT_OK && i < 2; ++i) st = ctx.writes(ctx.tensor(ctx.output(i)));
  return st;
}

tt_status eval(TrainContext& ctx) {
  Loss p;
  const tt_status st = parse(ctx, &p);
  if (st != TT_OK) return st;
  const int32_t label = *p.label;
  if (label < 0 || label >= p.n) return ctx.fail(TT_INVALID_ARGUMENT, "label ", label, " outside [0, ", p.n, ")");
  float* g = p.grad;  // holds z, then d, then e, then the gradient
  for (int32_t i = 0; i < p.n; ++i)
    g[i] = p.quantized ? static_cast<float>(static_cast<int8_t>(p.logits[i]) - p.zp) * p.scale
                       : load_f32(p.logits + 4 * i);
  float m = g[0];
  for (int32_t i = 1; i < p.n; ++i)
    if (g[i] > m) m = g[i];
  for (int32_t i = 0; i < p.n; ++i) g[i] = g[i] - m;
  const float d_label = g[label];
  float s = 0.0f;
  for (int32_t i = 0; i < p.n; ++i) {
    g[i] = static_cast<float>(exp(static_cast<double>(g[i])));
    s = s + g[i];
  }
  for (int32_t i = 0; i < p.n; ++i) g[i] = g[i] / s;
  g[label] = g[label] - 1.0f;
  *p.loss = static_cast<float>(log(static_cast<double>(s))) - d_label;
  return TT_OK;
}

}  // namespace

extern const TrainKernel kTrainSoftmaxCrossEntropy = {"SOFTMAX_CROSS_ENTROPY", prepare, eval};

}  // namespace train
}  // namespace tt
