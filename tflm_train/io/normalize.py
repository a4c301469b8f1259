"""Normalize at load what converters emit and TensorFlow Lite Micro runs into the forms the
support contract (``tflm_train/contract.py``) states.

Each rewrite keeps the graph's arithmetic byte for byte (tests/test_contract.py runs TFLite
Micro on the original file against the reference on the normalized graph) and is recorded
in ``graph.normalizations``:

- constant shape arithmetic for batch 1: SHAPE / STRIDED_SLICE / PACK / CONCATENATION whose
  inputs are constants or the static shape of a tensor (what the TF converter emits for a
  Keras ``Flatten()`` / ``Reshape()`` with a dynamic batch) are evaluated, and the RESHAPE
  they feed gets a constant shape;
- a RESHAPE / SQUEEZE / EXPAND_DIMS that reads the graph input directly (or through its
  QUANTIZE) is folded into the input: the input takes the reshaped shape (the bytes are the
  same); the file's shape is kept in ``graph.original_input_shapes``;
- an EXPAND_DIMS / SQUEEZE anywhere else (the TF converter brackets a Keras ``Conv1D``'s
  CONV_2D with them) becomes a RESHAPE to its output's static shape: the same bytes, when
  its input and output share dtype, size and quantization (otherwise it is left as it is and
  the contract refuses it with one line);
- a RESHAPE whose file shape keeps a placeholder (a -1 past the batch in
  ``shape_signature``, written as 1 in ``shape``) takes the shape its constant (folded)
  shape operand gives for its input's size;
- 1-D and per-tensor quantization get ``quantized_dimension`` 0 (TFLite Micro ignores it
  there; the C++ runtime and the exporter require 0);
- a dynamic batch (-1) is batch 1 (done by the reader, which sees ``shape_signature``).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..graph import Op, QuantGraph, Tensor

#: Ops evaluated at load when every input is known (shape arithmetic on int32 / int64 vectors).
FOLDABLE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK", "CONCATENATION")
#: Ops that only reinterpret their input's bytes with another shape.
RESHAPING_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
_INT_DTYPES = ("int32", "int64")


def _strided_slice_1d(x: np.ndarray, begin, end, strides, attrs: dict) -> Optional[np.ndarray]:
    """TF StridedSlice of a 1-D vector; None for mask combinations shape arithmetic does not use."""
    if any(v.ndim != 1 for v in (x, begin, end, strides)) or not len(begin) == len(end) == len(strides) == 1:
        return None
    if attrs.get("ellipsis_mask", 0) or attrs.get("new_axis_mask", 0) or attrs.get("offset", False):
        return None
    b, e, s = int(begin[0]), int(end[0]), int(strides[0])
    if s == 0:
        return None
    if attrs.get("shrink_axis_mask", 0) & 1:
        k = b + x.size if b < 0 else b
        return np.asarray(x[k]) if 0 <= k < x.size else None
    return x[(None if attrs.get("begin_mask", 0) & 1 else b):(None if attrs.get("end_mask", 0) & 1 else e):s]


def _fold(graph: QuantGraph, op: Op) -> Optional[np.ndarray]:
    """The constant value of ``op``'s output, or None if it cannot be computed at load."""
    t = graph.tensors
    out = t[op.outputs[0]] if len(op.outputs) == 1 else None
    if out is None or out.dtype not in _INT_DTYPES or any(n is None for n in op.inputs) or not op.inputs:
        return None
    if op.type == "SHAPE":
        shape = t[op.inputs[0]].shape
        if any(d < 0 for d in shape):
            return None
        return np.array(shape, dtype=out.dtype)
    if any(not t[n].is_constant or t[n].dtype not in _INT_DTYPES for n in op.inputs):
        return None
    values = [t[n].data for n in op.inputs]
    if op.type == "STRIDED_SLICE" and len(values) == 4:
        return _strided_slice_1d(*values, op.attrs)
    axis = int(op.attrs.get("axis", 0))
    if op.type == "PACK" and len({v.shape for v in values}) == 1 and -values[0].ndim - 1 <= axis <= values[0].ndim:
        return np.stack(values, axis=axis)
    if op.type == "CONCATENATION" and all(v.ndim == 1 for v in values) and axis in (0, -1):
        return np.concatenate(values)
    return None


