// The training interpreter behind the C API's tt_train_* functions.
#ifndef TFLM_TRAIN_MICRO_TRAIN_TRAIN_INTERPRETER_H_
#define TFLM_TRAIN_MICRO_TRAIN_TRAIN_INTERPRETER_H_

#include "train_runtime.h"

namespace tt {
namespace train {

tt_status train_initialize(tt_trainer* it, const uint8_t* model, size_t model_len, uint8_t* arena, size_t arena_len);
tt_status train_step(TrainRuntime& rt, Message& msg, const void* image, size_t image_len, int32_t label, float* loss);
tt_status train_predict(TrainRuntime& rt, Message& msg, const void* image, size_t image_len, float* logits,
                        size_t count);
// The same with the input delivered by a row source (include/tflm_train.h, "images in rows").
tt_status train_step_rows(TrainRuntime& rt, Message& msg, tt_row_source rows, void* context, int32_t label,
                          float* loss);
tt_status train_predict_rows(TrainRuntime& rt, Message& msg, tt_row_source rows, void* context, float* logits,
                             size_t count);
// Trainable parameters and state tensors, in tensor order.
size_t parameter_count(TrainRuntime& rt);
int32_t parameter_tensor(TrainRuntime& rt, size_t index);  // -1 if out of range
// The whole tensor's current value (frozen channels of a split weight from flash).
void parameter_bytes(TrainRuntime& rt, const TensorDesc& d, uint8_t* out);

}  // namespace train
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_TRAIN_INTERPRETER_H_
