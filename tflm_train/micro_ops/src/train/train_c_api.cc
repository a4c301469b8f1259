// The training part of the C API (include/tflm_train.h, tt_train_* / tt_parameter_*).
#include <string.h>

#include "train_interpreter.h"

using tt::Message;
using tt::train::TensorDesc;
using tt::train::TrainRuntime;

namespace {

TrainRuntime* runtime_of(const tt_trainer* tr) { return tr ? static_cast<TrainRuntime*>(tr->impl) : nullptr; }

tt_status finish(tt_trainer* tr, tt_status status) {
  tr->status = status;
  return status;
}

tt_status not_ready(tt_trainer* tr) {
  Message msg(tr->message, sizeof(tr->message));
  msg.add("trainer is not initialized (tt_train_init failed or was not called)");
  return finish(tr, TT_NOT_READY);
}

tt_status bad_argument(tt_trainer* tr, const char* what) {
  Message msg(tr->message, sizeof(tr->message));
  msg.add(what);
  return finish(tr, TT_INVALID_ARGUMENT);
}

int32_t tflite_type(uint8_t dtype) {
  switch (dtype) {
    case tt::tfmt::kInt8: return TT_INT8;
    case tt::tfmt::kUInt8: return TT_UINT8;
    case tt::tfmt::kInt16: return TT_INT16;
    case tt::tfmt::kInt32: return TT_INT32;
    case tt::tfmt::kInt64: return TT_INT64;
    case tt::tfmt::kUInt32: return TT_UINT32;
    default: return TT_FLOAT32;
  }
}

}  // namespace

extern "C" {

int tt_is_training_model(const uint8_t* model, size_t model_len) {
  if (!model || model_len < 8 || model_len > 0x7FFFFFFFu || memcmp(model + 4, "TFL3", 4) != 0) return 0;
  tt::FlatReader reader(model, static_cast<uint32_t>(model_len));
  char buf[TT_MESSAGE_CAPACITY];
  Message msg(buf, sizeof buf);
  const uint8_t* meta;
  uint32_t meta_len;
  // A metadata entry named "tflm_train.train" makes it a training model, valid or not
  // (tt_train_init then says what is wrong with it).
  return tt::train::locate_metadata(reader, &meta, &meta_len, msg) != TT_UNSUPPORTED ? 1 : 0;
}

tt_status tt_train_init(tt_trainer* tr, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len) {
  if (!tr) return TT_INVALID_ARGUMENT;
  return finish(tr, tt::train::train_initialize(tr, model, model_len, arena, arena_len));
}

tt_status tt_train_step(tt_trainer* tr, const void* image, size_t image_len, int32_t label, float* loss) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  if (!image) return bad_argument(tr, "image is NULL");
  Message msg(tr->message, sizeof(tr->message));
  float value = 0.0f;
  const tt_status st = tt::train::train_step(*rt, msg, image, image_len, label, &value);
  if (st == TT_OK && loss) *loss = value;
  return finish(tr, st);
}

tt_status tt_train_step_rows(tt_trainer* tr, tt_row_source rows, void* context, int32_t label, float* loss) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  if (!rows) return bad_argument(tr, "row source is NULL");
  Message msg(tr->message, sizeof(tr->message));
  float value = 0.0f;
  const tt_status st = tt::train::train_step_rows(*rt, msg, rows, context, label, &value);
  if (st == TT_OK && loss) *loss = value;
  return finish(tr, st);
}

tt_status tt_train_predict_rows(tt_trainer* tr, tt_row_source rows, void* context, float* logits, size_t count) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  if (!rows || !logits) return bad_argument(tr, "row source or logits buffer is NULL");
  Message msg(tr->message, sizeof(tr->message));
  return finish(tr, tt::train::train_predict_rows(*rt, msg, rows, context, logits, count));
}

