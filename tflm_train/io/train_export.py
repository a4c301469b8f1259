"""The training .tflite: write and read back.

Layout (docs/training_file_format.md):
- a valid TFLite model whose only subgraph (0) is the int8 inference graph with builtin
  ops, signature ``infer``: it loads and runs unchanged in TFLite Micro and LiteRT;
- the training graph, its memory plan, the scheme, optimizer and RNG seed in a metadata
  entry ``tflm_train.train``: one ``TrainModel`` flatbuffer of ``tflm_train/schema/train.fbs``,
  which declares the ``train`` signature (image, label -> loss).

Why not a second TFLite subgraph with custom ops for the training graph: TFLite Micro
resolves the operators of every subgraph when it allocates a model, and fails on a custom
op it has no registration for ("Failed to get registration from op code CUSTOM"), even
when only subgraph 0 is run (tests/test_export.py checks this). LiteRT tolerates it, but
the file must load in both, so the training graph lives in the metadata.

Constant data (frozen weights, initial values of trainable parameters) lives in the TFLite
model's buffers; a training tensor whose bytes equal an inference tensor's points at the
same buffer, so the weights are stored once.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import flatbuffers
import numpy as np

from ..budget import DEFAULT_FLASH_KB, DEFAULT_RAM_KB, BudgetReport, check_kb
from ..graph import CONV_LIKE_OPS, DEFAULT_GRAD_DTYPE, GraphError, QuantGraph
from ..ops import quant
from ..schema import FILE_IDENTIFIER, METADATA_NAME, VERSION, tfmt
from .tflite_schema import fb
from .tflite_writer import _AlignedBufferT, add_subgraph, new_model, pack_model

DTYPES = {"int8": tfmt.DType.INT8, "uint8": tfmt.DType.UINT8, "int16": tfmt.DType.INT16, "int32": tfmt.DType.INT32,
          "int64": tfmt.DType.INT64, "uint32": tfmt.DType.UINT32, "float32": tfmt.DType.FLOAT32,
          "float16": tfmt.DType.FLOAT16}
KINDS = {"input": tfmt.TensorKind.INPUT, "label": tfmt.TensorKind.LABEL, "activation": tfmt.TensorKind.ACTIVATION,
         "parameter": tfmt.TensorKind.PARAMETER, "constant": tfmt.TensorKind.CONSTANT, "state": tfmt.TensorKind.STATE,
         "gradient": tfmt.TensorKind.GRADIENT, "loss": tfmt.TensorKind.LOSS, "scratch": tfmt.TensorKind.SCRATCH}
PHASES = {"forward": tfmt.Phase.FORWARD, "loss": tfmt.Phase.LOSS, "backward": tfmt.Phase.BACKWARD,
          "update": tfmt.Phase.UPDATE}
STORAGES = {"none": tfmt.Storage.NONE, "arena": tfmt.Storage.ARENA, "persistent": tfmt.Storage.PERSISTENT,
            "flash": tfmt.Storage.FLASH, "virtual_pad": tfmt.Storage.VIRTUAL_PAD,
            "virtual_crop": tfmt.Storage.VIRTUAL_CROP, "channel": tfmt.Storage.CHANNEL, "band": tfmt.Storage.BAND}
MODES = {"normal": tfmt.ExecMode.NORMAL, "in_place": tfmt.ExecMode.IN_PLACE, "alias": tfmt.ExecMode.ALIAS,
         "skip": tfmt.ExecMode.SKIP, "fused": tfmt.ExecMode.FUSED, "band": tfmt.ExecMode.BAND}


def _inverse(d: Dict[str, int]) -> Dict[int, str]:
    return {v: k for k, v in d.items()}


# --------------------------------------------------------------------------- attrs
def encode_attr(name: str, value) -> "tfmt.AttrT":
    """One op attribute as a typed Attr (see train.fbs)."""
    a = tfmt.AttrT()
    a.name = name
    T = tfmt.AttrType
    if value is None:
        a.type = T.NONE
    elif isinstance(value, (bool, np.bool_)):
        a.type, a.ints = T.BOOL, [int(bool(value))]
    elif isinstance(value, (int, np.integer)):
        a.type, a.ints = T.INT, _int32s(name, [value])
    elif isinstance(value, (float, np.floating)):
        if _f32_exact([value]):
            a.type, a.floats = T.FLOAT, [float(value)]
        else:
            a.type, a.doubles = T.DOUBLE, [float(value)]
    elif isinstance(value, str):
        a.type, a.str = T.STRING, value
    elif isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype == object:
            raise GraphError(f"attr {name!r}: ragged or mixed list {value!r} cannot be stored")
        a.shape = [int(d) for d in arr.shape]
        if arr.dtype.kind == "f":
            values = [float(v) for v in arr.reshape(-1)]
            if _f32_exact(values):
                a.type, a.floats = T.FLOATS, values
            else:
                a.type, a.doubles = T.DOUBLES, values
        elif arr.dtype.kind in "iub" or arr.size == 0:
            a.type, a.ints = T.INTS, _int32s(name, arr.reshape(-1))
        else:
            raise GraphError(f"attr {name!r}: list of {arr.dtype} cannot be stored")
    else:
        raise GraphError(f"attr {name!r}: value of type {type(value).__name__} cannot be stored")
    return a


def _f32_exact(values) -> bool:
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        return bool(np.all((v.astype(np.float32).astype(np.float64) == v) | np.isnan(v)))


def _int32s(name: str, values) -> List[int]:
    out = [int(v) for v in values]
    if any(not -(1 << 31) <= v < (1 << 31) for v in out):
        raise GraphError(f"attr {name!r}: integer outside the int32 range")
    return out


@dataclass
class _ScalesOf:
    """A SCALES attr: the float32 scales of an op input."""
    tensor: str
    values: List[float]


def decode_attr(a, tensors=None, names=None) -> Tuple[str, object]:
    name = _s(a.name)
    if not name:
        raise GraphError("malformed training metadata: an attr has no name")
    try:
        if a.type == tfmt.AttrType.SCALES:
            t = names[_check_index(a.ints[0], len(names), f"attr {name!r} tensor")]
            if tensors is None or t not in tensors or tensors[t].scale is None:
                raise GraphError(f"malformed training metadata: attr {name!r} references tensor {t!r}, which has "
                                 f"no scales")
            return name, _ScalesOf(t, [float(v) for v in np.asarray(tensors[t].scale, np.float32)])
        return name, _decode_value(a, name)
    except (IndexError, TypeError):
        raise GraphError(f"malformed training metadata: attr {name!r} has no value") from None


def _decode_value(a, name: str):
    T = tfmt.AttrType
    ints = [] if a.ints is None else [int(v) for v in a.ints]
    floats = [] if a.floats is None else [float(v) for v in a.floats]
    doubles = [] if a.doubles is None else [float(v) for v in a.doubles]
    if a.type == T.NONE:
        return None
    if a.type == T.BOOL:
        return bool(ints[0])
    if a.type == T.INT:
        return ints[0]
    if a.type == T.FLOAT:
        return floats[0]
    if a.type == T.DOUBLE:
        return doubles[0]
    if a.type == T.STRING:
        return _s(a.str)
    if a.type in (T.INTS, T.FLOATS, T.DOUBLES):
        shape = [] if a.shape is None else [int(d) for d in a.shape]
        values = {T.INTS: ints, T.FLOATS: floats, T.DOUBLES: doubles}[a.type]
        if int(np.prod(shape, dtype=np.int64)) != len(values):
            raise GraphError(f"attr {name!r}: {len(values)} values do not fill shape {shape}")
        return np.asarray(values, dtype=np.int64 if a.type == T.INTS else np.float64).reshape(shape).tolist()
    raise GraphError(f"attr {name!r}: unknown attr type {a.type}")


def _s(v) -> Optional[str]:
    if v is None:
        return None
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)


# --------------------------------------------------------------------------- write
def requantization(tg, op) -> Tuple[Optional[List[int]], Optional[List[int]]]:
    """Fixed-point multipliers/shifts of a forward int8 conv-like op (as TFLite Micro's Prepare).

    Not stored in the file (version 2): the runtime computes the same values from the scales
    (``quantize_multiplier`` in src/quant.cc); this is the reference the tests compare with."""
    if op.type not in CONV_LIKE_OPS or op.phase != "forward":
        return None, None
    x, w, y = (tg.tensors[op.inputs[0]], tg.tensors[op.inputs[1]], tg.tensors[op.outputs[0]])
    if y.dtype != "int8" or x.scale is None or w.scale is None or y.scale is None:
        return None, None
    real = quant.f32(x.scale[0]) * quant.f32(w.scale) / quant.f32(y.scale[0])
    mult, shift = quant.quantize_multiplier(np.atleast_1d(real))
    return [int(m) for m in mult], [int(s) for s in shift]


class _Buffers:
    """TFLite buffers shared between the inference subgraph and the training graph."""

    def __init__(self, model, infer_sg):
        self.model = model
        self.by_content: Dict[bytes, int] = {}
        for t in infer_sg.tensors:
            if t.buffer and model.buffers[t.buffer].data is not None:
                raw = np.ascontiguousarray(model.buffers[t.buffer].data).tobytes()
                self.by_content.setdefault(raw, t.buffer)

    def index_of(self, data: np.ndarray) -> int:
        raw = np.ascontiguousarray(data).tobytes()
        if raw in self.by_content:
            return self.by_content[raw]
        b = _AlignedBufferT()
        b.data = np.frombuffer(raw, dtype=np.uint8).copy()
        self.model.buffers.append(b)
        self.by_content[raw] = len(self.model.buffers) - 1
        return self.by_content[raw]


class _SharedBuilder(flatbuffers.Builder):
    """A Builder that stores each distinct string once (names, attr names, layouts)."""

    def CreateString(self, s, encoding="utf-8", errors="strict"):
        key = s if isinstance(s, (str, bytes)) else bytes(s)
        shared = self.__dict__.setdefault("_shared_strings", {})
        if key not in shared:
            shared[key] = super().CreateString(s, encoding, errors)
        return shared[key]


class _Shared:
    """A table packed once and referenced by every parent that holds an equal one."""

    def __init__(self, table, key, cache: Dict):
        self.table, self.key, self.cache = table, key, cache

    def Pack(self, builder):
        if self.key not in self.cache:
            self.cache[self.key] = self.table.Pack(builder)
        return self.cache[self.key]


#: Kinds whose names nothing outside the file uses (the bulk of a training graph): stored
#: only in the Debug section. Every other tensor without an inference tensor keeps its name
#: (parameters, RNG state, label, loss, the head's logits: names the API and trainer use).
UNNAMED_KINDS = ("gradient", "scratch")


def _same_scales(a, b) -> bool:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def _tensor_entry(tg, name: str, plan, index: Dict[str, int], buffers: _Buffers, infer_tensors,
                  infer_index: Dict[str, int], shared: Dict, debug_names: bool):
    e = tfmt.TensorT()
    tp = plan.tensors[name]
    t = tg.tensors.get(name)
    if t is not None:
        e.inferTensor = infer_index.get(name, -1)
        it = infer_tensors[e.inferTensor] if e.inferTensor >= 0 else None
        if it is None and (t.kind not in UNNAMED_KINDS or debug_names):
            e.name = name
        if it is None or len(t.shape) == 0 or tuple(int(d) for d in it.shape) != tuple(t.shape):
            e.shape = [int(d) for d in t.shape]
        e.dtype = DTYPES[t.dtype]
        e.kind = KINDS[t.kind]
        if t.scale is not None:
            q = tfmt.QuantizationT()
            iq = None if it is None else it.quantization
            if (iq is not None and iq.scale is not None and _same_scales(iq.scale, t.scale)
                    and (np.size(t.scale) == 1 or int(iq.quantizedDimension) == int(t.quantized_dim))):
                q.scale = None  # the inference tensor's
            else:
                q.scale = [float(v) for v in np.asarray(t.scale, np.float32)]
                q.quantizedDim = int(t.quantized_dim)
            if np.any(t.zero_point != 0):
                q.zeroPoint = _int32s(f"{name} zero point", t.zero_point)
            e.quantization = _Shared(q, ("q", None if q.scale is None else tuple(q.scale),
                                         None if q.zeroPoint is None else tuple(q.zeroPoint), q.quantizedDim), shared)
        if t.data is not None:
            e.buffer = buffers.index_of(t.data)
    else:  # planner tensor: a bitmask (its name follows from the activation's: planner.storage.mask_name)
        y = next(a for a, (m, _, _) in plan.bitmasks.items() if m == name)
        e.shape = [tp.nbytes]
        e.dtype = tfmt.DType.UINT8
        e.kind = tfmt.TensorKind.ACTIVATION
        e.maskOf = index[y]
        _, e.maskMin, e.maskMax = plan.bitmasks[y]
        e.maskProducer = next(s.op for s in plan.steps if name in s.writes)
    e.storage = STORAGES[tp.storage]
    logical = int(np.prod(e.shape if e.shape is not None else t.shape, dtype=np.int64)) * \
        np.dtype(t.dtype if t is not None else np.uint8).itemsize
    if int(tp.nbytes) != logical:  # absent (-1): the data bytes
        e.arenaBytes = int(tp.nbytes)
    if tp.offset is not None:
        e.arenaOffset = int(tp.offset)
    if tp.source is not None:
        e.source = index[tp.source]
        e.pad = [int(p) for p in tp.pad]
    if tp.split is not None:
        e.splitAxis = int(tp.split[0])
        e.splitChannels = [int(c) for c in tp.split[1]]
    if tp.first is not None:
        e.firstStep, e.lastStep = int(tp.first), int(tp.last)
    return e


def _op_attr(tg, op, key: str, index: Dict[str, int], shared: Dict):
    """An op attr, shared with every equal one; a float list equal to an input's scales references them."""
    value = op.attrs[key]
    a = None
    if isinstance(value, (list, tuple, np.ndarray)) and np.size(value) and np.asarray(value).dtype.kind == "f":
        for name in op.inputs:
            t = tg.tensors[name]
            if t.scale is not None and np.size(t.scale) == np.size(value) and _same_scales(t.scale, value) \
                    and np.ndim(value) == 1 and _f32_exact(value):
                a = tfmt.AttrT()
                a.name, a.type, a.ints = key, tfmt.AttrType.SCALES, [index[name]]
                break
    if a is None:
        a = encode_attr(key, value)
    arrays = tuple(None if v is None else tuple(v) for v in (a.ints, a.floats, a.doubles, a.shape))
    return _Shared(a, ("attr", a.name, a.type, a.str) + arrays, shared)


def _train_model(tg, plan, buffers: _Buffers, infer_tensors, infer_index: Dict[str, int],
                 debug_names: bool = False):
    if any(s.part for s in plan.steps):
        raise GraphError("only a reordered plan (updates fused and applied as soon as possible) can be exported")
    names = list(tg.tensors) + [m for m, _, _ in plan.bitmasks.values()]
    index = {n: i for i, n in enumerate(names)}
    shared: Dict = {}
    m = tfmt.TrainModelT()
    m.versionMajor, m.versionMinor = VERSION
    m.name = tg.name
    m.inferSubgraph = 0
    sig = tfmt.SignatureT()
    sig.key = "train"
    sig.inputs, sig.inputNames = [index[n] for n in tg.inputs], list(tg.inputs)
    sig.outputs, sig.outputNames = [index[n] for n in tg.outputs], list(tg.outputs)
    m.signature = sig
    sc = tfmt.SchemeT()
    scheme = tg.scheme or {}
    sc.name = scheme.get("name", "")
    sc.nBiasUpdate = int(scheme.get("n_bias_update", 0))
    sc.channelSelection = scheme.get("channel_selection", "magnitude")
    sc.weightUpdate = []
    for w in scheme.get("weight_update", []):
        wu = tfmt.WeightUpdateT()
        wu.convIndex, wu.ratio = int(w["conv_index"]), float(w["ratio"])
        sc.weightUpdate.append(wu)
    m.scheme = sc
    opt = tfmt.OptimizerT()
    opt.type, opt.learningRate, opt.momentum, opt.qas = "sgd", float(tg.lr), 0.0, True
    m.optimizer = opt
    m.seed = int(tg.seed) % (1 << 32)
    m.numClasses = int(tg.num_classes)
    m.headType = tg.head_type
    m.opTypes = []
    m.tensors = [_tensor_entry(tg, n, plan, index, buffers, infer_tensors, infer_index, shared, debug_names)
                 for n in names]
    m.ops = []
    for op in tg.ops:
        if op.type not in m.opTypes:
            m.opTypes.append(op.type)
        o = tfmt.OpT()
        o.opcode = m.opTypes.index(op.type)
        o.phase = PHASES[op.phase]
        o.inputs = [index[t] for t in op.inputs]
        o.outputs = [index[t] for t in op.outputs]
        o.attrs = [_op_attr(tg, op, k, index, shared) for k in sorted(op.attrs)]
        m.ops.append(o)
    p = tfmt.PlanT()
    p.steps = []
    for s in plan.steps:
        st = tfmt.StepT()
        st.op = s.op
        st.mode = MODES[s.mode]
        if s.inplace_input is not None:
            st.inplaceInput = index[s.inplace_input]
        st.layout = s.layout or None
        if s.scratch_bytes:
            st.scratchOffset, st.scratchBytes = int(s.scratch_offset), int(s.scratch_bytes)
        st.bandRows = int(s.band_rows)
        p.steps.append(st)
    p.arenaBytes, p.persistentBytes = int(plan.arena_bytes), int(plan.persistent_bytes)
    p.runtimeStateBytes, p.peakBytes = int(plan.runtime_state_bytes), int(plan.peak_bytes)
    p.alignment, p.algorithm = int(plan.alignment), plan.algorithm
    p.reorder, p.fuse, p.inplace, p.masks, p.sparseParams = (plan.reorder, plan.fuse, plan.inplace, plan.masks,
                                                             plan.sparse_params)
    p.noInplaceSteps = [int(k) for k in plan.no_inplace]
    p.streamInput = bool(plan.stream_input)
    m.plan = p
    host = json.dumps(dict(layers=tg.layers, head=_jsonable(tg.head), scheme=tg.scheme, train_name=tg.name),
                      separators=(",", ":"))
    m.hostInfoZ = np.frombuffer(zlib.compress(host.encode("utf-8"), 9), dtype=np.uint8)
    if debug_names:
        d = tfmt.DebugT()
        d.tensorNames, d.opNames = list(names), [op.name for op in tg.ops]
        m.debug = d
    b = _SharedBuilder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def write_training_file(infer_graph: QuantGraph, tg, plan, debug_names: bool = False) -> bytes:
    """The training .tflite: ``infer_graph`` as subgraph 0 (signature ``infer``), ``tg`` and
    ``plan`` in the ``tflm_train.train`` metadata (``debug_names``: with the Debug section
    naming every tensor and op)."""
    if plan.graph is not tg:
        raise GraphError("write_training_file: the plan was made for another training graph")
    model = new_model("tflm-train training model")
    add_subgraph(model, infer_graph, "infer", signature_key="infer")
    sg = model.subgraphs[0]
    infer_index = {(t.name.decode() if isinstance(t.name, bytes) else t.name): i for i, t in enumerate(sg.tensors)}
    meta_bytes = _train_model(tg, plan, _Buffers(model, sg), sg.tensors, infer_index, debug_names)
    buf = _AlignedBufferT()
    buf.data = np.frombuffer(meta_bytes, dtype=np.uint8).copy()
    model.buffers.append(buf)
    md = fb.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(model.buffers) - 1
    model.metadata = [md]
    return pack_model(model)


# --------------------------------------------------------------------------- read
def _metadata_bytes(model, data: bytes) -> bytes:
    entries = [m for m in (model.metadata or []) if _s(m.name) == METADATA_NAME]
    if not entries:
        raise GraphError(f"not a training file: no {METADATA_NAME!r} metadata (an inference-only .tflite?)")
    if len(entries) > 1:
        raise GraphError(f"malformed training file: {len(entries)} {METADATA_NAME!r} metadata entries")
    k = int(entries[0].buffer)
    if not 0 < k < len(model.buffers or []):
        raise GraphError(f"malformed training file: metadata buffer index {k} out of range")
    raw = model.buffers[k].data
    if raw is None or len(raw) < 8:
        raise GraphError("malformed training file: the training metadata buffer is empty or truncated")
    return np.asarray(raw, dtype=np.uint8).tobytes()


def parse_train_metadata(meta: bytes):
    """The TrainModelT of a metadata buffer, with header and version checks."""
    if len(meta) < 8 or meta[4:8] != FILE_IDENTIFIER:
        raise GraphError(f"malformed training metadata: file identifier {bytes(meta[4:8])!r}, expected {FILE_IDENTIFIER!r}")
    (root,) = struct.unpack_from("<I", meta, 0)
    if root + 4 > len(meta):
        raise GraphError(f"malformed training metadata: root offset {root} past the end ({len(meta)} bytes)")
    try:
        m = tfmt.TrainModelT.InitFromPackedBuf(bytearray(meta), 0)
    except Exception as e:  # the generated code raises struct.error / IndexError / UnicodeDecodeError ...
        raise GraphError(f"malformed training metadata ({type(e).__name__}: {e})") from None
    if m.versionMajor != VERSION[0]:
        raise GraphError(f"training metadata version {m.versionMajor}.{m.versionMinor} is not supported: this "
                         f"reader reads version {VERSION[0]}.x (export the model again)")
    return m


def _check_index(i: int, n: int, what: str) -> int:
    if not 0 <= int(i) < n:
        raise GraphError(f"malformed training metadata: {what} index {i} out of range (0..{n - 1})")
    return int(i)


def _tensor_data(model, e, name: str, shape, dtype: str) -> Optional[np.ndarray]:
    if e.buffer < 0:
        return None
    k = _check_index(e.buffer, len(model.buffers or []), f"tensor {name!r} buffer")
    raw = model.buffers[k].data
    raw = b"" if raw is None else np.asarray(raw, dtype=np.uint8).tobytes()
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise GraphError(f"malformed training metadata: tensor {name!r} has {len(raw)} data bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def read_training_file(data: bytes, name: str = "model"):
    """(inference QuantGraph, TrainGraph, MemoryPlan) of a training .tflite's bytes.

    Raises GraphError (one line) for anything malformed: a file without training metadata,
    a corrupt or inconsistent metadata buffer, indices out of range, a plan whose offsets
    overlap or whose execution modes do not follow the rules."""
    from .tflite_reader import _check_header, _unpack, read_tflite

    data = bytes(data)
    _check_header(data, name)
    model = _unpack(data, name)
    meta = parse_train_metadata(_metadata_bytes(model, data))
    if not 0 <= int(meta.inferSubgraph) < len(model.subgraphs or []):
        raise GraphError(f"malformed training metadata: inference subgraph {meta.inferSubgraph} does not exist")
    infer = read_tflite(data, name=name, subgraph=int(meta.inferSubgraph))
    try:
        tg, plan = _train_graph_and_plan(model, meta)
    except GraphError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError, struct.error,
            UnicodeDecodeError) as e:
        raise GraphError(f"malformed training metadata ({type(e).__name__}: {e})") from None
    return infer, tg, plan


def _tensor_names(meta, infer_tensors) -> List[str]:
    """Tensor names: the inference tensor's, the stored one, the Debug section's, a bitmask's
    (planner.storage.mask_name of its activation), else ``<kind>:<index>``."""
    from ..planner.storage import mask_name

    entries = meta.tensors or []
    debug = (meta.debug.tensorNames if meta.debug is not None else None) or []
    if debug and len(debug) != len(entries):
        raise GraphError(f"malformed training metadata: {len(debug)} debug names for {len(entries)} tensors")
    kinds = _inverse(KINDS)
    names: List[Optional[str]] = []
    for i, e in enumerate(entries):
        if e.inferTensor >= 0:
            it = infer_tensors[_check_index(e.inferTensor, len(infer_tensors), f"tensor {i} inference tensor")]
            names.append(_s(it.name))
        else:
            names.append(_s(e.name) or (_s(debug[i]) if debug else None))
    for i, e in enumerate(entries):
        if names[i] is None and e.maskOf >= 0:
            y = names[_check_index(e.maskOf, len(entries), "mask_of")]
            names[i] = mask_name(y) if y else None
        if not names[i]:
            names[i] = f"{kinds.get(e.kind, 'tensor')}:{i}"
    return names


def _shape_of(e, it, name: str) -> Tuple[int, ...]:
    if e.shape is not None:
        return tuple(int(d) for d in e.shape)
    if it is None:
        raise GraphError(f"malformed training metadata: tensor {name!r} has no shape and no inference tensor")
    return tuple(int(d) for d in (it.shape if it.shape is not None else []))


def _quantization_of(e, it, name: str):
    """(scale, zero_point, quantized_dim) of a tensor entry; scales absent: the inference tensor's."""
    q = e.quantization
    if q is None:
        return None, None, 0
    if q.scale is not None:
        scale, qdim = np.asarray(q.scale, np.float32).astype(np.float64), int(q.quantizedDim)
    else:
        iq = None if it is None else it.quantization
        if iq is None or iq.scale is None or len(iq.scale) == 0:
            raise GraphError(f"malformed training metadata: tensor {name!r} takes its scales from an inference "
                             f"tensor that has none")
        scale = np.asarray(iq.scale, np.float32).astype(np.float64)
        qdim = int(iq.quantizedDimension) if q.quantizedDim < 0 else int(q.quantizedDim)
    zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.int64)
    if zp.size not in (1, scale.size):
        raise GraphError(f"malformed training metadata: tensor {name!r} has {zp.size} zero points for "
                         f"{scale.size} scales")
    return scale, zp, max(qdim, 0)


