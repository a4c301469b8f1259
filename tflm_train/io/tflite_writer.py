"""Write a QuantGraph as an inference-only .tflite (builtin ops, signature ``infer``)."""
from __future__ import annotations

from typing import Dict, List, Optional

import flatbuffers
import numpy as np

from ..graph import GraphError, Op, QuantGraph
from .tflite_schema import ACTIVATION_CODES, DTYPE_TO_TENSOR_TYPE, PADDING_CODES, TFLITE_FILE_IDENTIFIER, fb

#: Buffers are 16-byte aligned so that kernels may read int32/float data in place (flash).
BUFFER_ALIGNMENT = 16


class _AlignedBufferT(fb.BufferT):
    def Pack(self, builder):
        vec = None
        if self.data is not None and len(self.data):
            raw = np.ascontiguousarray(self.data).tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            vec = builder.EndVector()
        fb.BufferStart(builder)
        if vec is not None:
            fb.BufferAddData(builder, vec)
        return fb.BufferEnd(builder)


def _options(op: Op):
    """QuantGraph attrs -> (BuiltinOptions type, options object)."""
    a = op.attrs
    B = fb.BuiltinOptions
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = fb.Conv2DOptionsT() if op.type == "CONV_2D" else fb.DepthwiseConv2DOptionsT()
        o.padding = PADDING_CODES[a["padding"]]
        o.strideH, o.strideW = a["stride_h"], a["stride_w"]
        o.dilationHFactor, o.dilationWFactor = a.get("dilation_h", 1), a.get("dilation_w", 1)
        o.fusedActivationFunction = ACTIVATION_CODES[a.get("activation", "NONE")]
        if op.type == "DEPTHWISE_CONV_2D":
            o.depthMultiplier = a.get("depth_multiplier", 1)
            return B.DepthwiseConv2DOptions, o
        return B.Conv2DOptions, o
    if op.type == "FULLY_CONNECTED":
        o = fb.FullyConnectedOptionsT()
        o.fusedActivationFunction = ACTIVATION_CODES[a.get("activation", "NONE")]
        o.keepNumDims = bool(a.get("keep_num_dims", False))
        return B.FullyConnectedOptions, o
    if op.type == "ADD":
        o = fb.AddOptionsT()
        o.fusedActivationFunction = ACTIVATION_CODES[a.get("activation", "NONE")]
        return B.AddOptions, o
    if op.type == "MEAN":
        o = fb.ReducerOptionsT()
        o.keepDims = bool(a.get("keep_dims", False))
        return B.ReducerOptions, o
    if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = fb.Pool2DOptionsT()
        o.padding = PADDING_CODES[a["padding"]]
        o.strideH, o.strideW = a["stride_h"], a["stride_w"]
        o.filterHeight, o.filterWidth = a["filter_h"], a["filter_w"]
        o.fusedActivationFunction = ACTIVATION_CODES[a.get("activation", "NONE")]
        return B.Pool2DOptions, o
    if op.type == "SOFTMAX":
        o = fb.SoftmaxOptionsT()
        o.beta = float(a.get("beta", 1.0))
        return B.SoftmaxOptions, o
    if op.type == "RESHAPE":
        return B.ReshapeOptions, fb.ReshapeOptionsT()
    if op.type == "PAD":
        return B.PadOptions, fb.PadOptionsT()
    if op.type == "QUANTIZE":
        return B.QuantizeOptions, fb.QuantizeOptionsT()
    if op.type == "DEQUANTIZE":
        return B.DequantizeOptions, fb.DequantizeOptionsT()
    if op.type == "CONCATENATION":
        o = fb.ConcatenationOptionsT()
        o.axis = int(a["axis"])
        o.fusedActivationFunction = ACTIVATION_CODES[a.get("activation", "NONE")]
        return B.ConcatenationOptions, o
    if op.type in ("RELU", "RELU6"):
        return B.NONE, None
    if op.type == "LEAKY_RELU":
        o = fb.LeakyReluOptionsT()
        o.alpha = float(a["alpha"])
        return B.LeakyReluOptions, o
    raise GraphError(f"cannot write op type {op.type}")