tt_status tt_train_predict(tt_trainer* tr, const void* image, size_t image_len, float* logits, size_t count) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  if (!image || !logits) return bad_argument(tr, "image or logits buffer is NULL");
  Message msg(tr->message, sizeof(tr->message));
  return finish(tr, tt::train::train_predict(*rt, msg, image, image_len, logits, count));
}

tt_status tt_train_get_info(tt_trainer* tr, tt_train_info* info) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  if (!info) return bad_argument(tr, "info is NULL");
  memset(info, 0, sizeof(*info));
  const TensorDesc image = tt::train::decode_tensor(*rt, rt->image);
  info->image.type = TT_INT8;
  info->image.rank = image.rank;
  for (int32_t i = 0; i < image.rank; ++i) info->image.dims[i] = image.dims[i];
  info->image.bytes = static_cast<size_t>(image.bytes);
  info->image.scale = image.scales.length ? rt->meta.f32_in(image.scales, 0) : 0.0f;
  info->image.zero_point = image.zero_points.length ? rt->meta.i32_in(image.zero_points, 0) : 0;
  info->num_classes = rt->num_classes;
  info->head_is_float = rt->head_is_float;
  info->op_count = rt->step_count;
  info->parameter_count = static_cast<uint32_t>(tt::train::parameter_count(*rt));
  info->plan_arena_bytes = rt->arena_bytes;
  info->persistent_bytes = rt->persistent_bytes;
  info->runtime_state_bytes = static_cast<size_t>(rt->arena - reinterpret_cast<uint8_t*>(rt));
  info->steps_done = rt->steps_done;
  info->rng_state = rt->rng >= 0 ? *reinterpret_cast<const uint32_t*>(tt::train::decode_tensor(*rt, rt->rng).data) : 0;
  info->logit_absmax = rt->logit_absmax;
  const int64_t row = image.rank == 4 ? static_cast<int64_t>(image.dims[2]) * image.dims[3] : 0;
  info->input_window_rows = rt->stream_input && row > 0 ? static_cast<int32_t>(image.arena_bytes / row) : 0;
  return finish(tr, TT_OK);
}

size_t tt_parameter_count(const tt_trainer* tr) {
  TrainRuntime* rt = runtime_of(tr);
  return rt ? tt::train::parameter_count(*rt) : 0;
}

tt_status tt_parameter_info(tt_trainer* tr, size_t index, tt_parameter* info) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  const int32_t t = tt::train::parameter_tensor(*rt, index);
  if (t < 0 || !info) {
    Message msg(tr->message, sizeof(tr->message));
    msg.add_all("no parameter ", static_cast<unsigned long long>(index), " (the model has ",
                static_cast<unsigned long long>(tt::train::parameter_count(*rt)), ")");
    return finish(tr, TT_INVALID_ARGUMENT);
  }
  const TensorDesc d = tt::train::decode_tensor(*rt, t);
  memset(info, 0, sizeof(*info));
  const tt::Str name = tt::train::tensor_name_of(*rt, t);
  info->name = name.data;
  info->name_length = name.length;
  info->kind = d.kind == tt::tfmt::kState ? 1 : 0;
  info->type = tflite_type(d.dtype);
  info->rank = d.rank;
  for (int32_t i = 0; i < d.rank; ++i) info->dims[i] = d.dims[i];
  info->bytes = static_cast<size_t>(d.bytes);
  info->sram_bytes = d.storage == tt::tfmt::kPersistent ? static_cast<size_t>(d.arena_bytes) : 0;
  return finish(tr, TT_OK);
}

