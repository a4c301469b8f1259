"""Read an int8 .tflite flatbuffer into a QuantGraph (subgraph 0, the inference graph)."""
from __future__ import annotations

import struct
from typing import Dict, List

import numpy as np

from ..graph import DTYPES, GraphError, Op, QuantGraph, Tensor
from .tflite_schema import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    BUILTIN_NAMES,
    PADDINGS,
    TENSOR_TYPE_NAMES,
    TENSOR_TYPE_TO_DTYPE,
    TFLITE_FILE_IDENTIFIER,
    fb,
)


def _check_header(data: bytes, name: str) -> None:
    if len(data) < 8:
        raise GraphError(f"{name}: truncated file ({len(data)} bytes) is not a TFLite model")
    if data[4:8] != TFLITE_FILE_IDENTIFIER:
        raise GraphError(
            f"{name}: wrong magic {bytes(data[4:8])!r} (expected {TFLITE_FILE_IDENTIFIER!r}): not a TFLite flatbuffer"
        )
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > len(data):
        raise GraphError(f"{name}: truncated or malformed TFLite file (root offset {root} past end {len(data)})")


def _unpack(data: bytes, name: str):
    try:
        return fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # the generated code raises struct.error / IndexError / ... on bad offsets
        raise GraphError(f"{name}: truncated or malformed TFLite file ({type(e).__name__}: {e})") from None


def _text(value, fallback: str) -> str:
    """A flatbuffer string as one line of text: bytes that are not UTF-8 and unprintable
    characters (a newline in a tensor name) become escapes, never an exception."""
    if value is None:
        return fallback
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="backslashreplace")
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text or fallback


def _op_name(model, opcode_index: int, name: str, index: int) -> str:
    if not 0 <= opcode_index < len(model.operatorCodes or []):
        raise GraphError(f"{name}: malformed TFLite file: op {index} has operator code index {opcode_index} "
                         f"out of range ({len(model.operatorCodes or [])} codes)")
    oc = model.operatorCodes[opcode_index]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    if code == fb.BuiltinOperator.CUSTOM:
        return "CUSTOM:" + _text(oc.customCode, "?")
    return BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def _attrs(op_type: str, opts) -> dict:
    """Builtin options -> QuantGraph attrs (see graph.Op). An activation code nothing runs is
    kept by name (the support contract reports it)."""
    def act():
        code = getattr(opts, "fusedActivationFunction", 0) if opts else 0
        return ACTIVATIONS.get(code) or ACTIVATION_NAMES.get(code, f"activation code {code}")

    def padding():
        if opts.padding not in PADDINGS:
            raise GraphError(f"padding code {opts.padding} is not SAME or VALID")
        return PADDINGS[opts.padding]

    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        a = dict(
            padding=padding(),
            stride_h=opts.strideH,
            stride_w=opts.strideW,
            dilation_h=opts.dilationHFactor or 1,
            dilation_w=opts.dilationWFactor or 1,
            activation=act(),
        )
        if op_type == "DEPTHWISE_CONV_2D":
            a["depth_multiplier"] = opts.depthMultiplier
        return a
    if op_type == "FULLY_CONNECTED":
        if opts is not None and opts.weightsFormat != 0:
            raise GraphError("shuffled weights format is unsupported")
        return dict(activation=act(), keep_num_dims=bool(opts.keepNumDims) if opts else False)
    if op_type == "ADD":
        return dict(activation=act())
    if op_type == "MEAN":
        return dict(keep_dims=bool(opts.keepDims) if opts else False)
    if op_type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return dict(
            padding=padding(),
            stride_h=opts.strideH,
            stride_w=opts.strideW,
            filter_h=opts.filterHeight,
            filter_w=opts.filterWidth,
            activation=act(),
        )
    if op_type == "SOFTMAX":
        return dict(beta=float(opts.beta) if opts else 1.0)
    if op_type == "CONCATENATION":
        return dict(axis=int(opts.axis) if opts else 0, activation=act())
    if op_type == "LEAKY_RELU":
        return dict(alpha=float(opts.alpha) if opts else 0.0)
    if op_type == "PACK":
        return dict(axis=int(opts.axis) if opts else 0)
    if op_type == "STRIDED_SLICE" and opts is not None:
        return dict(begin_mask=opts.beginMask, end_mask=opts.endMask, ellipsis_mask=opts.ellipsisMask,
                    new_axis_mask=opts.newAxisMask, shrink_axis_mask=opts.shrinkAxisMask, offset=bool(opts.offset))
    return {}


