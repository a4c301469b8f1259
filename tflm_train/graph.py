"""QuantGraph: the one in-memory representation of an int8 model.

Every other part of tflm-train (reference ops, training-graph compiler, planner,
exporter, Keras front-end) reads and writes this structure.

Conventions (those of TFLite, so that reading and writing .tflite files is a
direct mapping):
- activations are NHWC;
- CONV_2D weights are OHWI ``[out, kh, kw, in]``;
- DEPTHWISE_CONV_2D weights are ``[1, kh, kw, out]`` (out = in * depth_multiplier);
- FULLY_CONNECTED weights are ``[out, in]``;
- int8 weights are symmetric (zero point 0), per output channel (``quantized_dim``
  0 for conv / fully connected, 3 for depthwise) or per tensor;
- biases are int32 with scale ``s_input * s_weight[c]`` and zero point 0.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

#: Op types the model core supports (TFLite builtin names).
SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MEAN",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "RESHAPE",
    "SOFTMAX",
    "PAD",
    "QUANTIZE",
    "DEQUANTIZE",
    "RELU",
    "RELU6",
    "LEAKY_RELU",
    "CONCATENATION",
)

#: Ops that carry trainable weights, in the order a sparse-update scheme counts them.
CONV_LIKE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

DTYPES = ("int8", "uint8", "int16", "int32", "int64", "float32")

#: Storage of a training step's activation gradients (every tensor of kind "gradient"):
#: float32, or IEEE binary16 rounded once per stored element, arithmetic still float32
#: (docs/training_graph.md, "Gradient storage").
GRAD_DTYPES = ("float32", "float16")
DEFAULT_GRAD_DTYPE = "float32"


class GraphError(ValueError):
    """A model that is malformed or uses something tflm-train does not support."""


@dataclass
class Tensor:
    """A tensor: shape, dtype, quantization and (for constants) data.

    ``scale`` and ``zero_point`` are 1-D float64 / int64 arrays: length 1 for
    per-tensor quantization, one entry per channel of ``quantized_dim`` for
    per-channel quantization, and ``None`` for an unquantized tensor.
    """

    name: str
    shape: tuple
    dtype: str
    scale: Optional[np.ndarray] = None
    zero_point: Optional[np.ndarray] = None
    quantized_dim: int = 0
    data: Optional[np.ndarray] = None

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if not isinstance(self.dtype, str) or (self.dtype not in DTYPES and self.data is not None):
            # a type nothing runs (a reader's "resource", "uint32", ...) may be named, for the
            # support contract to report with its op; it never holds data
            raise GraphError(f"tensor {self.name!r}: unsupported dtype {self.dtype!r}")
        if self.scale is not None:
            self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
            zp = 0 if self.zero_point is None else self.zero_point
            self.zero_point = np.atleast_1d(np.asarray(zp, dtype=np.int64))
            if self.zero_point.size == 1 and self.scale.size > 1:
                self.zero_point = np.repeat(self.zero_point, self.scale.size)
        if self.data is not None:
            self.data = np.asarray(self.data, dtype=self.dtype)
            if tuple(self.data.shape) != self.shape:
                raise GraphError(
                    f"tensor {self.name!r}: data shape {self.data.shape} != declared {self.shape}"
                )

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and self.scale.size > 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        if self.dtype not in DTYPES:
            raise GraphError(f"tensor {self.name!r}: type {self.dtype} has no size here")
        return self.size * np.dtype(self.dtype).itemsize

    def scalar_scale(self) -> float:
        if self.scale is None or self.scale.size != 1:
            raise GraphError(f"tensor {self.name!r} is not per-tensor quantized")
        return float(self.scale[0])

    def scalar_zero_point(self) -> int:
        if self.zero_point is None:
            raise GraphError(f"tensor {self.name!r} is not quantized")
        return int(self.zero_point[0])


@dataclass
class Op:
    """One operator: a TFLite builtin name, tensor names in and out, attributes.

    Attributes by op type (all keys always present after a reader builds the op):
    - CONV_2D: padding ("SAME"|"VALID"), stride_h, stride_w, dilation_h, dilation_w,
      activation ("NONE"|"RELU"|"RELU6"|"RELU_N1_TO_1")
    - DEPTHWISE_CONV_2D: as CONV_2D plus depth_multiplier
    - FULLY_CONNECTED: activation, keep_num_dims
    - ADD: activation
    - MEAN: keep_dims (the axis is the op's second input, a constant int32 tensor)
    - AVERAGE_POOL_2D / MAX_POOL_2D: padding, stride_h, stride_w, filter_h, filter_w, activation
    - SOFTMAX: beta
    - CONCATENATION: axis (as in the file, may be negative), activation
    - LEAKY_RELU: alpha (the negative slope)
    - RESHAPE, PAD, QUANTIZE, DEQUANTIZE, RELU, RELU6: none (PAD's paddings are its second input)
    """

    type: str
    inputs: List[Optional[str]]
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    name: str = ""


class QuantGraph:
    """An int8 model: tensors by name, ops in execution order, named inputs/outputs."""

    def __init__(
        self,
        tensors: Dict[str, Tensor],
        ops: List[Op],
        inputs: Sequence[str],
        outputs: Sequence[str],
        name: str = "model",
    ):
        self.tensors: Dict[str, Tensor] = dict(tensors)
        self.ops: List[Op] = list(ops)
        self.inputs: List[str] = list(inputs)
        self.outputs: List[str] = list(outputs)
        self.name = name
        #: What ``tflm_train.load`` normalized (io/normalize.py), one line each.
        self.normalizations: List[str] = []
        #: Graph inputs whose shape load changed (a reshape at the input folded in): name -> shape in the file.
        self.original_input_shapes: Dict[str, tuple] = {}
        #: Tensors whose file shape holds a converter placeholder (-1 past the batch in shape_signature).
        self.placeholder_shapes: set = set()
        self.validate()

    # ------------------------------------------------------------------ structure
    def validate(self) -> None:
        """Check the structure (every referenced tensor exists, each tensor has at most one
        producer, ops read only tensors computed before them); raise GraphError naming every
        problem. What is *supported* is the support contract's business (``tflm_train.check``)."""
        problems = []
        for t in list(self.inputs) + list(self.outputs):
            if t not in self.tensors:
                problems.append(f"graph input/output {t!r} is not a tensor")
        available = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_constant}
        for i, op in enumerate(self.ops):
            where = f"op {i} {op.type}" + (f" {op.name!r}" if op.name else "")
            for t in list(op.inputs) + list(op.outputs):
                if t is not None and t not in self.tensors:
                    problems.append(f"{where} refers to missing tensor {t!r}")
            for t in op.inputs:
                if t is not None and t in self.tensors and t not in available:
                    problems.append(f"{where} reads {t!r} before any op computes it")
            if not op.outputs or any(t is None for t in op.outputs):
                problems.append(f"{where} has no output or an omitted (-1) one")
            for t in op.outputs:
                if t is None:
                    continue
                if t in available:
                    problems.append(f"{where} writes {t!r}, which is an input, a constant or written before")
                available.add(t)
        if problems:
            raise GraphError(f"{self.name}: malformed graph: " + "; ".join(problems))

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def producer(self, tensor_name: str) -> Optional[int]:
        for i, op in enumerate(self.ops):
            if tensor_name in op.outputs:
                return i
        return None

    def consumers(self, tensor_name: str) -> List[int]:
        return [i for i, op in enumerate(self.ops) if tensor_name in op.inputs]

    def conv_op_indices(self) -> List[int]:
        """Indices into ``ops`` of the conv layers, in forward order.

        This is the stable "conv index" that sparse-update schemes use:
        conv_index k is ``ops[conv_op_indices()[k]]`` (first conv = 0, ... classifier last).
        """
        return [i for i, op in enumerate(self.ops) if op.type in CONV_LIKE_OPS]

    def conv_op(self, conv_index: int) -> Op:
        idx = self.conv_op_indices()
        if not 0 <= conv_index < len(idx):
            raise GraphError(f"conv index {conv_index} out of range (model has {len(idx)} conv layers)")
        return self.ops[idx[conv_index]]

    def copy(self) -> "QuantGraph":
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ statistics
    def param_count(self) -> int:
        """Number of constant weight/bias elements consumed by conv-like ops."""
        seen = set()
        total = 0
        for op in self.ops:
            if op.type not in CONV_LIKE_OPS:
                continue
            for t in op.inputs[1:]:
                if t is not None and t not in seen and self.tensors[t].is_constant:
                    seen.add(t)
                    total += self.tensors[t].size
        return total

    def op_macs(self, op: Op) -> int:
        """Multiply-accumulates of one op (0 for ops without a weight)."""
        if op.type == "CONV_2D":
            out = self.tensors[op.outputs[0]].shape
            w = self.tensors[op.inputs[1]].shape
            return int(np.prod(out)) * w[1] * w[2] * w[3]
        if op.type == "DEPTHWISE_CONV_2D":
            out = self.tensors[op.outputs[0]].shape
            w = self.tensors[op.inputs[1]].shape
            return int(np.prod(out)) * w[1] * w[2]
        if op.type == "FULLY_CONNECTED":
            w = self.tensors[op.inputs[1]].shape
            batch = self.tensors[op.outputs[0]].size // w[0]
            return batch * w[0] * w[1]
        return 0

    def macs(self) -> int:
        return sum(self.op_macs(op) for op in self.ops)

    def to_tflite(self) -> bytes:
        """Serialize to an inference-only .tflite flatbuffer with builtin ops."""
        from .io.tflite_writer import write_tflite

        return write_tflite(self)

    def __repr__(self) -> str:
        return (
            f"QuantGraph({self.name!r}, {len(self.ops)} ops, {len(self.conv_op_indices())} conv layers, "
            f"inputs={self.inputs}, outputs={self.outputs})"
        )
