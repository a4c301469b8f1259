#include "train_kernel_util.h"

#include "../../kernels/kernel_util.h"

namespace tt {
namespace train {

Str name_of(TrainContext& ctx, const TensorDesc& t) {
  return short_name(tensor_name_of(ctx.runtime(), t.index));
}

tt_status expect_arity(TrainContext& ctx, int32_t inputs, int32_t outputs) {
  if (ctx.input_count() != inputs || ctx.output_count() != outputs)
    return ctx.fail(TT_MALFORMED_MODEL, "expects ", inputs, " inputs and ", outputs, " outputs, has ",
                    ctx.input_count(), " and ", ctx.output_count());
  const int32_t n = static_cast<int32_t>(ctx.runtime().tensors.length);
  for (int32_t i = 0; i < inputs; ++i)
    if (ctx.input(i) < 0 || ctx.input(i) >= n)
      return ctx.fail(TT_MALFORMED_MODEL, "input ", i, " is tensor index ", ctx.input(i), " (", n, " tensors)");
  for (int32_t i = 0; i < outputs; ++i)
    if (ctx.output(i) < 0 || ctx.output(i) >= n)
      return ctx.fail(TT_MALFORMED_MODEL, "output ", i, " is tensor index ", ctx.output(i), " (", n, " tensors)");
  return TT_OK;
}

tt_status expect_mode(TrainContext& ctx, uint32_t allowed) {
  static const char* const kModes[] = {"normal", "in_place", "alias", "skip", "fused"};
  if (ctx.mode() > tfmt::kFused) return ctx.fail(TT_MALFORMED_MODEL, "unknown execution mode ", ctx.mode());
  if (!(allowed & (1u << ctx.mode())))
    return ctx.fail(TT_UNSUPPORTED, "execution mode '", kModes[ctx.mode()], "' is not supported for this op");
  return TT_OK;
}

tt_status expect_dtype(TrainContext& ctx, const TensorDesc& t, uint8_t dtype, const char* role) {
  if (t.dtype != dtype)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") is ", tfmt::dtype_name(t.dtype), ", expected ",
                    tfmt::dtype_name(dtype));
  return TT_OK;
}

tt_status expect_rank(TrainContext& ctx, const TensorDesc& t, int32_t rank, const char* role) {
  if (t.rank != rank)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") has rank ", t.rank, ", expected ", rank);
  return TT_OK;
}

tt_status expect_same_shape(TrainContext& ctx, const TensorDesc& a, const TensorDesc& b, const char* what) {
  bool same = a.rank == b.rank;
  for (int32_t i = 0; same && i < a.rank; ++i) same = a.dims[i] == b.dims[i];
  if (!same) return ctx.fail(TT_SHAPE_MISMATCH, what, ": ", name_of(ctx, a), " and ", name_of(ctx, b),
                             " have different shapes");
  return TT_OK;
}

tt_status expect_addressable(TrainContext& ctx, const TensorDesc& t, const char* role) {
  if ((t.storage != tfmt::kArena && t.storage != tfmt::kPersistent && t.storage != tfmt::kFlash) ||
      (t.storage == tfmt::kPersistent && t.split_channels.length))
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") has a storage this op cannot address (",
                    t.storage, ")");
  if (t.storage == tfmt::kFlash && t.dtype == tfmt::kFloat32 && (reinterpret_cast<uintptr_t>(t.data) & 3u))
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") is float32 data in flash that is not aligned");
  return TT_OK;
}

tt_status expect_unary_int8(TrainContext& ctx, TensorDesc* x, TensorDesc* y) {
  tt_status st = expect_arity(ctx, 1, 1);
  if (st != TT_OK) return st;
  *x = ctx.tensor(ctx.input(0));
  *y = ctx.tensor(ctx.output(0));
  if ((st = expect_dtype(ctx, *x, tfmt::kInt8, "input")) != TT_OK) return st;
  if ((st = expect_dtype(ctx, *y, tfmt::kInt8, "output")) != TT_OK) return st;
  if ((st = expect_same_shape(ctx, *x, *y, "input and output")) != TT_OK) return st;
  if ((st = expect_addressable(ctx, *x, "input")) != TT_OK) return st;
  return expect_addressable(ctx, *y, "output");
}

