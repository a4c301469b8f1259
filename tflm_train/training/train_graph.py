"""TrainGraph: the compiled training step as a plain, ordered list of ops over named tensors.

``build_train_graph`` (autodiff.py) produces it from a QuantGraph and a SparseScheme;
the NumPy reference trainer (trainer.py), the memory planner and the exporter / C++
runtime all consume it. It is plain data: no callables, no references back to the
QuantGraph. docs/training_graph.md is the full specification (op catalogue, numeric
rules, random-number order); ``TRAIN_OPS`` below is its machine-readable core.

Conventions
- One training step runs ``ops`` in list order exactly once, batch 1.
- Tensors are single-assignment except persistent ones (``parameter``, ``state``),
  which an update op lists in both ``inputs`` and ``outputs``: it reads and rewrites
  them in place (``TrainOp.updates``).
- Lifetimes follow from the op order and inputs/outputs alone: a backward op that needs
  a forward activation lists it as an input, so that activation stays alive ("saved").
- Ops whose ``attrs["inplace_ok"]`` is True are elementwise on input 0 and may write
  their output into input 0's buffer when that is input 0's last use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..graph import GraphError

#: Tensor kinds. ``parameter`` and ``state`` persist across steps (SRAM); ``constant``
#: persists read-only (flash); everything else lives within one step (arena).
KINDS = ("input", "label", "activation", "parameter", "constant", "state", "gradient", "loss", "scratch")
PERSISTENT_KINDS = ("parameter", "constant", "state")
TRAIN_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "uint32", "float32", "float16")

PHASES = ("forward", "loss", "backward", "update")

#: Forward ops keep their TFLite builtin names and the QuantGraph attrs (graph.Op docstring);
#: their quantization comes from the TrainTensors, as in a .tflite file.
FORWARD_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "MEAN",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "RESHAPE",
    "PAD",
    "QUANTIZE",
    "DEQUANTIZE",
    "SOFTMAX",
    "RELU",
    "RELU6",
    "LEAKY_RELU",
    "CONCATENATION",
)

_CONV_GEOMETRY = ("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left")
_POOL_GEOMETRY = ("filter_h", "filter_w", "stride_h", "stride_w", "pad_top", "pad_left")

#: Training op catalogue: phase, input roles, output roles, required attrs.
#: A role ending in "*" is updated in place (same tensor name in inputs and outputs).
TRAIN_OPS: Dict[str, Dict[str, Any]] = {
    "FC_FLOAT_FORWARD": dict(
        phase="forward",
        inputs=("features:int8", "weight:float32", "bias:float32"),
        outputs=("logits:float32",),
        attrs=("in_scale", "in_zero_point"),
    ),
    "SOFTMAX_CROSS_ENTROPY": dict(
        phase="loss",
        inputs=("logits:int8|float32", "label:int32"),
        outputs=("loss:float32", "grad_logits:float32"),
        attrs=("num_classes", "logits_scale", "logits_zero_point"),
    ),
    "CLAMP_GRAD": dict(
        phase="backward",
        inputs=("grad_y:float32", "y:int8"),
        outputs=("grad:float32",),
        attrs=("act_min", "act_max", "inplace_ok"),
    ),
    "GRAD_ACCUMULATE": dict(
        phase="backward",
        inputs=("a:float32", "b:float32"),
        outputs=("sum:float32",),
        attrs=("inplace_ok",),
    ),
    "RESHAPE_GRAD": dict(
        phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=("inplace_ok",)
    ),
    "LEAKY_RELU_GRAD": dict(
        phase="backward", inputs=("grad_y:float32", "x:int8"), outputs=("grad_x:float32",),
        attrs=("alpha", "input_zero_point", "inplace_ok"),
    ),
    "GRAD_SCALE": dict(
        phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=("factor", "inplace_ok")
    ),
    "CONCATENATION_GRAD": dict(
        phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=("axis", "begin")
    ),
    "PAD_GRAD": dict(phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=("paddings",)),
    "MEAN_GRAD": dict(
        phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=("axes", "count")
    ),
    "AVERAGE_POOL_2D_GRAD": dict(
        phase="backward", inputs=("grad_y:float32",), outputs=("grad_x:float32",), attrs=_POOL_GEOMETRY
    ),
    "MAX_POOL_2D_GRAD": dict(
        phase="backward", inputs=("grad_y:float32", "x:int8"), outputs=("grad_x:float32",), attrs=_POOL_GEOMETRY
    ),
    "CONV_2D_GRAD_INPUT": dict(
        phase="backward",
        inputs=("grad_y:float32", "weight:int8"),
        outputs=("grad_x:float32",),
        attrs=_CONV_GEOMETRY + ("weight_scale",),
    ),
    "DEPTHWISE_CONV_2D_GRAD_INPUT": dict(
        phase="backward",
        inputs=("grad_y:float32", "weight:int8"),
        outputs=("grad_x:float32",),
        attrs=_CONV_GEOMETRY + ("depth_multiplier", "weight_scale"),
    ),
    "FULLY_CONNECTED_GRAD_INPUT": dict(
        phase="backward",
        inputs=("grad_y:float32", "weight:int8"),
        outputs=("grad_x:float32",),
        attrs=("weight_scale",),
    ),
    "FC_FLOAT_GRAD_INPUT": dict(
        phase="backward", inputs=("grad_logits:float32", "weight:float32"), outputs=("grad_features:float32",), attrs=()
    ),
    "CONV_2D_UPDATE": dict(
        phase="update",
        inputs=("grad_y:float32", "x:int8", "weight*:int8", "rng*:uint32"),
        outputs=("weight*", "rng*"),
        attrs=_CONV_GEOMETRY + ("channels", "weight_scale", "in_scale", "in_zero_point", "lr"),
    ),
    "DEPTHWISE_CONV_2D_UPDATE": dict(
        phase="update",
        inputs=("grad_y:float32", "x:int8", "weight*:int8", "rng*:uint32"),
        outputs=("weight*", "rng*"),
        attrs=_CONV_GEOMETRY + ("depth_multiplier", "channels", "weight_scale", "in_scale", "in_zero_point", "lr"),
    ),
    "FULLY_CONNECTED_UPDATE": dict(
        phase="update",
        inputs=("grad_y:float32", "x:int8", "weight*:int8", "rng*:uint32"),
        outputs=("weight*", "rng*"),
        attrs=("channels", "weight_scale", "in_scale", "in_zero_point", "lr"),
    ),
    "BIAS_UPDATE": dict(
        phase="update", inputs=("grad_y:float32", "bias*:int32"), outputs=("bias*",), attrs=("bias_scale", "lr")
    ),
    "FC_FLOAT_UPDATE": dict(
        phase="update",
        inputs=("grad_logits:float32", "features:int8", "weight*:float32", "bias*:float32"),
        outputs=("weight*", "bias*"),
        attrs=("in_scale", "in_zero_point", "lr"),
    ),
}


@dataclass
class TrainTensor:
    """A tensor of the training graph.

    ``scale`` / ``zero_point`` / ``quantized_dim`` are copied from the forward tensor
    (1-D float64 / int64 arrays, or None when unquantized). ``data`` holds the initial
    value of a ``parameter`` / ``state`` and the value of a ``constant``.
    """

    name: str
    shape: tuple
    dtype: str
    kind: str
    scale: Optional[np.ndarray] = None
    zero_point: Optional[np.ndarray] = None
    quantized_dim: int = 0
    data: Optional[np.ndarray] = None

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if self.kind not in KINDS:
            raise GraphError(f"train tensor {self.name!r}: unknown kind {self.kind!r}")
        if self.dtype not in TRAIN_DTYPES:
            raise GraphError(f"train tensor {self.name!r}: unsupported dtype {self.dtype!r}")
        if self.scale is not None:
            self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
            zp = 0 if self.zero_point is None else self.zero_point
            self.zero_point = np.atleast_1d(np.asarray(zp, dtype=np.int64))
            if self.zero_point.size == 1 and self.scale.size > 1:
                self.zero_point = np.repeat(self.zero_point, self.scale.size)
        if self.data is not None:
            self.data = np.asarray(self.data, dtype=self.dtype)
            if tuple(self.data.shape) != self.shape:
                raise GraphError(f"train tensor {self.name!r}: data shape {self.data.shape} != declared {self.shape}")
        if self.kind in PERSISTENT_KINDS and self.data is None:
            raise GraphError(f"train tensor {self.name!r}: a {self.kind} needs data")

    @property
    def size(self) -> int:
        return int(math.prod(int(v) for v in self.shape))  # not np.prod: planners ask millions of times

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def persistent(self) -> bool:
        return self.kind in PERSISTENT_KINDS


@dataclass
class TrainOp:
    """One op of the training step. ``phase`` is forward | loss | backward | update."""

    type: str
    inputs: List[str]
    outputs: List[str]
    attrs: Dict[str, Any] = field(default_factory=dict)
    name: str = ""
    phase: str = "forward"

    @property
    def updates(self) -> List[str]:
        """Tensors this op rewrites in place (listed as both input and output)."""
        return [t for t in self.outputs if t in self.inputs]


class TrainGraph:
    """A compiled training step: tensors by name, ops in execution order.

    ``inputs`` are ``[image, label]``, ``outputs`` are ``["loss"]``. ``layers`` records
    what trains (one dict per trained layer: conv_index, op names, channels) for
    reports and for writing trained parameters back into a QuantGraph.
    """

    def __init__(
        self,
        tensors: Dict[str, TrainTensor],
        ops: List[TrainOp],
        inputs: Sequence[str],
        outputs: Sequence[str],
        *,
        name: str = "train",
        scheme: Optional[dict] = None,
        lr: float = 0.0,
        seed: int = 1,
        head_type: str = "float",
        num_classes: int = 0,
        layers: Optional[List[dict]] = None,
        head: Optional[dict] = None,
    ):
        self.tensors: Dict[str, TrainTensor] = dict(tensors)
        self.ops: List[TrainOp] = list(ops)
        self.inputs: List[str] = list(inputs)
        self.outputs: List[str] = list(outputs)
        self.name = name
        self.scheme = dict(scheme or {})
        self.lr = float(lr)
        self.seed = int(seed)
        self.head_type = head_type
        self.num_classes = int(num_classes)
        self.layers: List[dict] = list(layers or [])
        #: how the new head maps back onto the inference graph (see trainer.apply_to_graph)
        self.head: dict = dict(head or {})
        self.validate()

    # ------------------------------------------------------------------ structure
    def validate(self) -> None:
        """Check that every tensor exists, is written before it is read, and that
        single-assignment holds except for in-place updates of persistent tensors."""
        problems: List[str] = []
        for t in self.inputs + self.outputs:
            if t not in self.tensors:
                problems.append(f"graph input/output {t!r} is not a tensor")
        written = {n for n, t in self.tensors.items() if t.persistent} | set(self.inputs)
        for i, op in enumerate(self.ops):
            if op.phase not in PHASES:
                problems.append(f"op {i} ({op.type}): unknown phase {op.phase!r}")
            spec = TRAIN_OPS.get(op.type)
            if spec is None and op.type not in FORWARD_OPS:
                problems.append(f"op {i}: unknown op type {op.type!r}")
            if spec is not None:
                missing = [a for a in spec["attrs"] if a not in op.attrs]
                if missing:
                    problems.append(f"op {i} ({op.type}): missing attrs {missing}")
            for t in op.inputs:
                if t not in self.tensors:
                    problems.append(f"op {i} ({op.type}) reads missing tensor {t!r}")
                elif t not in written:
                    problems.append(f"op {i} ({op.type}) reads {t!r} before it is written")
            for t in op.outputs:
                if t not in self.tensors:
                    problems.append(f"op {i} ({op.type}) writes missing tensor {t!r}")
                    continue
                if t in written and not (self.tensors[t].persistent and t in op.inputs):
                    problems.append(f"op {i} ({op.type}) writes {t!r} a second time")
                if self.tensors[t].kind == "constant":
                    problems.append(f"op {i} ({op.type}) writes constant {t!r}")
                written.add(t)
        for t in self.outputs:
            if t not in written:
                problems.append(f"graph output {t!r} is never written")
        if problems:
            raise GraphError(f"train graph {self.name}: " + " | ".join(problems[:20]))

    def producer(self, tensor_name: str) -> Optional[int]:
        """Index of the op that first writes ``tensor_name`` (None for inputs/persistent)."""
        for i, op in enumerate(self.ops):
            if tensor_name in op.outputs:
                return i
        return None

    def consumers(self, tensor_name: str) -> List[int]:
        return [i for i, op in enumerate(self.ops) if tensor_name in op.inputs]

    def tensors_of_kind(self, *kinds: str) -> List[str]:
        return [n for n, t in self.tensors.items() if t.kind in kinds]

    @property
    def parameters(self) -> List[str]:
        """Trainable tensors (updated in place each step)."""
        return self.tensors_of_kind("parameter")

    def ops_in_phase(self, phase: str) -> List[TrainOp]:
        return [op for op in self.ops if op.phase == phase]

    def op_type_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for op in self.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        return counts

    def trainable_bytes(self) -> int:
        return sum(self.tensors[n].nbytes for n in self.tensors_of_kind("parameter", "state"))

    # ------------------------------------------------------------------ serialization
    def to_dict(self, include_data: bool = False) -> dict:
        """JSON-ready description (arrays as lists; constant/parameter data only on request)."""

        def tensor(t: TrainTensor) -> dict:
            d = dict(name=t.name, shape=list(t.shape), dtype=t.dtype, kind=t.kind)
            if t.scale is not None:
                d.update(scale=t.scale.tolist(), zero_point=t.zero_point.tolist(), quantized_dim=t.quantized_dim)
            if include_data and t.data is not None:
                d["data"] = t.data.tolist()
            return d

        return dict(
            name=self.name,
            inputs=self.inputs,
            outputs=self.outputs,
            scheme=self.scheme,
            lr=self.lr,
            seed=self.seed,
            head_type=self.head_type,
            num_classes=self.num_classes,
            layers=self.layers,
            head=_jsonable(self.head),
            tensors=[tensor(t) for t in self.tensors.values()],
            ops=[
                dict(type=op.type, name=op.name, phase=op.phase, inputs=op.inputs, outputs=op.outputs,
                     attrs=_jsonable(op.attrs))
                for op in self.ops
            ],
        )

    def summary(self) -> str:
        lines = [repr(self)]
        for i, op in enumerate(self.ops):
            lines.append(f"{i:4d} {op.phase:8s} {op.type:30s} {op.name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {p: len(self.ops_in_phase(p)) for p in PHASES}
        return (
            f"TrainGraph({self.name!r}, {len(self.ops)} ops {counts}, {len(self.parameters)} parameters, "
            f"head={self.head_type}, classes={self.num_classes})"
        )


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