def _tensor(model, t, index: int, name: str, model_name: str) -> Tensor:
    """One tensor; a type nothing runs keeps its TFLite name as dtype and no data (the
    support contract names it with the ops that use it)."""
    dtype = TENSOR_TYPE_TO_DTYPE.get(t.type) or TENSOR_TYPE_NAMES.get(t.type, f"type {t.type}").lower()
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    signature = [int(d) for d in (t.shapeSignature if t.shapeSignature is not None else [])]
    if shape and shape[0] == -1 or (signature and signature[0] == -1 and shape and shape[0] in (-1, 1)):
        shape[0] = 1  # a dynamic batch: tflm-train runs batch 1
    shape = tuple(shape)
    where = f"{model_name}: malformed TFLite file: tensor {index} ({name})"
    data = None
    buffers = model.buffers or []
    if not 0 <= t.buffer < max(len(buffers), 1):
        raise GraphError(f"{where}: buffer index {t.buffer} out of range ({len(buffers)} buffers)")
    raw = buffers[t.buffer].data if t.buffer else None
    if raw is not None and len(raw) > 0 and dtype in DTYPES:
        raw = np.asarray(raw, dtype=np.uint8).tobytes()
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if len(raw) != expected or any(d < 0 for d in shape):
            raise GraphError(f"{where}: buffer holds {len(raw)} bytes, shape {list(shape)} of {dtype} needs {expected}")
        data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    scale = zp = None
    qdim = 0
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) > 0:
        scale = np.asarray(q.scale, dtype=np.float64)
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None and len(q.zeroPoint) > 0 else [0], dtype=np.int64)
        if zp.size not in (1, scale.size):
            raise GraphError(f"{where}: {scale.size} scales but {zp.size} zero points")
        qdim = int(q.quantizedDimension)
    return Tensor(name, shape, dtype, scale, zp, qdim, data)


def read_tflite(data: bytes, name: str = "model", subgraph: int = 0) -> QuantGraph:
    """Parse ``data`` (a .tflite file's bytes) into a QuantGraph, normalize what converters
    emit (io/normalize.py) and check it against the support contract (contract.py).

    Raises GraphError, one line naming the model: for a malformed file the problem, for a
    graph outside the contract every problem with its op.
    """
    from ..contract import check
    from .normalize import normalize

    data = bytes(data)
    _check_header(data, name)
    model = _unpack(data, name)
    if not model.subgraphs:
        raise GraphError(f"{name}: TFLite file has no subgraphs")
    if not 0 <= subgraph < len(model.subgraphs):
        raise GraphError(f"{name}: no subgraph {subgraph} (file has {len(model.subgraphs)})")
    sg = model.subgraphs[subgraph]
    raw_tensors = sg.tensors or []

    names: List[str] = []
    seen: Dict[str, int] = {}
    for i, t in enumerate(raw_tensors):
        n = _text(t.name, f"tensor_{i}")
        if n in seen:
            n = f"{n}#{i}"
        seen[n] = i
        names.append(n)

    def tname(i: int):
        if i < 0:
            return None
        if i >= len(raw_tensors):
            raise GraphError(f"{name}: malformed TFLite file: tensor index {i} out of range ({len(raw_tensors)} tensors)")
        return names[i]

    tensors = {names[i]: _tensor(model, t, i, names[i], name) for i, t in enumerate(raw_tensors)}

    ops: List[Op] = []
    malformed = []
    for i, o in enumerate(sg.operators or []):
        op_type = _op_name(model, o.opcodeIndex, name, i)
        ins = [tname(int(j)) for j in (o.inputs if o.inputs is not None else [])]
        outs = [tname(int(j)) for j in (o.outputs if o.outputs is not None else [])]
        try:
            attrs = _attrs(op_type, o.builtinOptions)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            malformed.append(f"op {i} {op_type} has malformed options ({e})")
            continue
        ops.append(Op(op_type, ins, outs, attrs, name=outs[0] if outs else f"op{i}"))
    if malformed:
        raise GraphError(f"{name}: malformed TFLite file: " + "; ".join(malformed))

    inputs = [tname(int(j)) for j in (sg.inputs if sg.inputs is not None else [])]
    outputs = [tname(int(j)) for j in (sg.outputs if sg.outputs is not None else [])]
    # Drop tensors no op or graph edge uses (e.g. leftovers of the converter).
    used = set(inputs) | set(outputs)
    for op in ops:
        used.update(t for t in op.inputs + op.outputs if t is not None)
    tensors = {k: v for k, v in tensors.items() if k in used}
    graph = QuantGraph(tensors, ops, inputs, outputs, name=name)
    dynamic = [names[i] for i, t in enumerate(raw_tensors)
               if t.shapeSignature is not None and len(t.shapeSignature) and t.shapeSignature[0] == -1]
    graph.placeholder_shapes = {names[i] for i, t in enumerate(raw_tensors) if names[i] in tensors
                                and t.shapeSignature is not None and any(int(d) < 0 for d in t.shapeSignature[1:])}
    if dynamic:
        graph.normalizations.append(f"dynamic batch (-1 in shape_signature of {len(dynamic)} tensor(s)) read as 1")
    normalize(graph)
    check(graph, training=False)
    return graph
