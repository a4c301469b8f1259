#include "kernel_util.h"

namespace tt {

tt_status check_arity(Context& ctx, const NodeRec& node, int32_t min_inputs, int32_t max_inputs, int32_t outputs) {
  if (node.input_count < min_inputs || node.input_count > max_inputs) {
    if (min_inputs == max_inputs)
      return ctx.fail(TT_MALFORMED_MODEL, "expects ", min_inputs, " inputs, has ", node.input_count);
    return ctx.fail(TT_MALFORMED_MODEL, "expects ", min_inputs, " to ", max_inputs, " inputs, has ",
                    node.input_count);
  }
  for (int32_t i = 0; i < min_inputs; ++i)
    if (node.input(i) < 0) return ctx.fail(TT_MALFORMED_MODEL, "mandatory input ", i, " is missing");
  if (node.output_count != outputs)
    return ctx.fail(TT_MALFORMED_MODEL, "expects ", outputs, " outputs, has ", node.output_count);
  return TT_OK;
}

tt_status check_type(Context& ctx, int32_t t, uint8_t type, const char* role) {
  if (ctx.type(t) != type)
    return ctx.fail(TT_UNSUPPORTED, role, " (", ctx.tensor_name(t), ") is ", schema::type_name(ctx.type(t)),
                    ", expected ", schema::type_name(type));
  return TT_OK;
}

tt_status check_rank(Context& ctx, int32_t t, int32_t rank, const char* role) {
  const Shape s = ctx.shape(t);
  if (s.rank != rank)
    return ctx.fail(TT_UNSUPPORTED, role, " (", ctx.tensor_name(t), ") has rank ", s.rank, ", expected ", rank);
  return TT_OK;
}

bool integer_range(uint8_t type, int32_t* qmin, int32_t* qmax) {
  switch (type) {
    case schema::kInt8: *qmin = -128; *qmax = 127; return true;
    case schema::kUInt8: *qmin = 0; *qmax = 255; return true;
    case schema::kInt16: *qmin = -32768; *qmax = 32767; return true;
    default: return false;
  }
}

tt_status per_tensor_quant(Context& ctx, int32_t t, const char* role, float* scale, int32_t* zero_point) {
  const uint32_t n = ctx.scale_count(t);
  if (n != 1)
    return ctx.fail(TT_UNSUPPORTED, role, " (", ctx.tensor_name(t), ") needs per-tensor quantization, has ", n,
                    " scales");
  *scale = ctx.scale(t);
  *zero_point = ctx.zero_point(t);
  if (!(*scale > 0.0f) || !isfinite(*scale))
    return ctx.fail(TT_MALFORMED_MODEL, role, " (", ctx.tensor_name(t), ") has a scale that is not positive");
  int32_t qmin, qmax;
  if (integer_range(ctx.type(t), &qmin, &qmax) && (*zero_point < qmin || *zero_point > qmax))
    return ctx.fail(TT_MALFORMED_MODEL, role, " (", ctx.tensor_name(t), ") zero point ", *zero_point,
                    " is outside its type's range");
  return TT_OK;
}

tt_status fused_activation_range(Context& ctx, uint8_t activation, int32_t output, int32_t* lo, int32_t* hi) {
  int32_t qmin, qmax;
  if (!integer_range(ctx.type(output), &qmin, &qmax))
    return ctx.fail(TT_UNSUPPORTED, "output type ", schema::type_name(ctx.type(output)));
  if (!activation_range(activation, ctx.scale(output), ctx.zero_point(output), qmin, qmax, lo, hi))
    return ctx.fail(TT_UNSUPPORTED, "fused activation ", schema::activation_name(activation));
  return TT_OK;
}

tt_status quantized_multiplier(Context& ctx, double real, const char* what, int32_t* multiplier, int* shift) {
  if (!(real > 0.0) || !isfinite(real))
    return ctx.fail(TT_MALFORMED_MODEL, what, " rescale factor is not positive and finite");
  quantize_multiplier(real, multiplier, shift);
  if (*shift > 31) return ctx.fail(TT_UNSUPPORTED, what, " rescale factor is too large (2^", *shift, ")");
  return TT_OK;
}

// In int64: strides and dilations are at most kMaxStride (checked), dims below 2^31.
int32_t window_output_size(uint8_t padding, int32_t in, int32_t filter, int32_t stride, int32_t dilation) {
  const int64_t effective = static_cast<int64_t>(filter - 1) * dilation + 1;
  if (padding == schema::kPaddingSame) return static_cast<int32_t>((static_cast<int64_t>(in) + stride - 1) / stride);
  return in >= effective ? static_cast<int32_t>((in - effective + stride) / stride) : 0;
}

int32_t window_padding(int32_t in, int32_t filter, int32_t stride, int32_t dilation, int32_t out) {
  const int64_t effective = static_cast<int64_t>(filter - 1) * dilation + 1;
  const int64_t total = static_cast<int64_t>(out - 1) * stride + effective - in;
  return total > 0 ? static_cast<int32_t>(total / 2) : 0;
}

tt_status check_window(Context& ctx, int32_t stride_h, int32_t stride_w, int32_t dilation_h, int32_t dilation_w) {
  const int32_t values[4] = {stride_h, stride_w, dilation_h, dilation_w};
  for (int32_t v : values)
    if (v < 1 || v > kMaxStride)
      return ctx.fail(TT_UNSUPPORTED, "strides and dilations must be in 1..", kMaxStride, ", got ", v);
  return TT_OK;
}

tt_status check_shape(Context& ctx, int32_t t, const int32_t* dims, int32_t count, const char* role) {
  const Shape s = ctx.shape(t);
  bool same = s.rank == count;
  for (int32_t i = 0; same && i < count; ++i) same = s.dims[i] == dims[i];
  if (same) return TT_OK;
  ctx.fail(TT_SHAPE_MISMATCH, role, " (", ctx.tensor_name(t), ") has shape ");
  Message& msg = ctx.message();
  for (int32_t i = 0; i < s.rank; ++i) msg.add_all(i ? "x" : "", s.dims[i]);
  msg.add(", expected ");
  for (int32_t i = 0; i < count; ++i) msg.add_all(i ? "x" : "", dims[i]);
  return TT_SHAPE_MISMATCH;
}

tt_status check_unary_int8(Context& ctx, const NodeRec& node, int32_t* input, int32_t* output, int32_t* elements) {
  tt_status st = check_arity(ctx, node, 1, 1, 1);
  if (st != TT_OK) return st;
  *input = node.input(0);
  *output = node.output(0);
  if ((st = check_type(ctx, *input, schema::kInt8, "input")) != TT_OK) return st;
  if ((st = check_type(ctx, *output, schema::kInt8, "output")) != TT_OK) return st;
  const Shape in = ctx.shape(*input);
  if ((st = check_shape(ctx, *output, in.dims, in.rank, "output")) != TT_OK) return st;
  *elements = static_cast<int32_t>(in.elements());
  return TT_OK;
}

tt_status per_channel_multipliers(Context& ctx, int32_t filter, int32_t out_c, int32_t quantized_dim, float s_in,
                                  float s_out, int32_t* multiplier, int8_t* shift) {
  const uint32_t n_scales = ctx.scale_count(filter);
  if (n_scales != 1 && n_scales != static_cast<uint32_t>(out_c))
    return ctx.fail(TT_MALFORMED_MODEL, "filter has ", n_scales, " scales for ", out_c, " output channels");
  if (n_scales > 1 && ctx.quantized_dimension(filter) != quantized_dim)
    return ctx.fail(TT_UNSUPPORTED, "per-channel filter quantized along dimension ", ctx.quantized_dimension(filter),
                    " (expected ", quantized_dim, ")");
  const Context::Quantization q = ctx.quantization(filter);
  FlatReader& r = ctx.reader();
  for (uint32_t c = 0; c < q.zero_points.length; ++c)
    if (r.i64_in(q.zero_points, c) != 0) return ctx.fail(TT_UNSUPPORTED, "filter zero points must be 0");
  for (int32_t c = 0; c < out_c; ++c) {
    const float s_w = r.f32_in(q.scales, n_scales == 1 ? 0 : static_cast<uint32_t>(c));
    const double real = static_cast<double>(s_in) * static_cast<double>(s_w) / static_cast<double>(s_out);
    int channel_shift;
    const tt_status st = quantized_multiplier(ctx, real, "output", &multiplier[c], &channel_shift);
    if (st != TT_OK) return st;
    shift[c] = static_cast<int8_t>(channel_shift);
  }
  return TT_OK;
}

}  // namespace tt
