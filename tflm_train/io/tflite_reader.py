"""Read an int8 .tflite flatbuffer into a QuantGraph (subgraph 0, the inference graph)."""
from __future__ import annotations

import struct
from typing import Dict, List

import numpy as np

from ..graph import CONV_LIKE_OPS, SUPPORTED_OPS, GraphError, Op, QuantGraph, Tensor
from .tflite_schema import (
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


def _op_name(model, opcode_index: int) -> str:
    if not 0 <= opcode_index < len(model.operatorCodes or []):
        raise GraphError(f"malformed TFLite file: operator code index {opcode_index} out of range")
    oc = model.operatorCodes[opcode_index]
    code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
    if code == fb.BuiltinOperator.CUSTOM:
        cc = oc.customCode
        return "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
    return BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def _attrs(op_type: str, opts) -> dict:
    """Builtin options -> QuantGraph attrs (see graph.Op)."""
    def act():
        code = getattr(opts, "fusedActivationFunction", 0) if opts else 0
        if code not in ACTIVATIONS:
            raise GraphError(f"{op_type}: fused activation code {code} is unsupported")
        return ACTIVATIONS[code]

    if op_type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        a = dict(
            padding=PADDINGS[opts.padding],
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
            raise GraphError("FULLY_CONNECTED with shuffled weights format is unsupported")
        return dict(activation=act(), keep_num_dims=bool(opts.keepNumDims) if opts else False)
    if op_type == "ADD":
        return dict(activation=act())
    if op_type == "MEAN":
        return dict(keep_dims=bool(opts.keepDims) if opts else False)
    if op_type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return dict(
            padding=PADDINGS[opts.padding],
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
    return {}


def _tensor(model, t, index: int, name: str) -> Tensor:
    if t.type not in TENSOR_TYPE_TO_DTYPE:
        raise GraphError(
            f"tensor {index} ({name}): type {TENSOR_TYPE_NAMES.get(t.type, t.type)} is unsupported"
        )
    dtype = TENSOR_TYPE_TO_DTYPE[t.type]
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
    data = None
    buffers = model.buffers or []
    if t.buffer and t.buffer < len(buffers):
        buf = buffers[t.buffer]
        raw = buf.data
        if raw is not None and len(raw) > 0:
            raw = np.asarray(raw, dtype=np.uint8).tobytes()
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if len(raw) != expected:
                raise GraphError(
                    f"tensor {index} ({name}): buffer holds {len(raw)} bytes, shape {shape} of {dtype} needs {expected}"
                )
            data = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    elif t.buffer >= len(buffers) and t.buffer != 0:
        raise GraphError(f"tensor {index} ({name}): buffer index {t.buffer} out of range")
    scale = zp = None
    qdim = 0
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) > 0:
        scale = np.asarray(q.scale, dtype=np.float64)
        zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.int64)
        qdim = int(q.quantizedDimension)
    return Tensor(name, shape, dtype, scale, zp, qdim, data)


def read_tflite(data: bytes, name: str = "model", subgraph: int = 0) -> QuantGraph:
    """Parse ``data`` (a .tflite file's bytes) into a QuantGraph.

    Raises GraphError with one line naming the problem for malformed files, float
    models and unsupported ops (all of them listed with their positions).
    """
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
        n = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
        n = n or f"tensor_{i}"
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

    tensors = {names[i]: _tensor(model, t, i, names[i]) for i, t in enumerate(raw_tensors)}

    ops: List[Op] = []
    unsupported = []
    for i, o in enumerate(sg.operators or []):
        op_type = _op_name(model, o.opcodeIndex)
        ins = [tname(int(j)) for j in (o.inputs if o.inputs is not None else [])]
        outs = [tname(int(j)) for j in (o.outputs if o.outputs is not None else [])]
        if op_type not in SUPPORTED_OPS:
            where = ", ".join(outs) if outs else "no outputs"
            unsupported.append(f"{op_type} (op {i}, output {where})")
            continue
        try:
            attrs = _attrs(op_type, o.builtinOptions)
        except (AttributeError, KeyError) as e:
            raise GraphError(f"{name}: op {i} ({op_type}) has malformed options ({e})") from None
        ops.append(Op(op_type, ins, outs, attrs, name=outs[0] if outs else f"op{i}"))
    if unsupported:
        raise GraphError(
            f"{name}: {len(unsupported)} unsupported op(s): " + "; ".join(unsupported)
            + f". Supported: {', '.join(SUPPORTED_OPS)}"
        )

    float_ops = [
        f"{op.type} (op {i}, weights {op.inputs[1]})"
        for i, op in enumerate(ops)
        if op.type in CONV_LIKE_OPS and tensors[op.inputs[1]].dtype == "float32"
    ]
    if float_ops:
        raise GraphError(
            f"{name}: float model (float32 weights in {float_ops[0]}{' and others' if len(float_ops) > 1 else ''}); "
            "tflm-train needs a full-integer int8 model (TFLite converter with a representative dataset, or tfmot QAT)"
        )
    for i, op in enumerate(ops):
        if op.type in CONV_LIKE_OPS:
            w = tensors[op.inputs[1]]
            if w.dtype != "int8" or not w.quantized:
                raise GraphError(f"{name}: op {i} ({op.type}) weights {w.name} are {w.dtype}, int8 expected")
            if w.data is None:
                raise GraphError(f"{name}: op {i} ({op.type}) weights {w.name} are not constant")

    inputs = [tname(int(j)) for j in (sg.inputs if sg.inputs is not None else [])]
    outputs = [tname(int(j)) for j in (sg.outputs if sg.outputs is not None else [])]
    # Drop tensors no op or graph edge uses (e.g. leftovers of the converter).
    used = set(inputs) | set(outputs)
    for op in ops:
        used.update(t for t in op.inputs + op.outputs if t is not None)
    tensors = {k: v for k, v in tensors.items() if k in used}
    return QuantGraph(tensors, ops, inputs, outputs, name=name)
