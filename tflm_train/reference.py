"""The NumPy reference forward of a QuantGraph, bit-exact with TensorFlow Lite Micro.

``invoke(graph, x)`` returns the graph outputs; ``invoke_all(graph, inputs)`` returns
every tensor's value (what the trainer saves for the backward pass).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Union

import numpy as np

from .graph import GraphError, QuantGraph
from .ops.forward import run_op

Inputs = Union[np.ndarray, Sequence[np.ndarray], Dict[str, np.ndarray]]


def _bind_inputs(graph: QuantGraph, inputs: Inputs) -> Dict[str, np.ndarray]:
    """Match the given arrays to the graph inputs, checking count, dtype and shape."""
    if isinstance(inputs, dict):
        missing = [n for n in graph.inputs if n not in inputs]
        extra = [n for n in inputs if n not in graph.inputs]
        if missing or extra:
            raise GraphError(f"{graph.name}: inputs given {sorted(inputs)} but the graph takes {graph.inputs}")
        arrays = [inputs[n] for n in graph.inputs]
    elif isinstance(inputs, np.ndarray):
        arrays = [inputs]
    elif isinstance(inputs, (list, tuple)):
        arrays = list(inputs)
    else:
        raise GraphError(f"{graph.name}: input must be a numpy array, a list of them or a dict, not {type(inputs).__name__}")
    if len(arrays) != len(graph.inputs):
        raise GraphError(f"{graph.name}: {len(arrays)} input array(s) given, the graph takes {len(graph.inputs)}")
    bound = {}
    for name, a in zip(graph.inputs, arrays):
        t = graph.tensors[name]
        if not isinstance(a, np.ndarray):
            raise GraphError(f"{graph.name}: input {name!r} must be a numpy array, not {type(a).__name__}")
        if a.dtype != np.dtype(t.dtype):
            raise GraphError(f"{graph.name}: input {name!r} must be {t.dtype}, got {a.dtype}")
        if tuple(a.shape) != t.shape:
            raise GraphError(f"{graph.name}: input {name!r} must have shape {t.shape}, got {tuple(a.shape)}")
        bound[name] = a
    return bound


def invoke_all(graph: QuantGraph, inputs: Inputs) -> Dict[str, np.ndarray]:
    """Run every op in order; return {tensor name: value} for the inputs and every op output."""
    values = _bind_inputs(graph, inputs)
    for op in graph.ops:
        for name, out in zip(op.outputs, run_op(graph, op, values)):
            values[name] = out
    missing = [n for n in graph.outputs if n not in values and graph.tensors[n].data is None]
    if missing:
        raise GraphError(f"{graph.name}: graph outputs {missing} are produced by no op")
    return values


def invoke(graph: QuantGraph, x: Inputs) -> List[np.ndarray]:
    """The graph's outputs for input ``x`` (one array, or one per graph input)."""
    values = invoke_all(graph, x)
    return [values[n] if n in values else graph.tensors[n].data for n in graph.outputs]


# The reference training step lives with the trainer; re-exported here as part of the one reference.
from .training.trainer import train_step  # noqa: E402,F401