namespace {

// The trainer-held parameter `index` whose whole tensor is `len` bytes, or the failing status
// (with its message) of whichever of those does not hold.
tt_status held_parameter(tt_trainer* tr, size_t index, const void* data, size_t len, TrainRuntime** rt_out,
                         TensorDesc* out) {
  if (!tr) return TT_INVALID_ARGUMENT;
  TrainRuntime* rt = runtime_of(tr);
  if (!rt) return not_ready(tr);
  const int32_t t = tt::train::parameter_tensor(*rt, index);
  Message msg(tr->message, sizeof(tr->message));
  if (t < 0) {
    msg.add_all("no parameter ", static_cast<unsigned long long>(index));
    return finish(tr, TT_INVALID_ARGUMENT);
  }
  const TensorDesc d = tt::train::decode_tensor(*rt, t);
  if (!data || len != static_cast<size_t>(d.bytes)) {
    msg.add_all("parameter ", static_cast<unsigned long long>(index), " is ", static_cast<long long>(d.bytes),
                " bytes, got a buffer of ", static_cast<unsigned long long>(len));
    return finish(tr, TT_SHAPE_MISMATCH);
  }
  if (d.storage != tt::tfmt::kPersistent) {
    msg.add_all("parameter ", static_cast<unsigned long long>(index), " is not held by the trainer");
    return finish(tr, TT_UNSUPPORTED);
  }
  *rt_out = rt;
  *out = d;
  return TT_OK;
}

}  // namespace

tt_status tt_parameter_data(tt_trainer* tr, size_t index, void* data, size_t len) {
  TrainRuntime* rt = nullptr;
  TensorDesc d;
  const tt_status status = held_parameter(tr, index, data, len, &rt, &d);
  if (status != TT_OK) return status;
  tt::train::parameter_bytes(*rt, d, static_cast<uint8_t*>(data));
  return finish(tr, TT_OK);
}

tt_status tt_parameter_set_data(tt_trainer* tr, size_t index, const void* data, size_t len) {
  TrainRuntime* rt = nullptr;
  TensorDesc d;
  const tt_status status = held_parameter(tr, index, data, len, &rt, &d);
  if (status != TT_OK) return status;
  const uint8_t* in = static_cast<const uint8_t*>(data);
  if (!d.split_channels.length) {
    memcpy(d.data, in, static_cast<size_t>(d.bytes));
    return finish(tr, TT_OK);
  }
  // A split weight holds only its trained channels in SRAM; the frozen ones stay in
  // flash, so they must arrive unchanged. Checked in full before one byte is written.
  uint32_t flash_len;
  const uint8_t* flash = tt::train::buffer_data(*rt, d.buffer, &flash_len);
  const uint32_t es = tt::tfmt::dtype_size(d.dtype), nsel = d.split_channels.length;
  const int32_t last = d.dims[d.rank - 1];
  const int64_t rows = d.elements / last;
  for (int64_t row = 0; row < rows; ++row) {
    uint32_t j = 0;
    for (int32_t c = 0; c < last; ++c) {
      if (j < nsel && rt->meta.i32_in(d.split_channels, j) == c) {
        ++j;
        continue;
      }
      const int64_t at = (row * last + c) * es;
      if (memcmp(in + at, flash + at, es) != 0) {
        Message msg(tr->message, sizeof(tr->message));
        msg.add_all("parameter ", static_cast<unsigned long long>(index), ": channel ", static_cast<long long>(c),
                    " is frozen by the scheme and must keep its bytes");
        return finish(tr, TT_INVALID_ARGUMENT);
      }
    }
  }
  for (int64_t row = 0; row < rows; ++row)
    for (uint32_t j = 0; j < nsel; ++j) {
      const int32_t c = rt->meta.i32_in(d.split_channels, j);
      memcpy(d.data + (row * nsel + j) * es, in + (row * last + c) * es, es);
    }
  return finish(tr, TT_OK);
}

void* tt_train_input_buffer(tt_trainer* tr) {
  TrainRuntime* rt = runtime_of(tr);
  return rt && !rt->stream_input ? tt::train::decode_tensor(*rt, rt->image).data : nullptr;
}

size_t tt_train_arena_used(const tt_trainer* tr) {
  TrainRuntime* rt = runtime_of(tr);
  return rt ? rt->arena_used : 0;
}

size_t tt_train_arena_needed(const tt_trainer* tr) { return tr ? tr->arena_needed : 0; }

const char* tt_train_error_message(const tt_trainer* tr) { return tr ? tr->message : "trainer handle is NULL"; }

}  // extern "C"