def _train_graph_and_plan(model, meta):
    from ..planner.plan import plan_from_file
    from ..training.train_graph import TrainGraph, TrainOp, TrainTensor

    dtypes, kinds, phases = _inverse(DTYPES), _inverse(KINDS), _inverse(PHASES)
    infer_tensors = model.subgraphs[int(meta.inferSubgraph)].tensors or []
    entries = meta.tensors or []
    names = _tensor_names(meta, infer_tensors)
    if len(set(names)) != len(names):
        raise GraphError("malformed training metadata: duplicate tensor names")
    tensors, masks = {}, {}
    for i, e in enumerate(entries):
        if e.dtype not in dtypes or e.kind not in kinds:
            raise GraphError(f"malformed training metadata: tensor {names[i]!r} has unknown dtype/kind")
        if e.maskOf >= 0:
            y = names[_check_index(e.maskOf, len(entries), "mask_of")]
            masks[y] = (names[i], int(e.maskMin), int(e.maskMax))
            continue
        it = infer_tensors[e.inferTensor] if e.inferTensor >= 0 else None
        shape = _shape_of(e, it, names[i])
        if any(d < 0 for d in shape):
            raise GraphError(f"malformed training metadata: tensor {names[i]!r} has a negative dimension")
        dtype = dtypes[e.dtype]
        scale, zp, qdim = _quantization_of(e, it, names[i])
        tensors[names[i]] = TrainTensor(names[i], shape, dtype, kinds[e.kind], scale, zp, qdim,
                                        _tensor_data(model, e, names[i], shape, dtype))
    op_types = [_s(t) for t in (meta.opTypes or [])]
    op_names = (meta.debug.opNames if meta.debug is not None else None) or []
    if op_names and len(op_names) != len(meta.ops or []):
        raise GraphError(f"malformed training metadata: {len(op_names)} debug op names for {len(meta.ops or [])} ops")
    ops = []
    for i, o in enumerate(meta.ops or []):
        op_type = op_types[_check_index(o.opcode, len(op_types), f"op {i} opcode")]
        if o.phase not in phases:
            raise GraphError(f"malformed training metadata: op {i} has unknown phase {o.phase}")
        ins = [names[_check_index(j, len(entries), f"op {i} input")] for j in (o.inputs if o.inputs is not None else [])]
        outs = [names[_check_index(j, len(entries), f"op {i} output")]
                for j in (o.outputs if o.outputs is not None else [])]
        attrs = dict(decode_attr(a, tensors, names) for a in (o.attrs or []))
        for key, value in attrs.items():
            if isinstance(value, _ScalesOf) and value.tensor not in ins:
                raise GraphError(f"malformed training metadata: op {i} attr {key!r} references the scales of "
                                 f"{value.tensor!r}, which is not one of its inputs")
        attrs = {k: (v.values if isinstance(v, _ScalesOf) else v) for k, v in attrs.items()}
        ops.append(TrainOp(op_type, ins, outs, attrs, _s(op_names[i]) if op_names else f"{op_type}:{i}",
                           phases[o.phase]))
    sig = meta.signature
    if sig is None or _s(sig.key) != "train":
        raise GraphError("malformed training metadata: no 'train' signature")
    sig_in = [names[_check_index(j, len(entries), "signature input")] for j in (sig.inputs if sig.inputs is not None else [])]
    sig_out = [names[_check_index(j, len(entries), "signature output")]
               for j in (sig.outputs if sig.outputs is not None else [])]
    try:
        raw = b"" if meta.hostInfoZ is None else zlib.decompress(np.asarray(meta.hostInfoZ, np.uint8).tobytes())
        host = json.loads(raw.decode("utf-8") or "{}")
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphError(f"malformed training metadata: host info is not compressed JSON ({e})") from None
    opt = meta.optimizer
    tg = TrainGraph(tensors, ops, sig_in, sig_out, name=host.get("train_name", _s(meta.name) or "train"),
                    scheme=host.get("scheme", {}), lr=float(opt.learningRate) if opt else 0.0, seed=int(meta.seed),
                    head_type=_s(meta.headType) or "float", num_classes=int(meta.numClasses),
                    layers=host.get("layers", []), head=host.get("head", {}))
    return tg, plan_from_file(tg, meta, names, masks)


