"""The support contract: the one statement of which QuantGraphs tflm-train runs.

``check(graph, training=...)`` lists every problem of a graph (not only the first) and
raises one ``GraphError`` line naming the model and, per problem, the op (index, type,
name) or the graph edge and what is expected. Whatever passes ``check(graph,
training=False)`` runs in the NumPy reference and the C++ inference runtime; whatever
passes ``check(graph, training=True)`` also compiles into a training graph that the
Keras front-end, the planner, the exporter and the C++ training runtime all run.
``tflm_train.load`` checks ``training=False`` after normalizing what converters emit
(``io/normalize.py``); building a training graph (``export``, ``plan`` with a scheme,
``from_graph`` with a new head) checks ``training=True``. The messages and what they
mean are listed in docs/support_contract.md; every template below appears there.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from .graph import CONV_LIKE_OPS, DTYPES, SUPPORTED_OPS, GraphError, Op, QuantGraph

#: Ops that may follow the classifier (the last conv-like op); the training step drops them.
CLASSIFIER_TAIL_OPS = ("RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE")
#: Fused activations every kernel implements.
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
#: Ops whose activation input / output must be rank-4 NHWC.
NHWC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
#: Inputs an op must have (weights for conv-like ops, the constant operand, both ADD terms).
MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MEAN": 2, "PAD": 2}
#: Ops with an int32 constant second input (axes, paddings, shape), and what it is.
CONSTANT_OPERAND = {"MEAN": "axes", "PAD": "paddings", "RESHAPE": "shape"}

# --------------------------------------------------------------------------- message templates
# Each is documented in docs/support_contract.md (tests/test_contract.py checks it).
MSG_UNSUPPORTED_OP = "unsupported op"
#: Appended once to a message that names an unsupported op.
MSG_SUPPORTED_OPS = "supported ops: {supported}"
MSG_UNSUPPORTED_TYPE = "{role} {tensor!r} has type {dtype}, which tflm-train does not run"
MSG_INT16 = ("int16 activations in {ops}: 16x8 (int16 activation) models are unsupported, convert with int8 "
             "activations (TFLITE_BUILTINS_INT8)")
MSG_FLOAT_WEIGHTS = ("weights {tensor!r} are float32: a float model; tflm-train needs a full-integer int8 model "
                     "(TFLite converter with a representative dataset, or tfmot QAT)")
MSG_DTYPE = "{role} {tensor!r} is {dtype}, {expected} expected"
MSG_NOT_QUANTIZED = "{role} {tensor!r} is not quantized, int8 with a scale and zero point expected"
MSG_PER_CHANNEL = "{role} {tensor!r} is per-channel quantized, one scale and zero point expected"
MSG_BAD_SCALE = "{role} {tensor!r} has a scale that is not positive and finite"
MSG_NOT_CONSTANT = "{role} {tensor!r} is computed at run time, a constant expected"
MSG_WEIGHT_ZERO_POINT = "weights {tensor!r} have a nonzero zero point, symmetric (zero point 0) expected"
MSG_WEIGHT_CHANNELS = ("weights {tensor!r} carry {n} scales along dimension {dim}, expected 1 or {channels} "
                       "along dimension {expected_dim}")
MSG_BIAS_SHAPE = "bias {tensor!r} has shape {shape}, ({channels},) expected"
MSG_BIAS_SCALES = "bias {tensor!r} carries {n} scales, expected 1 or {channels}"
MSG_BIAS_DIM = "bias {tensor!r} is quantized along dimension {dim}, 0 expected (tflm_train.load normalizes it)"
MSG_ACTIVATION = "fused activation {activation} is unsupported (supported: {supported})"
MSG_RANK = "{role} {tensor!r} has shape {shape}, a 4-D NHWC tensor expected"
MSG_BATCH = "{role} {tensor!r} has shape {shape}: batch 1 expected"
MSG_NEGATIVE_DIM = "{role} {tensor!r} has shape {shape} with an unknown (negative) dimension"
MSG_SOFTMAX_OUTPUT = "int8 output {tensor!r} has scale {scale} and zero point {zero_point}, 1/256 and -128 expected"
MSG_POOL_QUANT = "input {x!r} and output {y!r} are quantized differently, equal scale and zero point expected"
MSG_CONCAT_QUANT = ("input {x!r} is quantized unlike the output {y!r}; TFLite Micro's int8 CONCATENATION needs "
                    "every input at the output's scale and zero point")
MSG_CONCAT_AXIS = "axis {axis} does not fit the rank-{rank} output {y!r} or its inputs"
MSG_CONCAT_ACTIVATION = "fused activation {activation} on CONCATENATION (TFLite Micro requires NONE)"
MSG_PAD_VALUE = "explicit constant values (PADV2) are unsupported"
MSG_RESHAPE_SIZE = "input {x!r} {x_shape} and output {y!r} {y_shape} differ in size"
MSG_RESHAPING_BYTES = ("input {x!r} ({x_desc}) and output {y!r} ({y_desc}) differ in type, size or quantization; "
                       "tflm_train.load rewrites EXPAND_DIMS / SQUEEZE as RESHAPE only when they hold the same bytes")
MSG_CONCAT_QUANT = ("input {x!r} and output {y!r} are quantized differently; TFLite Micro's int8 CONCATENATION "
                    "requires every input to share the output's scale and zero point")
MSG_LEAKY_ALPHA = "negative slope (alpha) {alpha} is unsupported, >= 0 expected"
MSG_CONCAT_FORM = "has {n} inputs and fused activation {activation}; TFLite Micro needs 1 to 10 inputs and NONE"
MSG_NO_INPUTS = "the graph has no inputs or no outputs"
MSG_INPUT_EDGE = "graph input {tensor!r} is {dtype}: int8, or float32 read by one QUANTIZE op, expected"
MSG_OUTPUT_EDGE = "graph output {tensor!r} is {dtype}: int8, or float32 written by a DEQUANTIZE, expected"
MSG_OPERANDS = "has {n_in} inputs and {n_out} outputs, at least {expected} inputs and 1 output expected"
# training=True only
MSG_TRAIN_EDGES = "training needs one graph input and one graph output, the graph has {n_in} and {n_out}"
MSG_NO_CLASSIFIER = "no CONV_2D / FULLY_CONNECTED layer to train as the classifier"
MSG_DEPTHWISE_CLASSIFIER = "the last conv-like op is depthwise, a CONV_2D or FULLY_CONNECTED classifier expected"
MSG_CLASSIFIER_SHAPE = ("the classifier CONV_2D has a {kh}x{kw} kernel on {oh}x{ow} outputs, a 1x1 conv on pooled "
                        "(1x1) features or a FULLY_CONNECTED expected")
MSG_AFTER_CLASSIFIER = "follows the classifier; only {allowed} may follow it"
MSG_BEFORE_CLASSIFIER = "comes before the classifier; SOFTMAX and DEQUANTIZE may only follow it"


def _where(index: int, op: Op) -> str:
    return f"op {index} {op.type}" + (f" {op.name!r}" if op.name else "")


class _Problems:
    """Problems of one graph, each prefixed with its position."""

    def __init__(self, graph: QuantGraph):
        self.g = graph
        self.items: List[str] = []
        self.op = "graph"  # the op (or edge) being checked, for summaries
        self.int16: List[str] = []  # ops of a 16x8 model, reported as one problem

    def add(self, where: str, template: str, **kw) -> None:
        self.items.append(f"{where}: {template.format(**kw)}")

    def tensor(self, name: Optional[str]):
        return None if name is None else self.g.tensors.get(name)


# --------------------------------------------------------------------------- tensor-level rules
def _dtype_problem(p: _Problems, where: str, role: str, name: str, expected: str) -> bool:
    """Add the dtype problem of tensor ``name`` (unsupported type, int16, or a wrong one); True if any."""
    t = p.g.tensors[name]
    if t.dtype == expected:
        return False
    if t.dtype not in DTYPES:
        p.add(where, MSG_UNSUPPORTED_TYPE, role=role, tensor=name, dtype=t.dtype.upper())
    elif t.dtype == "int16" and expected == "int8" or t.dtype == "int64" and role == "bias":
        if p.op not in p.int16:  # int16 activations come with int64 biases: one 16x8 problem
            p.int16.append(p.op)
    elif role == "weights" and t.dtype == "float32":
        p.add(where, MSG_FLOAT_WEIGHTS, tensor=name)
    else:
        p.add(where, MSG_DTYPE, role=role, tensor=name, dtype=t.dtype, expected=expected)
    return True


def _int8_activation(p: _Problems, where: str, role: str, name: str) -> None:
    """An int8, per-tensor quantized activation of batch 1."""
    if _dtype_problem(p, where, role, name, "int8"):
        return
    t = p.g.tensors[name]
    if not t.quantized:
        p.add(where, MSG_NOT_QUANTIZED, role=role, tensor=name)
    elif t.per_channel:
        p.add(where, MSG_PER_CHANNEL, role=role, tensor=name)
    elif not (np.isfinite(t.scale[0]) and t.scale[0] > 0):
        p.add(where, MSG_BAD_SCALE, role=role, tensor=name)
    _shape_problem(p, where, role, name)


def _shape_problem(p: _Problems, where: str, role: str, name: str) -> None:
    shape = p.g.tensors[name].shape
    if any(d < 0 for d in shape):
        p.add(where, MSG_NEGATIVE_DIM, role=role, tensor=name, shape=list(shape))
    elif len(shape) >= 2 and shape[0] != 1:
        p.add(where, MSG_BATCH, role=role, tensor=name, shape=list(shape))


def _constant_int32(p: _Problems, where: str, role: str, name: Optional[str]) -> None:
    if name is None:
        return
    if _dtype_problem(p, where, role, name, "int32"):
        return
    if not p.g.tensors[name].is_constant:
        p.add(where, MSG_NOT_CONSTANT, role=role, tensor=name)


# --------------------------------------------------------------------------- op-level rules
def _conv_like(p: _Problems, where: str, op: Op) -> None:
    g = p.g
    _int8_activation(p, where, "input", op.inputs[0])
    _int8_activation(p, where, "output", op.outputs[0])
    w_name = op.inputs[1]
    w = g.tensors[w_name]
    axis = 3 if op.type == "DEPTHWISE_CONV_2D" else 0
    channels = w.shape[axis] if len(w.shape) > axis else 0
    if not _dtype_problem(p, where, "weights", w_name, "int8"):
        if not w.is_constant:
            p.add(where, MSG_NOT_CONSTANT, role="weights", tensor=w_name)
        if not w.quantized:
            p.add(where, MSG_NOT_QUANTIZED, role="weights", tensor=w_name)
        else:
            if np.any(w.zero_point != 0):
                p.add(where, MSG_WEIGHT_ZERO_POINT, tensor=w_name)
            if w.per_channel and (w.quantized_dim != axis or w.scale.size != channels):
                p.add(where, MSG_WEIGHT_CHANNELS, tensor=w_name, n=w.scale.size, dim=w.quantized_dim,
                      channels=channels, expected_dim=axis)
            if not np.all(np.isfinite(w.scale) & (w.scale > 0)):
                p.add(where, MSG_BAD_SCALE, role="weights", tensor=w_name)
    b_name = op.inputs[2] if len(op.inputs) > 2 else None
    if b_name is not None and not _dtype_problem(p, where, "bias", b_name, "int32"):
        b = g.tensors[b_name]
        if not b.is_constant:
            p.add(where, MSG_NOT_CONSTANT, role="bias", tensor=b_name)
        if b.shape != (channels,):
            p.add(where, MSG_BIAS_SHAPE, tensor=b_name, shape=list(b.shape), channels=channels)
        if b.quantized and b.scale.size not in (1, channels):
            p.add(where, MSG_BIAS_SCALES, tensor=b_name, n=b.scale.size, channels=channels)
        if b.quantized and b.quantized_dim != 0:
            p.add(where, MSG_BIAS_DIM, tensor=b_name, dim=b.quantized_dim)
    if op.type in NHWC_OPS:
        for role, name in (("input", op.inputs[0]), ("output", op.outputs[0])):
            if len(g.tensors[name].shape) != 4:
                p.add(where, MSG_RANK, role=role, tensor=name, shape=list(g.tensors[name].shape))


def _activation(p: _Problems, where: str, op: Op) -> None:
    act = op.attrs.get("activation", "NONE")
    if act not in ACTIVATIONS:
        p.add(where, MSG_ACTIVATION, activation=act, supported=", ".join(ACTIVATIONS))


def _same_quantization(g: QuantGraph, x: str, y: str, exact: bool = False) -> bool:
    """Equal per-tensor quantization (``exact``: the same float32 scale, as a kernel compares)."""
    a, b = g.tensors[x], g.tensors[y]
    if not (a.quantized and b.quantized) or a.per_channel or b.per_channel:
        return True  # reported as a quantization problem already
    same = np.float32(a.scale[0]) == np.float32(b.scale[0]) if exact else np.isclose(a.scale[0], b.scale[0], rtol=1e-6)
    return bool(same and a.zero_point[0] == b.zero_point[0])


def _concatenation(p: _Problems, where: str, op: Op) -> None:
    g, y = p.g, op.outputs[0]
    if op.attrs.get("activation", "NONE") != "NONE":
        p.add(where, MSG_CONCAT_ACTIVATION, activation=op.attrs["activation"])
    rank, axis = len(g.tensors[y].shape), int(op.attrs.get("axis", 0))
    if not -rank <= axis < rank or any(len(g.tensors[x].shape) != rank for x in op.inputs if x is not None):
        p.add(where, MSG_CONCAT_AXIS, axis=axis, rank=rank, y=y)
    for x in op.inputs:
        if x is not None and g.tensors[x].dtype == "int8" and not _same_quantization(g, x, y, exact=True):
            p.add(where, MSG_CONCAT_QUANT, x=x, y=y)


def _describe(t) -> str:
    """dtype, shape and (per-tensor) quantization of ``t``, for a message."""
    q = f", scale {float(t.scale[0]):.6g} zero point {int(t.zero_point[0])}" if t.quantized and t.scale.size == 1 else ""
    return f"{t.dtype} {list(t.shape)}{q}"


def _op_problems(p: _Problems, index: int, op: Op) -> None:
    g = p.g
    where = _where(index, op)
    p.op = f"op {index} {op.type}"
    if op.type in ("EXPAND_DIMS", "SQUEEZE") and op.inputs and op.inputs[0] is not None and len(op.outputs) == 1:
        x, y = (g.tensors[n] for n in (op.inputs[0], op.outputs[0]))  # left by load's normalization: say why
        p.add(where, MSG_RESHAPING_BYTES, x=x.name, x_desc=_describe(x), y=y.name, y_desc=_describe(y))
        return
    if op.type not in SUPPORTED_OPS:
        p.add(where, MSG_UNSUPPORTED_OP)
        for k, name in enumerate(op.inputs + op.outputs):  # exotic tensor types of an unsupported op, too
            if name is not None and g.tensors[name].dtype not in DTYPES:
                p.add(where, MSG_UNSUPPORTED_TYPE, role="tensor", tensor=name, dtype=g.tensors[name].dtype.upper())
        return
    n_in = MIN_INPUTS.get(op.type, 1)
    if len(op.inputs) < n_in or any(t is None for t in op.inputs[:n_in]) or len(op.outputs) != 1:
        p.add(where, MSG_OPERANDS, n_in=len(op.inputs), n_out=len(op.outputs), expected=n_in)
        return
    if op.type in CONV_LIKE_OPS:
        _conv_like(p, where, op)
        _activation(p, where, op)
        return
    x, y = op.inputs[0], op.outputs[0]
    if op.type == "QUANTIZE":
        if g.tensors[x].dtype == "float32":
            _shape_problem(p, where, "input", x)
        else:
            _int8_activation(p, where, "input", x)
        _int8_activation(p, where, "output", y)
        return
    if op.type == "DEQUANTIZE":
        _int8_activation(p, where, "input", x)
        _dtype_problem(p, where, "output", y, "float32")
        return
    activation_inputs = [t for t in op.inputs if t is not None]
    if op.type in CONSTANT_OPERAND:
        activation_inputs = activation_inputs[:1]
        if len(op.inputs) > 1:
            _constant_int32(p, where, CONSTANT_OPERAND[op.type], op.inputs[1])
    for k, name in enumerate(activation_inputs):
        _int8_activation(p, where, "input" if len(activation_inputs) == 1 else f"input {k}", name)
    _int8_activation(p, where, "output", y)
    if "activation" in op.attrs:
        _activation(p, where, op)
    if op.type in NHWC_OPS:
        for role, name in (("input", x), ("output", y)):
            if len(g.tensors[name].shape) != 4:
                p.add(where, MSG_RANK, role=role, tensor=name, shape=list(g.tensors[name].shape))
    if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D") and not _same_quantization(g, x, y):
        p.add(where, MSG_POOL_QUANT, x=x, y=y)
    if op.type == "CONCATENATION":
        _concatenation(p, where, op)
    if op.type == "PAD" and len(op.inputs) > 2 and op.inputs[2] is not None:
        p.add(where, MSG_PAD_VALUE)
    if op.type == "LEAKY_RELU" and not float(op.attrs.get("alpha", 0.0)) >= 0:
        p.add(where, MSG_LEAKY_ALPHA, alpha=op.attrs.get("alpha"))
    if op.type == "CONCATENATION":
        if not 1 <= len(op.inputs) <= 10 or op.attrs.get("activation", "NONE") != "NONE":
            p.add(where, MSG_CONCAT_FORM, n=len(op.inputs), activation=op.attrs.get("activation", "NONE"))
        for name in op.inputs:
            if g.tensors[name].dtype == "int8" and not _same_quantization(g, name, y):
                p.add(where, MSG_CONCAT_QUANT, x=name, y=y)
    if op.type == "RESHAPE" and g.tensors[x].size != g.tensors[y].size:
        p.add(where, MSG_RESHAPE_SIZE, x=x, x_shape=list(g.tensors[x].shape), y=y, y_shape=list(g.tensors[y].shape))
    if op.type == "SOFTMAX" and g.tensors[y].dtype == "int8" and g.tensors[y].quantized:
        s, z = float(g.tensors[y].scale[0]), int(g.tensors[y].zero_point[0])
        if np.float32(s) != np.float32(1.0 / 256) or z != -128:
            p.add(where, MSG_SOFTMAX_OUTPUT, tensor=y, scale=s, zero_point=z)


def _edge_problems(p: _Problems) -> None:
    g = p.g
    if not g.inputs or not g.outputs:
        p.add("graph", MSG_NO_INPUTS)
    for name in g.inputs:
        t = g.tensors[name]
        readers = [g.ops[i].type for i in g.consumers(name)]
        if t.dtype == "float32" and readers == ["QUANTIZE"]:
            _shape_problem(p, "graph input", "input", name)
        elif t.dtype == "int8":
            _int8_activation(p, "graph input", "input", name)
        elif t.dtype == "int16":
            p.int16.append("graph input")
        else:
            p.add("graph input", MSG_INPUT_EDGE, tensor=name, dtype=t.dtype.upper() if t.dtype not in DTYPES
                  else t.dtype)
    for name in g.outputs:
        t = g.tensors[name]
        producer = g.producer(name)
        if t.dtype == "float32" and producer is not None and g.ops[producer].type == "DEQUANTIZE":
            continue
        if t.dtype == "int8":
            continue  # its producer's rules cover it
        if t.dtype == "int16":
            p.int16.append("graph output")
        else:
            p.add("graph output", MSG_OUTPUT_EDGE, tensor=name, dtype=t.dtype.upper() if t.dtype not in DTYPES
                  else t.dtype)


def _training_problems(p: _Problems) -> None:
    g = p.g
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        p.add("graph", MSG_TRAIN_EDGES, n_in=len(g.inputs), n_out=len(g.outputs))
    convs = g.conv_op_indices()
    if not convs:
        p.add("graph", MSG_NO_CLASSIFIER)
        return
    index = convs[-1]
    cls = g.ops[index]
    where = _where(index, cls) + " (classifier)"
    if cls.type == "DEPTHWISE_CONV_2D":
        p.add(where, MSG_DEPTHWISE_CLASSIFIER)
    elif cls.type == "CONV_2D":
        w, y = g.tensors[cls.inputs[1]].shape, g.tensors[cls.outputs[0]].shape
        if len(w) == 4 and len(y) == 4 and (w[1:3] != (1, 1) or y[1:3] != (1, 1)):
            p.add(where, MSG_CLASSIFIER_SHAPE, kh=w[1], kw=w[2], oh=y[1], ow=y[2])
    for i in range(index):
        if g.ops[i].type in ("SOFTMAX", "DEQUANTIZE"):
            p.add(_where(i, g.ops[i]), MSG_BEFORE_CLASSIFIER)
    for i in range(index + 1, len(g.ops)):
        if g.ops[i].type not in CLASSIFIER_TAIL_OPS:
            p.add(_where(i, g.ops[i]), MSG_AFTER_CLASSIFIER, allowed="/".join(CLASSIFIER_TAIL_OPS))


# --------------------------------------------------------------------------- API
def problems(graph: QuantGraph, training: bool = True) -> List[str]:
    """Every way ``graph`` falls outside the contract, one string per problem ([] if none)."""
    if not isinstance(graph, QuantGraph):
        raise GraphError(f"check needs a QuantGraph, not {type(graph).__name__}")
    p = _Problems(graph)
    for i, op in enumerate(graph.ops):
        _op_problems(p, i, op)
    _edge_problems(p)
    if p.int16:
        p.add("graph", MSG_INT16, ops=", ".join(p.int16))
    if training:
        _training_problems(p)
    return list(dict.fromkeys(p.items))  # a tensor shared by two roles is reported once per op


def check(graph: QuantGraph, training: bool = True) -> None:
    """Raise one ``GraphError`` line naming the model and listing every problem, unless
    ``graph`` is inside the support contract (``training=True``: also trainable)."""
    found = problems(graph, training)
    if found:
        what = "training" if training else "tflm-train"
        hint = ""
        if any(f.endswith(": " + MSG_UNSUPPORTED_OP) for f in found):
            hint = " (" + MSG_SUPPORTED_OPS.format(supported=", ".join(SUPPORTED_OPS)) + ")"
        raise GraphError(f"{graph.name}: {len(found)} problem(s) outside what {what} supports "
                         f"(docs/support_contract.md): " + "; ".join(found) + hint)