tt_status expect_in_place_over(TrainContext& ctx, const TensorDesc& input, const TensorDesc& output) {
  const int32_t src = input.storage == tfmt::kVirtualPad ? input.source : input.index;
  if (ctx.inplace_input() != src)
    return ctx.fail(TT_MALFORMED_MODEL, "in place over tensor ", ctx.inplace_input(), ", expected tensor ", src);
  const TensorDesc s = src == input.index ? input : ctx.tensor(src);
  if (s.storage != tfmt::kArena || output.storage != tfmt::kArena || s.offset != output.offset)
    return ctx.fail(TT_MALFORMED_MODEL, "in-place output ", name_of(ctx, output), " does not start at its input's "
                    "offset");
  return TT_OK;
}

tt_status expect_elementwise_in_place(TrainContext& ctx, const TensorDesc& input, const TensorDesc& output) {
  if (ctx.mode() != tfmt::kInPlace) return TT_OK;
  if (!ctx.layout_is("elementwise")) return ctx.fail(TT_UNSUPPORTED, "in-place layout is not 'elementwise'");
  return expect_in_place_over(ctx, input, output);
}

tt_status expect_scratch(TrainContext& ctx, uint32_t bytes) {
  if (ctx.scratch_bytes() < bytes)
    return ctx.fail(TT_MALFORMED_MODEL, "needs ", bytes, " bytes of scratch, the plan gives ", ctx.scratch_bytes());
  return TT_OK;
}

tt_status spatial_of(TrainContext& ctx, const TensorDesc& t, uint8_t dtype, const char* role, Spatial* s) {
  tt_status st = expect_dtype(ctx, t, dtype, role);
  if (st != TT_OK) return st;
  if (t.rank != 4 || t.dims[0] != 1)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") must be 1xHxWxC (batch 1)");
  *s = Spatial();
  s->lh = t.dims[1];
  s->lw = t.dims[2];
  s->c = t.dims[3];
  switch (t.storage) {
    case tfmt::kArena:
    case tfmt::kBand:  // a band chain's window: the band driver points the core at the rows it holds
    case tfmt::kPersistent:
    case tfmt::kFlash:
      if (t.storage == tfmt::kPersistent && t.split_channels.length)
        return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") is a split weight");
      s->tensor = t.index;
      s->data = t.data;
      s->h = t.dims[1];
      s->w = t.dims[2];
      return TT_OK;
    case tfmt::kChannel:
      s->tensor = t.index;
      s->channel = true;
      s->h = t.dims[1];
      s->w = t.dims[2];
      return TT_OK;
    case tfmt::kVirtualPad:
    case tfmt::kVirtualCrop: {
      const TensorDesc src = ctx.tensor(t.source);
      s->tensor = src.index;
      s->channel = src.storage == tfmt::kChannel;
      s->data = s->channel ? nullptr : src.data;
      s->h = src.dims[1];
      s->w = src.dims[2];
      s->top = t.pad[0];
      s->left = t.pad[2];
      return TT_OK;
    }
    default:
      return ctx.fail(TT_MALFORMED_MODEL, role, " (", name_of(ctx, t), ") has no storage");
  }
}

