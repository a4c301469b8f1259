// The parts of the TFLite flatbuffer schema (schema.fbs, "TFL3") the runtime reads:
// field ids (vtable slots) of each table and the enum values it interprets.
// Field ids follow the declaration order of the public schema.
#ifndef TFLM_TRAIN_MICRO_SCHEMA_H_
#define TFLM_TRAIN_MICRO_SCHEMA_H_

#include <stdint.h>

namespace tt {
namespace schema {

constexpr char kFileIdentifier[4] = {'T', 'F', 'L', '3'};

enum ModelField { kModelVersion = 0, kModelOperatorCodes = 1, kModelSubgraphs = 2, kModelBuffers = 4 };
enum SubGraphField { kSubGraphTensors = 0, kSubGraphInputs = 1, kSubGraphOutputs = 2, kSubGraphOperators = 3 };
enum TensorField {
  kTensorShape = 0,
  kTensorType = 1,
  kTensorBuffer = 2,
  kTensorName = 3,
  kTensorQuantization = 4,
  kTensorIsVariable = 5,
  kTensorSparsity = 6,
  kTensorShapeSignature = 7
};
enum QuantizationField { kQuantScale = 2, kQuantZeroPoint = 3, kQuantizedDimension = 6 };
enum OperatorField {
  kOperatorOpcodeIndex = 0,
  kOperatorInputs = 1,
  kOperatorOutputs = 2,
  kOperatorBuiltinOptionsType = 3,
  kOperatorBuiltinOptions = 4,
  kOperatorIntermediates = 8
};
enum OperatorCodeField {
  kOpCodeDeprecatedBuiltin = 0,
  kOpCodeCustomCode = 1,
  kOpCodeVersion = 2,
  kOpCodeBuiltin = 3
};
enum BufferField { kBufferData = 0, kBufferOffset = 1, kBufferSize = 2 };

// Builtin options tables.
enum Conv2DOptionsField {
  kConvPadding = 0,
  kConvStrideW = 1,
  kConvStrideH = 2,
  kConvActivation = 3,
  kConvDilationW = 4,
  kConvDilationH = 5
};
enum DepthwiseOptionsField {
  kDwPadding = 0,
  kDwStrideW = 1,
  kDwStrideH = 2,
  kDwDepthMultiplier = 3,
  kDwActivation = 4,
  kDwDilationW = 5,
  kDwDilationH = 6
};
enum FullyConnectedOptionsField { kFcActivation = 0, kFcWeightsFormat = 1, kFcKeepNumDims = 2 };
enum AddOptionsField { kAddActivation = 0 };
enum ReducerOptionsField { kReducerKeepDims = 0 };
enum Pool2DOptionsField {
  kPoolPadding = 0,
  kPoolStrideW = 1,
  kPoolStrideH = 2,
  kPoolFilterW = 3,
  kPoolFilterH = 4,
  kPoolActivation = 5
};
enum SoftmaxOptionsField { kSoftmaxBeta = 0 };
enum ConcatenationOptionsField { kConcatAxis = 0, kConcatActivation = 1 };
enum LeakyReluOptionsField { kLeakyReluAlpha = 0 };

// enum BuiltinOptions (the union tag of Operator.builtin_options).
enum BuiltinOptionsType : uint8_t {
  kOptionsNone = 0,
  kOptionsConv2D = 1,
  kOptionsDepthwiseConv2D = 2,
  kOptionsPool2D = 5,
  kOptionsFullyConnected = 8,
  kOptionsSoftmax = 9,
  kOptionsConcatenation = 10,
  kOptionsAdd = 11,
  kOptionsReshape = 17,
  kOptionsPad = 22,
  kOptionsReducer = 27,
  kOptionsLeakyRelu = 75
};

enum TensorType : uint8_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kInt32 = 2,
  kUInt8 = 3,
  kInt64 = 4,
  kString = 5,
  kBool = 6,
  kInt16 = 7,
  kComplex64 = 8,
  kInt8 = 9,
  kFloat64 = 10
};

enum BuiltinOperator : int32_t {
  kOpAdd = 0,
  kOpAveragePool2D = 1,
  kOpConcatenation = 2,
  kOpConv2D = 3,
  kOpDepthwiseConv2D = 4,
  kOpDequantize = 6,
  kOpFullyConnected = 9,
  kOpMaxPool2D = 17,
  kOpRelu = 19,
  kOpRelu6 = 21,
  kOpReshape = 22,
  kOpSoftmax = 25,
  kOpCustom = 32,
  kOpPad = 34,
  kOpMean = 40,
  kOpLeakyRelu = 98,
  kOpQuantize = 114
};

enum Activation : uint8_t { kActNone = 0, kActRelu = 1, kActReluN1To1 = 2, kActRelu6 = 3, kActTanh = 4, kActSignBit = 5 };
enum Padding : uint8_t { kPaddingSame = 0, kPaddingValid = 1 };

// Size in bytes of one element; 0 for types the runtime cannot hold.
uint32_t type_size(uint8_t type);
// "INT8", "FLOAT32", ...; "UNKNOWN" for out-of-range codes.
const char* type_name(uint8_t type);
// "CONV_2D", ...; nullptr for codes unknown to the schema version we know.
const char* builtin_name(int32_t code);
const char* activation_name(uint8_t activation);

}  // namespace schema
}  // namespace tt

#endif  // TFLM_TRAIN_MICRO_SCHEMA_H_
