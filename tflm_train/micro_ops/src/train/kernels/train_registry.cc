// The training-graph kernels, by op type name (TrainModel.op_types). A new
// training op is one file defining a `const TrainKernel` and one line here.
#include "../train_runtime.h"

namespace tt {
namespace train {

extern const TrainKernel kTrainAdd;
extern const TrainKernel kTrainAveragePool2D;
extern const TrainKernel kTrainAveragePool2DGrad;
extern const TrainKernel kTrainBiasUpdate;
extern const TrainKernel kTrainClampGrad;
extern const TrainKernel kTrainConcatenation;
extern const TrainKernel kTrainConcatenationGrad;
extern const TrainKernel kTrainConv2D;
extern const TrainKernel kTrainConv2DGradInput;
extern const TrainKernel kTrainConv2DUpdate;
extern const TrainKernel kTrainDepthwiseConv2D;
extern const TrainKernel kTrainDepthwiseConv2DGradInput;
extern const TrainKernel kTrainDepthwiseConv2DUpdate;
extern const TrainKernel kTrainFcFloatForward;
extern const TrainKernel kTrainFcFloatGradInput;
extern const TrainKernel kTrainFcFloatUpdate;
extern const TrainKernel kTrainFullyConnected;
extern const TrainKernel kTrainFullyConnectedGradInput;
extern const TrainKernel kTrainFullyConnectedUpdate;
extern const TrainKernel kTrainGradAccumulate;
extern const TrainKernel kTrainGradScale;
extern const TrainKernel kTrainLeakyRelu;
extern const TrainKernel kTrainLeakyReluGrad;
extern const TrainKernel kTrainMaxPool2D;
extern const TrainKernel kTrainMaxPool2DGrad;
extern const TrainKernel kTrainMean;
extern const TrainKernel kTrainMeanGrad;
extern const TrainKernel kTrainPad;
extern const TrainKernel kTrainPadGrad;
extern const TrainKernel kTrainRelu;
extern const TrainKernel kTrainRelu6;
extern const TrainKernel kTrainReshape;
extern const TrainKernel kTrainReshapeGrad;
extern const TrainKernel kTrainSoftmaxCrossEntropy;

namespace {

// Constant-initialized (no global constructor): an array of addresses.
const TrainKernel* const kTrainKernels[] = {
    &kTrainAdd,
    &kTrainAveragePool2D,
    &kTrainAveragePool2DGrad,
    &kTrainBiasUpdate,
    &kTrainClampGrad,
    &kTrainConv2D,
    &kTrainConv2DGradInput,
    &kTrainConv2DUpdate,
    &kTrainDepthwiseConv2D,
    &kTrainDepthwiseConv2DGradInput,
    &kTrainDepthwiseConv2DUpdate,
    &kTrainFcFloatForward,
    &kTrainFcFloatGradInput,
    &kTrainFcFloatUpdate,
    &kTrainFullyConnected,
    &kTrainFullyConnectedGradInput,
    &kTrainFullyConnectedUpdate,
    &kTrainGradAccumulate,
    &kTrainMaxPool2D,
    &kTrainMaxPool2DGrad,
    &kTrainMean,
    &kTrainMeanGrad,
    &kTrainPad,
    &kTrainPadGrad,
    &kTrainReshape,
    &kTrainReshapeGrad,
    &kTrainSoftmaxCrossEntropy,
    &kTrainConcatenation,
    &kTrainConcatenationGrad,
    &kTrainRelu,
    &kTrainRelu6,
    &kTrainGradScale,
    &kTrainLeakyRelu,
    &kTrainLeakyReluGrad,
};
constexpr uint32_t kCount = sizeof(kTrainKernels) / sizeof(kTrainKernels[0]);

}  // namespace

const TrainKernel* train_kernel(uint32_t id) { return id < kCount ? kTrainKernels[id] : nullptr; }

int32_t find_train_kernel(Str op_type) {
  for (uint32_t i = 0; i < kCount; ++i)
    if (str_equal(op_type, kTrainKernels[i]->name)) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace train
}  // namespace tt