int32_t Int8Weights::slot(int32_t c) const {
  int32_t lo = 0, hi = nsel - 1;
  while (lo <= hi) {
    const int32_t mid = (lo + hi) / 2;
    const int32_t v = selected(mid);
    if (v == c) return mid;
    if (v < c)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

tt_status int8_weights_of(TrainContext& ctx, const TensorDesc& t, const char* role, Int8Weights* w) {
  tt_status st = expect_dtype(ctx, t, tfmt::kInt8, role);
  if (st != TT_OK) return st;
  if (t.rank < 1 || t.rank > 4)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") has rank ", t.rank);
  *w = Int8Weights();
  w->rank = t.rank;
  for (int32_t i = 0; i < t.rank; ++i) w->dims[i] = t.dims[i];
  w->last = t.dims[t.rank - 1];
  if (t.storage == tfmt::kFlash) {
    w->full = reinterpret_cast<const int8_t*>(t.data);
    return TT_OK;
  }
  if (t.storage != tfmt::kPersistent)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") must be a constant or a parameter");
  w->ram = i8_data(t);
  if (!t.split_channels.length) {
    w->full = w->ram;
    return TT_OK;
  }
  uint32_t len;
  w->full = reinterpret_cast<const int8_t*>(buffer_data(ctx.runtime(), t.buffer, &len));
  w->sel = ctx.meta().bytes(t.split_channels);
  w->nsel = static_cast<int32_t>(t.split_channels.length);
  return TT_OK;
}

tt_status f32_table(TrainContext& ctx, const char* attr, int32_t n, F32Table* table) {
  Vector v;
  tt_status st = ctx.attr_floats(attr, &v);
  if (st != TT_OK) return st;
  if (v.length != 1 && v.length != static_cast<uint32_t>(n))
    return ctx.fail(TT_MALFORMED_MODEL, "attr '", attr, "' has ", v.length, " entries, expected 1 or ", n);
  table->data = ctx.meta().bytes(v);
  table->length = v.length;
  if (ctx.preparing())
    for (uint32_t i = 0; i < v.length; ++i) {
      const float f = table->at(static_cast<int32_t>(i));
      if (!(f > 0.0f) || !isfinite(f))
        return ctx.fail(TT_MALFORMED_MODEL, "attr '", attr, "' entry ", i, " is not positive and finite");
    }
  return TT_OK;
}

tt_status i32_list(TrainContext& ctx, const char* attr, int32_t n, I32List* list) {
  Vector v;
  tt_status st = ctx.attr_ints(attr, &v);
  if (st != TT_OK) return st;
  if (n >= 0 && v.length != static_cast<uint32_t>(n))
    return ctx.fail(TT_MALFORMED_MODEL, "attr '", attr, "' has ", v.length, " entries, expected ", n);
  list->data = ctx.meta().bytes(v);
  list->length = v.length;
  return TT_OK;
}

tt_status int8_zero_point_attr(TrainContext& ctx, const char* attr, int32_t* zp) {
  tt_status st = ctx.attr_int(attr, zp);
  if (st == TT_OK && (*zp < -128 || *zp > 127))
    return ctx.fail(TT_MALFORMED_MODEL, "attr '", attr, "' is ", *zp, ", an int8 zero point is in [-128, 127]");
  return st;
}

namespace {

tt_status int_in_range(TrainContext& ctx, const char* name, int32_t lo, int32_t hi, int32_t* v) {
  tt_status st = ctx.attr_int(name, v);
  if (st != TT_OK) return st;
  if (*v < lo || *v > hi) return ctx.fail(TT_UNSUPPORTED, "attr '", name, "' = ", *v, " outside [", lo, ", ", hi, "]");
  return TT_OK;
}

}  // namespace

tt_status conv_geometry_attrs(TrainContext& ctx, ConvGeometry* g) {
  tt_status st;
  if ((st = int_in_range(ctx, "stride_h", 1, kMaxStride, &g->stride_h)) != TT_OK) return st;
  if ((st = int_in_range(ctx, "stride_w", 1, kMaxStride, &g->stride_w)) != TT_OK) return st;
  if ((st = int_in_range(ctx, "dilation_h", 1, kMaxStride, &g->dilation_h)) != TT_OK) return st;
  if ((st = int_in_range(ctx, "dilation_w", 1, kMaxStride, &g->dilation_w)) != TT_OK) return st;
  if ((st = int_in_range(ctx, "pad_top", 0, 65535, &g->pad_top)) != TT_OK) return st;
  return int_in_range(ctx, "pad_left", 0, 65535, &g->pad_left);
}

