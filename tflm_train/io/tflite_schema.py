"""Shared tables between the TFLite schema and QuantGraph (used by the reader and the writer)."""
from ai_edge_litert import schema_py_generated as fb  # noqa: F401  (generated TFLite schema, a dependency)

TENSOR_TYPE_TO_DTYPE = {
    fb.TensorType.FLOAT32: "float32",
    fb.TensorType.INT32: "int32",
    fb.TensorType.UINT8: "uint8",
    fb.TensorType.INT64: "int64",
    fb.TensorType.INT16: "int16",
    fb.TensorType.INT8: "int8",
}
DTYPE_TO_TENSOR_TYPE = {v: k for k, v in TENSOR_TYPE_TO_DTYPE.items()}
TENSOR_TYPE_NAMES = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}

BUILTIN_NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}

ACTIVATIONS = {
    fb.ActivationFunctionType.NONE: "NONE",
    fb.ActivationFunctionType.RELU: "RELU",
    fb.ActivationFunctionType.RELU_N1_TO_1: "RELU_N1_TO_1",
    fb.ActivationFunctionType.RELU6: "RELU6",
}
ACTIVATION_CODES = {v: k for k, v in ACTIVATIONS.items()}
#: Every activation code's name (TANH, SIGN_BIT, ...), for messages.
ACTIVATION_NAMES = {v: k for k, v in vars(fb.ActivationFunctionType).items() if not k.startswith("_")}

PADDINGS = {fb.Padding.SAME: "SAME", fb.Padding.VALID: "VALID"}
PADDING_CODES = {v: k for k, v in PADDINGS.items()}

TFLITE_FILE_IDENTIFIER = b"TFL3"
