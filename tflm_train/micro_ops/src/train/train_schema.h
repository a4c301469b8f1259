// The parts of the training extension schema (tflm_train/schema/train.fbs,
// file identifier "TFMT", version 2) the runtime reads: field ids (vtable slots,
// in declaration order) and enum values, plus the TFLite Model fields that locate
// the metadata entry and the inference tensors a training tensor refers to
// (shape, scales). docs/training_file_format.md describes the format.
#ifndef TFLM_TRAIN_MICRO_TRAIN_TRAIN_SCHEMA_H_
#define TFLM_TRAIN_MICRO_TRAIN_TRAIN_SCHEMA_H_

#include <stdint.h>

namespace tt {
namespace tfmt {

constexpr char kFileIdentifier[4] = {'T', 'F', 'M', 'T'};
constexpr char kMetadataName[] = "tflm_train.train";
constexpr int32_t kVersionMajor = 2;

// TFLite Model / Metadata / Buffer fields (the public TFLite schema).
enum TfliteModelField { kModelSubgraphs = 2, kModelBuffers = 4, kModelMetadata = 6 };
enum TfliteSubGraphField { kSubGraphTensors = 0 };
enum TfliteTensorField { kTfliteTensorShape = 0, kTfliteTensorName = 3, kTfliteTensorQuantization = 4 };
enum TfliteQuantField { kTfliteQuantScale = 2, kTfliteQuantizedDimension = 6 };
enum TfliteMetadataField { kMetadataNameField = 0, kMetadataBuffer = 1 };

enum DType : uint8_t { kInt8 = 0, kUInt8 = 1, kInt16 = 2, kInt32 = 3, kInt64 = 4, kUInt32 = 5, kFloat32 = 6,
                      kFloat16 = 7 };  // 2.1: IEEE binary16 gradients
enum Kind : uint8_t {
  kInput = 0,
  kLabel = 1,
  kActivation = 2,
  kParameter = 3,
  kConstant = 4,
  kState = 5,
  kGradient = 6,
  kLoss = 7,
  kScratch = 8
};
enum Phase : uint8_t { kPhaseForward = 0, kPhaseLoss = 1, kPhaseBackward = 2, kPhaseUpdate = 3 };
enum Storage : uint8_t {
  kStorageNone = 0,
  kArena = 1,
  kPersistent = 2,
  kFlash = 3,
  kVirtualPad = 4,
  kVirtualCrop = 5,
  kChannel = 6,
  kBand = 7  // (2.1) a band chain's window of rows
};
enum Mode : uint8_t { kNormal = 0, kInPlace = 1, kAlias = 2, kSkip = 3, kFused = 4, kBandStep = 5 };
enum AttrType : uint8_t {
  kAttrNone = 0,
  kAttrInt = 1,
  kAttrFloat = 2,
  kAttrBool = 3,
  kAttrString = 4,
  kAttrInts = 5,
  kAttrFloats = 6,
  kAttrDouble = 7,
  kAttrDoubles = 8,
  kAttrScales = 9  // the float32 scales of tensor ints[0]
};

enum AttrField { kAttrName = 0, kAttrType = 1, kAttrIntsF = 2, kAttrFloatsF = 3, kAttrDoublesF = 4, kAttrStr = 5,
                 kAttrShape = 6 };
enum QuantField { kQuantScale = 0, kQuantZeroPoint = 1, kQuantDim = 2 };
enum TensorField {
  kTensorName = 0,
  kTensorShape = 1,
  kTensorDType = 2,
  kTensorKind = 3,
  kTensorQuantization = 4,
  kTensorBuffer = 5,
  kTensorInferTensor = 6,
  kTensorStorage = 7,
  kTensorArenaOffset = 8,
  kTensorArenaBytes = 9,
  kTensorSource = 10,
  kTensorPad = 11,
  kTensorSplitAxis = 12,
  kTensorSplitChannels = 13,
  kTensorMaskOf = 14,
  kTensorMaskMin = 15,
  kTensorMaskMax = 16,
  kTensorMaskProducer = 17,
  kTensorFirstStep = 18,
  kTensorLastStep = 19
};
// Slots 1 (name), 6 and 7 (output_multiplier / output_shift) are version 1 only.
enum OpField { kOpOpcode = 0, kOpPhase = 2, kOpInputs = 3, kOpOutputs = 4, kOpAttrs = 5 };
enum StepField { kStepOp = 0, kStepMode = 1, kStepInplaceInput = 2, kStepLayout = 3, kStepScratchOffset = 4,
                 kStepScratchBytes = 5, kStepBandRows = 6 };
enum PlanField {
  kPlanSteps = 0,
  kPlanArenaBytes = 1,
  kPlanPersistentBytes = 2,
  kPlanRuntimeStateBytes = 3,
  kPlanPeakBytes = 4,
  kPlanAlignment = 5,
  kPlanStreamInput = 13,  // 2.2
};
enum SignatureField { kSigKey = 0, kSigInputs = 1, kSigInputNames = 2, kSigOutputs = 3, kSigOutputNames = 4 };
enum TrainModelField {
  kTmVersionMajor = 0,
  kTmVersionMinor = 1,
  kTmName = 2,
  kTmInferSubgraph = 3,
  kTmSignature = 4,
  kTmScheme = 5,
  kTmOptimizer = 6,
  kTmSeed = 7,
  kTmNumClasses = 8,
  kTmHeadType = 9,
  kTmOpTypes = 10,
  kTmTensors = 11,
  kTmOps = 12,
  kTmPlan = 13,
  // 14 (layers) and 15 (host_info) are version 1 only.
  kTmHostInfoZ = 16,
  kTmDebug = 17
};
enum DebugField { kDebugTensorNames = 0, kDebugOpNames = 1 };

// Bytes of one element; 0 for an unknown dtype.
inline uint32_t dtype_size(uint8_t d) {
  switch (d) {
    case kInt8: case kUInt8: return 1;
    case kInt16: case kFloat16: return 2;
    case kInt32: case kUInt32: case kFloat32: return 4;
    case kInt64: return 8;
    default: return 0;
  }
}

inline const char* dtype_name(uint8_t d) {
  static const char* const kNames[] = {"int8", "uint8", "int16", "int32", "int64", "uint32", "float32", "float16"};
  return d < sizeof(kNames) / sizeof(kNames[0]) ? kNames[d] : "unknown";
}

}  // namespace tfmt
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_TRAIN_TRAIN_SCHEMA_H_