tt_status forward_window(TrainContext& ctx, int32_t in_h, int32_t in_w, int32_t k_h, int32_t k_w, int32_t out_h,
                         int32_t out_w, ConvGeometry* g) {
  tt_status st;
  if ((st = int_in_range(ctx, "stride_h", 1, kMaxStride, &g->stride_h)) != TT_OK) return st;
  if ((st = int_in_range(ctx, "stride_w", 1, kMaxStride, &g->stride_w)) != TT_OK) return st;
  g->dilation_h = g->dilation_w = 1;
  if (ctx.has_attr("dilation_h")) {
    if ((st = int_in_range(ctx, "dilation_h", 1, kMaxStride, &g->dilation_h)) != TT_OK) return st;
    if ((st = int_in_range(ctx, "dilation_w", 1, kMaxStride, &g->dilation_w)) != TT_OK) return st;
  }
  Str padding;
  if ((st = ctx.attr_string("padding", &padding)) != TT_OK) return st;
  uint8_t code;
  if (str_equal(padding, "SAME"))
    code = schema::kPaddingSame;
  else if (str_equal(padding, "VALID"))
    code = schema::kPaddingValid;
  else
    return ctx.fail(TT_UNSUPPORTED, "padding '", padding, "' (SAME or VALID)");
  if (k_h < 1 || k_w < 1 || static_cast<int64_t>(k_h) * k_w > 65000)
    return ctx.fail(TT_UNSUPPORTED, "window of ", k_h, "x", k_w);
  const int32_t eh = window_output_size(code, in_h, k_h, g->stride_h, g->dilation_h);
  const int32_t ew = window_output_size(code, in_w, k_w, g->stride_w, g->dilation_w);
  if (eh != out_h || ew != out_w)
    return ctx.fail(TT_SHAPE_MISMATCH, "output is ", out_h, "x", out_w, ", the window gives ", eh, "x", ew);
  g->pad_top = code == schema::kPaddingSame ? window_padding(in_h, k_h, g->stride_h, g->dilation_h, out_h) : 0;
  g->pad_left = code == schema::kPaddingSame ? window_padding(in_w, k_w, g->stride_w, g->dilation_w, out_w) : 0;
  return TT_OK;
}

tt_status activation_quant(TrainContext& ctx, const TensorDesc& t, const char* role, float* scale, int32_t* zp) {
  FlatReader& r = ctx.meta();
  if (t.scales.length != 1)
    return ctx.fail(TT_UNSUPPORTED, role, " (", name_of(ctx, t), ") needs per-tensor quantization, has ",
                    t.scales.length, " scales");
  *scale = r.f32_in(t.scales, 0);
  *zp = t.zero_points.length ? r.i32_in(t.zero_points, 0) : 0;
  if (*zp < -128 || *zp > 127)
    return ctx.fail(TT_MALFORMED_MODEL, role, " (", name_of(ctx, t), ") zero point ", *zp, " outside int8");
  return TT_OK;
}

tt_status activation_clamp(TrainContext& ctx, const TensorDesc& y, int32_t* lo, int32_t* hi) {
  Str act;
  tt_status st = ctx.attr_string("activation", &act);
  if (st != TT_OK) return st;
  uint8_t code;
  if (str_equal(act, "NONE"))
    code = schema::kActNone;
  else if (str_equal(act, "RELU"))
    code = schema::kActRelu;
  else if (str_equal(act, "RELU6"))
    code = schema::kActRelu6;
  else if (str_equal(act, "RELU_N1_TO_1"))
    code = schema::kActReluN1To1;
  else
    return ctx.fail(TT_UNSUPPORTED, "fused activation '", act, "'");
  float scale;
  int32_t zp;
  if ((st = activation_quant(ctx, y, "output", &scale, &zp)) != TT_OK) return st;
  if (!activation_range(code, scale, zp, -128, 127, lo, hi))
    return ctx.fail(TT_UNSUPPORTED, "fused activation '", act, "'");
  return TT_OK;
}

}  // namespace train
}  // namespace tt