def build_subgraph(graph: QuantGraph, buffers: List[fb.BufferT], name: str = "infer"):
    """Append ``graph``'s constant data to ``buffers`` and return (SubGraphT, op types in use, tensor index map)."""
    index: Dict[str, int] = {}
    sg = fb.SubGraphT()
    sg.name = name
    sg.tensors = []
    for tname, t in graph.tensors.items():
        ft = fb.TensorT()
        ft.name = tname
        ft.shape = np.asarray(t.shape, dtype=np.int32)
        ft.type = DTYPE_TO_TENSOR_TYPE[t.dtype]
        ft.buffer = 0
        if t.data is not None:
            b = _AlignedBufferT()
            b.data = np.ascontiguousarray(t.data)
            buffers.append(b)
            ft.buffer = len(buffers) - 1
        if t.quantized:
            q = fb.QuantizationParametersT()
            q.scale = np.asarray(t.scale, dtype=np.float32)
            q.zeroPoint = np.asarray(t.zero_point, dtype=np.int64)
            q.quantizedDimension = int(t.quantized_dim)
            ft.quantization = q
        index[tname] = len(sg.tensors)
        sg.tensors.append(ft)
    sg.inputs = np.asarray([index[n] for n in graph.inputs], dtype=np.int32)
    sg.outputs = np.asarray([index[n] for n in graph.outputs], dtype=np.int32)
    sg.operators = []
    op_types = []
    for op in graph.ops:
        if op.type not in op_types:
            op_types.append(op.type)
        fo = fb.OperatorT()
        fo.opcodeIndex = op_types.index(op.type)  # remapped by the caller
        fo.inputs = np.asarray([-1 if n is None else index[n] for n in op.inputs], dtype=np.int32)
        fo.outputs = np.asarray([index[n] for n in op.outputs], dtype=np.int32)
        fo.builtinOptionsType, fo.builtinOptions = _options(op)
        sg.operators.append(fo)
    return sg, op_types, index


def operator_code(op_type: str):
    oc = fb.OperatorCodeT()
    code = getattr(fb.BuiltinOperator, op_type)
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, 127)
    oc.version = 1
    return oc


def signature(key: str, subgraph_index: int, graph: QuantGraph, index: Dict[str, int]):
    sd = fb.SignatureDefT()
    sd.signatureKey = key
    sd.subgraphIndex = subgraph_index

    def tmap(names):
        out = []
        for n in names:
            m = fb.TensorMapT()
            m.name = n
            m.tensorIndex = index[n]
            out.append(m)
        return out

    sd.inputs, sd.outputs = tmap(graph.inputs), tmap(graph.outputs)
    return sd


def new_model(description: str = "tflm-train") -> "fb.ModelT":
    model = fb.ModelT()
    model.version = 3
    model.description = description
    model.buffers = [fb.BufferT()]  # buffer 0: the empty buffer every tensor without data points at
    model.operatorCodes = []
    model.subgraphs = []
    model.signatureDefs = []
    model.metadata = []
    return model


def add_subgraph(model, graph: QuantGraph, name: str, signature_key: Optional[str] = None) -> int:
    sg, op_types, index = build_subgraph(graph, model.buffers, name)
    codes = [max(oc.builtinCode, oc.deprecatedBuiltinCode) for oc in model.operatorCodes]
    remap = []
    for t in op_types:
        code = getattr(fb.BuiltinOperator, t)
        if code not in codes:
            model.operatorCodes.append(operator_code(t))
            codes.append(code)
        remap.append(codes.index(code))
    for fo in sg.operators:
        fo.opcodeIndex = remap[fo.opcodeIndex]
    model.subgraphs.append(sg)
    sg_index = len(model.subgraphs) - 1
    if signature_key:
        model.signatureDefs.append(signature(signature_key, sg_index, graph, index))
    return sg_index


def pack_model(model) -> bytes:
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def write_tflite(graph: QuantGraph) -> bytes:
    """A valid inference-only .tflite with builtin ops; subgraph 0 with signature ``infer``."""
    graph.validate()
    model = new_model()
    add_subgraph(model, graph, "infer", signature_key="infer")
    return pack_model(model)