def _fold_shape_arithmetic(graph: QuantGraph) -> int:
    folded = 0
    kept: List[Op] = []
    for op in graph.ops:
        value = _fold(graph, op) if op.type in FOLDABLE_OPS else None
        out = graph.tensors[op.outputs[0]] if op.outputs else None
        if value is None or tuple(value.shape) != out.shape:
            kept.append(op)
            continue
        out.data = np.asarray(value, dtype=out.dtype)
        folded += 1
    graph.ops = kept
    return folded


def _resolved_shape(requested: np.ndarray, size: int) -> Optional[tuple]:
    """TF Reshape's output shape for ``size`` elements (one -1 inferred); None if it does not fit."""
    dims = [int(d) for d in requested]
    unknown = [k for k, d in enumerate(dims) if d == -1]
    if len(unknown) > 1 or any(d < -1 for d in dims):
        return None
    known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
    if unknown:
        if known <= 0 or size % known:
            return None
        dims[unknown[0]] = size // known
    return tuple(dims) if int(np.prod(dims, dtype=np.int64)) == size else None


def _constant_reshape_shapes(graph: QuantGraph) -> List[str]:
    """A RESHAPE's constant shape spelled as its output's static shape (no -1, batch 1)."""
    notes = []
    for i, op in enumerate(graph.ops):
        if op.type != "RESHAPE" or len(op.inputs) < 2 or op.inputs[1] is None:
            continue
        s = graph.tensors[op.inputs[1]]
        out = graph.tensors[op.outputs[0]]
        if not s.is_constant or s.dtype not in _INT_DTYPES or s.data.ndim != 1:
            continue
        x = graph.tensors[op.inputs[0]]
        resolved = _resolved_shape(s.data, x.size) if all(d >= 0 for d in x.shape) else None
        if resolved is not None and out.size != x.size and out.name in graph.placeholder_shapes:
            # the file's static shape is the converter's placeholder (1 for an unknown dimension)
            notes.append(f"RESHAPE {op.name!r} output shape {list(out.shape)} (a placeholder in the file) "
                         f"read as {list(resolved)}")
            out.shape = resolved
        out_shape = out.shape
        if s.data.tolist() == list(out_shape) and s.dtype == "int32":
            continue
        if len(graph.consumers(s.name)) == 1 and s.name not in graph.outputs:
            del graph.tensors[s.name]
        name = f"{op.name or op.outputs[0]}/shape"
        while name in graph.tensors:
            name += "'"
        graph.tensors[name] = Tensor(name, (len(out_shape),), "int32", data=np.array(out_shape, np.int32))
        op.inputs[1] = name
    return notes


def _expand_squeeze_as_reshape(graph: QuantGraph) -> List[str]:
    """EXPAND_DIMS / SQUEEZE between ops as RESHAPE to the output's static shape (same bytes)."""
    done = 0
    for op in graph.ops:
        if op.type not in ("EXPAND_DIMS", "SQUEEZE") or not op.inputs or op.inputs[0] is None or len(op.outputs) != 1:
            continue
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if not _same_bytes(x, y) or any(d < 0 for d in y.shape):
            continue  # left for the contract to refuse, naming the op
        for n in op.inputs[1:]:  # EXPAND_DIMS's axis; SQUEEZE has its axes as options
            if n is not None and len(graph.consumers(n)) == 1 and n not in graph.outputs:
                graph.tensors.pop(n, None)
        name = f"{op.name or y.name}/shape"
        while name in graph.tensors:
            name += "'"
        graph.tensors[name] = Tensor(name, (len(y.shape),), "int32", data=np.array(y.shape, np.int32))
        op.type, op.inputs, op.attrs = "RESHAPE", [x.name, name], {}
        done += 1
    if not done:
        return []
    return [f"{done} EXPAND_DIMS / SQUEEZE op(s) rewritten as RESHAPE to their output shape (same bytes)"]