# --------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    path: Optional[str]
    data: bytes
    infer_graph: QuantGraph
    train_graph: object
    plan: object
    #: planned RAM and file size against the device budget, the file's overhead over its inference model
    budget: Optional[BudgetReport] = None

    @property
    def nbytes(self) -> int:
        return len(self.data)


def graph_of(model) -> QuantGraph:
    """A QuantGraph from a QuantGraph or a Keras model built by ``tflm_train.keras``."""
    if isinstance(model, QuantGraph):
        return model
    try:
        from .. import keras as tk
    except ImportError as e:  # pragma: no cover - keras missing from the environment
        raise GraphError(f"cannot convert a {type(model).__name__}: tflm_train.keras is unavailable ({e})") from None
    to_graph = getattr(tk, "to_graph", None)
    if to_graph is None:
        raise GraphError(f"export takes a QuantGraph (tflm_train.keras.to_graph is not available for a "
                         f"{type(model).__name__})")
    return to_graph(model)


def export(model, scheme, path: Optional[str] = None, *, num_classes: int = 10, head: str = "float",
           lr: Optional[float] = None, seed: int = 1, state=None, fuse: bool = True, inplace: bool = True,
           masks: bool = True, sparse_params: bool = True, ram_kb: int = DEFAULT_RAM_KB,
           flash_kb: int = DEFAULT_FLASH_KB, budget_check: bool = True, force_scheme: bool = False,
           debug_names: bool = False, bands=True, grad_dtype: str = DEFAULT_GRAD_DTYPE,
           stream_input: bool = False) -> ExportResult:
    """Write the training .tflite of ``model`` under ``scheme`` to ``path`` (if given).

    ``model``: a QuantGraph, or a Keras model from ``tflm_train.keras`` (via
    ``tflm_train.keras.to_graph``). ``scheme``: a SparseScheme or any spelling of
    ``tflm_train.training.scheme.scheme_of`` (``full``, ``bias-only``, ``last-K``,
    ``FILE[:KEY]``); a scheme made for another model is refused unless ``force_scheme``.
    The training graph gets a new ``num_classes`` head (``"float"`` or ``"int8"``; ``"keep"``
    continues training the model's own int8 classifier, e.g. one fine-tuned with
    tflm_train.keras), SGD learning rate ``lr`` (None: ``default_lr(head)``, smaller for a
    kept head) and xorshift32 ``seed``.
    ``state`` (a ``TrainState`` of that training graph, e.g. after training on the host)
    sets the parameters written to both subgraph 0 and the training graph's initial values.
    The plan is always reordered; ``fuse`` / ``inplace`` / ``masks`` / ``sparse_params`` /
    ``bands`` select the execution rules the runtime uses (docs/training_file_format.md;
    ``bands`` may also list the chains ``(first step, last step, band rows)``).
    The planned peak and the file are checked against ``ram_kb`` / ``flash_kb``
    (``tflm_train.budget``): over budget raises ``BudgetError`` and writes nothing, unless
    ``budget_check=False``. ``result.budget`` holds the figures and the file's overhead over
    its inference model. ``debug_names`` adds the metadata's Debug section (every tensor and
    op name, for tools and messages; a few percent of the file). ``grad_dtype``: storage of
    the activation gradients, ``"float32"`` or ``"float16"`` (IEEE binary16, arithmetic float32).
    ``stream_input``: the image arrives row by row (``tt_train_step_rows``; the runtime fetches
    the rows its first band chain needs), so it never sits whole in the arena.
    """
    from ..planner.plan import plan_train_graph
    from ..training.autodiff import build_train_graph
    from ..training.scheme import scheme_of
    from ..training.trainer import TrainState, apply_to_graph

    check_kb(ram_kb, "ram_kb")
    check_kb(flash_kb, "flash_kb")
    graph = graph_of(model)
    tg = build_train_graph(graph, scheme_of(scheme, graph, force=force_scheme), num_classes=num_classes, head=head,
                           lr=lr, seed=seed, grad_dtype=grad_dtype)
    if state is None:
        state = TrainState.from_train_graph(tg)
    else:
        missing = [n for n in tg.tensors if tg.tensors[n].kind in ("parameter", "state") and n not in state.values]
        if missing:
            raise GraphError(f"export: the given state has no value for {missing[:3]}; it belongs to another "
                             f"training graph")
        for n, v in state.values.items():
            t = tg.tensors.get(n)
            if t is None or t.shape != tuple(v.shape):
                raise GraphError(f"export: state tensor {n!r} does not fit the training graph")
            t.data = v.astype(t.dtype, copy=True)
    infer = apply_to_graph(graph, tg, state)
    plan = plan_train_graph(tg, reorder=True, fuse=fuse, inplace=inplace, masks=masks, sparse_params=sparse_params,
                            bands=bands, stream_input=stream_input)
    data = write_training_file(infer, tg, plan, debug_names)
    budget = BudgetReport(plan.peak_bytes, ram_kb, len(data), flash_kb, inference_bytes=len(infer.to_tflite()))
    if budget_check:
        budget.check(graph.name)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return ExportResult(path, data, infer, tg, plan, budget)