def _rename(graph: QuantGraph, old: str, new: str) -> None:
    for op in graph.ops:
        op.inputs = [new if n == old else n for n in op.inputs]
        op.outputs = [new if n == old else n for n in op.outputs]
    graph.outputs = [new if n == old else n for n in graph.outputs]


def _same_bytes(a: Tensor, b: Tensor) -> bool:
    if a.dtype != b.dtype or a.size != b.size or a.quantized != b.quantized:
        return False
    return not a.quantized or (np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point))


def _fold_input_reshapes(graph: QuantGraph) -> List[str]:
    """Fold RESHAPE-like ops that read a graph input (directly or behind its QUANTIZE) into it."""
    notes = []
    changed = True
    while changed:
        changed = False
        for x in graph.inputs:
            chain = [x]  # the input, then (optionally) the output of its only consumer, a QUANTIZE
            readers = graph.consumers(x)
            if len(readers) == 1 and graph.ops[readers[0]].type == "QUANTIZE" and x not in graph.outputs:
                chain.append(graph.ops[readers[0]].outputs[0])
            last = chain[-1]
            readers = graph.consumers(last)
            if len(readers) != 1 or last in graph.outputs:
                continue
            op = graph.ops[readers[0]]
            if op.type not in RESHAPING_OPS or op.inputs[0] != last or len(op.outputs) != 1:
                continue
            y = graph.tensors[op.outputs[0]]
            if not _same_bytes(graph.tensors[last], y) or any(d < 0 for d in y.shape) or y.name in graph.inputs:
                continue
            graph.original_input_shapes.setdefault(x, graph.tensors[x].shape)
            for n in chain:
                graph.tensors[n].shape = y.shape
            del graph.ops[readers[0]]
            for n in op.inputs[1:]:
                if n is not None and not graph.consumers(n) and n not in graph.outputs:
                    graph.tensors.pop(n, None)
            del graph.tensors[y.name]
            _rename(graph, y.name, last)
            notes.append(f"{op.type} {op.name!r} at the input folded into input {x!r} "
                         f"(shape {list(graph.original_input_shapes[x])} in the file, now {list(y.shape)})")
            changed = True
            break
    return notes


def _quantized_dimensions(graph: QuantGraph) -> List[str]:
    changed = []
    for t in graph.tensors.values():
        if t.quantized and t.quantized_dim != 0 and (t.scale.size == 1 or len(t.shape) == 1):
            if t.per_channel:
                changed.append(t.name)
            t.quantized_dim = 0
    if not changed:
        return []
    return [f"quantized_dimension of {len(changed)} per-channel 1-D tensor(s) (biases, e.g. {changed[0]!r}) read as 0"]


def _drop_unused(graph: QuantGraph) -> None:
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(n for n in op.inputs + op.outputs if n is not None)
    for n in [n for n in graph.tensors if n not in used]:
        del graph.tensors[n]


def normalize(graph: QuantGraph) -> QuantGraph:
    """Rewrite ``graph`` in place (see the module docstring); returns it."""
    folded = _fold_shape_arithmetic(graph)
    if folded:
        graph.normalizations.append(f"{folded} constant shape op(s) (SHAPE / STRIDED_SLICE / PACK / "
                                    "CONCATENATION) evaluated for batch 1")
    graph.normalizations += _constant_reshape_shapes(graph)
    graph.normalizations += _fold_input_reshapes(graph)
    graph.normalizations += _expand_squeeze_as_reshape(graph)
    graph.normalizations += _quantized_dimensions(graph)
    _drop_unused(graph)
    graph.validate()
    return graph
