"""The NumPy reference trainer: runs a TrainGraph's ops in order, one sample per step.

Forward ops use the bit-exact int8 reference (``tflm_train.ops.forward.run_op``),
training ops the float32 backward (``ops/backward.py``) and the QAS updates
(``ops/update.py``). ``TrainState`` holds everything a step mutates: the trainable
parameters, the xorshift32 state and, for a float head, the largest logit magnitude
seen (used to quantize the head for inference).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..graph import GraphError, Op, QuantGraph, Tensor, DTYPES
from ..ops import backward as bw
from ..ops import quant
from ..ops import update as up
from ..ops.forward import run_op
from .autodiff import RNG_STATE
from .train_graph import FORWARD_OPS, TrainGraph, TrainOp

F32 = np.float32


@dataclass
class TrainState:
    """Mutable training state: persistent tensors by name (parameters and ``rng/state``)."""

    values: Dict[str, np.ndarray]
    logit_absmax: float = 0.0
    steps: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_train_graph(cls, tg: TrainGraph) -> "TrainState":
        vals = {n: np.array(t.data, copy=True) for n, t in tg.tensors.items() if t.kind in ("parameter", "state")}
        return cls(vals)

    def copy(self) -> "TrainState":
        return TrainState({k: v.copy() for k, v in self.values.items()}, self.logit_absmax, self.steps,
                          dict(self.extra))

    @property
    def rng_state(self) -> Optional[int]:
        return int(self.values[RNG_STATE][0]) if RNG_STATE in self.values else None

    def to_graph(self, graph: QuantGraph, tg: TrainGraph, calibration=None) -> QuantGraph:
        return apply_to_graph(graph, tg, self, calibration)


# --------------------------------------------------------------------------- forward view
def forward_graph(tg: TrainGraph) -> QuantGraph:
    """The TrainGraph's TFLite forward ops as a QuantGraph (cached), for ``run_op``."""
    cached = getattr(tg, "_forward_view", None)
    if cached is not None:
        return cached
    tensors = {
        n: Tensor(n, t.shape, t.dtype, t.scale, t.zero_point, t.quantized_dim, t.data)
        for n, t in tg.tensors.items()
        if t.kind not in ("gradient", "state") and t.dtype in DTYPES
    }
    ops = [Op(op.type, list(op.inputs), list(op.outputs), dict(op.attrs), op.name)
           for op in tg.ops if op.type in FORWARD_OPS]
    view = QuantGraph(tensors, ops, tg.inputs[:1], [tg.head.get("features", tg.inputs[0])], name=tg.name)
    tg._forward_view = view
    tg._forward_ops = {id(op): vop for op, vop in zip([o for o in tg.ops if o.type in FORWARD_OPS], ops)}
    return view


# --------------------------------------------------------------------------- op dispatch
def _deq(tg: TrainGraph, name: str, values) -> np.ndarray:
    t = tg.tensors[name]
    return bw.dequantize(values[name], float(t.scale[0]), int(t.zero_point[0]))


def _geometry(a):
    return (a["stride_h"], a["stride_w"]), (a["dilation_h"], a["dilation_w"]), (a["pad_top"], a["pad_left"])


def _conv_update(tg, op, values):
    a = op.attrs
    g_name, x_name, w_name, rng_name = op.inputs
    g, w = values[g_name], values[w_name]
    x_real = bw.dequantize(values[x_name], a["in_scale"], a["in_zero_point"])
    channels = a["channels"]
    if op.type == "FULLY_CONNECTED_UPDATE":
        grad = bw.fully_connected_weight_grad(g, x_real, channels)
        channel_axis, scale_axis = 1, 0
    elif op.type == "CONV_2D_UPDATE":
        stride, dil, pad = _geometry(a)
        grad = bw.conv2d_weight_grad(g, x_real, w.shape[1:3], stride, dil, pad, channels)
        channel_axis, scale_axis = 3, 0
    else:
        stride, dil, pad = _geometry(a)
        grad = bw.depthwise_weight_grad(g, x_real, w.shape[1:3], stride, dil, pad, a["depth_multiplier"], channels)
        channel_axis, scale_axis = 3, 3
    new_w, rng = up.qas_weight_update(w, grad, a["weight_scale"], a["lr"], channels, channel_axis, scale_axis,
                                      int(values[rng_name][0]))
    return [new_w, np.array([rng], np.uint32)]


def _grad_input(tg, op, values):
    a = op.attrs
    g, w = values[op.inputs[0]], values[op.inputs[1]]
    x_shape = tg.tensors[op.outputs[0]].shape
    if op.type == "FULLY_CONNECTED_GRAD_INPUT":
        return [bw.fully_connected_grad_input(g, w, a["weight_scale"], x_shape)]
    stride, dil, pad = _geometry(a)
    if op.type == "CONV_2D_GRAD_INPUT":
        return [bw.conv2d_grad_input(g, w, a["weight_scale"], x_shape, stride, dil, pad)]
    return [bw.depthwise_grad_input(g, w, a["weight_scale"], x_shape, stride, dil, pad, a["depth_multiplier"])]


def _pool_grad(tg, op, values):
    a = op.attrs
    filt, stride, pad = (a["filter_h"], a["filter_w"]), (a["stride_h"], a["stride_w"]), (a["pad_top"], a["pad_left"])
    g, out = values[op.inputs[0]], tg.tensors[op.outputs[0]]
    if op.type == "AVERAGE_POOL_2D_GRAD":
        return [bw.average_pool_grad(g, out.shape, filt, stride, pad, out.dtype)]
    return [bw.max_pool_grad(g, values[op.inputs[1]], filt, stride, pad, out.dtype)]


def _loss(tg, op, values):
    logits = values[op.inputs[0]]
    a = op.attrs
    z = logits if a["logits_scale"] is None else bw.dequantize(logits, a["logits_scale"], a["logits_zero_point"])
    loss, grad = bw.softmax_cross_entropy(z, values[op.inputs[1]])
    return [np.array([loss], F32), grad]


def _float_head_forward(tg, op, values):
    a = op.attrs
    f = bw.dequantize(values[op.inputs[0]], a["in_scale"], a["in_zero_point"])
    return [bw.fc_float_forward(f, values[op.inputs[1]], values[op.inputs[2]])]


def _float_head_update(tg, op, values):
    a = op.attrs
    f = bw.dequantize(values[op.inputs[1]], a["in_scale"], a["in_zero_point"])
    w, b = up.float_head_update(values[op.inputs[2]], values[op.inputs[3]], values[op.inputs[0]], f, a["lr"])
    return [w, b]


_TRAIN_KERNELS: Dict[str, Callable] = {
    "FC_FLOAT_FORWARD": _float_head_forward,
    "SOFTMAX_CROSS_ENTROPY": _loss,
    "CLAMP_GRAD": lambda tg, op, v: [bw.clamp_grad(v[op.inputs[0]], v[op.inputs[1]], op.attrs["act_min"],
                                                   op.attrs["act_max"])],
    "GRAD_ACCUMULATE": lambda tg, op, v: [bw.grad_accumulate(v[op.inputs[0]], v[op.inputs[1]])],
    "RESHAPE_GRAD": lambda tg, op, v: [bw.reshape_grad(v[op.inputs[0]], tg.tensors[op.outputs[0]].shape)],
    "LEAKY_RELU_GRAD": lambda tg, op, v: [bw.leaky_relu_grad(v[op.inputs[0]], v[op.inputs[1]],
                                                             op.attrs["input_zero_point"], op.attrs["alpha"])],
    "GRAD_SCALE": lambda tg, op, v: [bw.grad_scale(v[op.inputs[0]], op.attrs["factor"])],
    "CONCATENATION_GRAD": lambda tg, op, v: [bw.concatenation_grad(v[op.inputs[0]], op.attrs["axis"],
                                                                   op.attrs["begin"],
                                                                   tg.tensors[op.outputs[0]].shape[op.attrs["axis"]])],
    "PAD_GRAD": lambda tg, op, v: [bw.pad_grad(v[op.inputs[0]], op.attrs["paddings"])],
    "MEAN_GRAD": lambda tg, op, v: [bw.mean_grad(v[op.inputs[0]], tg.tensors[op.outputs[0]].shape,
                                                 op.attrs["axes"])],
    "AVERAGE_POOL_2D_GRAD": _pool_grad,
    "MAX_POOL_2D_GRAD": _pool_grad,
    "CONV_2D_GRAD_INPUT": _grad_input,
    "DEPTHWISE_CONV_2D_GRAD_INPUT": _grad_input,
    "FULLY_CONNECTED_GRAD_INPUT": _grad_input,
    "FC_FLOAT_GRAD_INPUT": lambda tg, op, v: [bw.fc_float_grad_input(v[op.inputs[0]], v[op.inputs[1]],
                                                                     tg.tensors[op.outputs[0]].shape)],
    "CONV_2D_UPDATE": _conv_update,
    "DEPTHWISE_CONV_2D_UPDATE": _conv_update,
    "FULLY_CONNECTED_UPDATE": _conv_update,
    "BIAS_UPDATE": lambda tg, op, v: [up.qas_bias_update(v[op.inputs[1]], bw.bias_grad(v[op.inputs[0]]),
                                                         op.attrs["bias_scale"], op.attrs["lr"])],
    "FC_FLOAT_UPDATE": _float_head_update,
}


def run_train_op(tg: TrainGraph, op: TrainOp, values: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Evaluate one op of the training graph on ``values`` (name -> array); returns its outputs."""
    if op.type in FORWARD_OPS:
        view = forward_graph(tg)
        return run_op(view, tg._forward_ops[id(op)], values)
    kernel = _TRAIN_KERNELS.get(op.type)
    if kernel is None:
        raise GraphError(f"train op {op.name!r}: no reference kernel for {op.type}")
    return kernel(tg, op, values)


# --------------------------------------------------------------------------- steps
def _bind(tg: TrainGraph, state: TrainState, x, label=None) -> Dict[str, np.ndarray]:
    image = tg.tensors[tg.inputs[0]]
    x = np.asarray(x)
    if x.dtype != np.dtype(image.dtype):
        raise GraphError(f"{tg.name}: input must be {image.dtype}, got {x.dtype}")
    if x.shape != image.shape:
        if x.size == image.size and x.shape == image.shape[1:]:
            x = x.reshape(image.shape)
        else:
            raise GraphError(f"{tg.name}: input must have shape {image.shape}, got {x.shape}")
    values = {n: t.data for n, t in tg.tensors.items() if t.kind == "constant"}
    values.update(state.values)
    values[tg.inputs[0]] = x
    if label is not None:
        lab = int(np.asarray(label).reshape(-1)[0])
        if not 0 <= lab < tg.num_classes:
            raise GraphError(f"{tg.name}: label {lab} outside [0, {tg.num_classes})")
        values["label"] = np.array([lab], np.int32)
    return values


class _Loaded(Mapping):
    """``values`` as a kernel reads them: stored float16 gradients widened to float32."""

    def __init__(self, values: Dict[str, np.ndarray]):
        self.values = values

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.values[name]
        return bw.load_grad(v) if v.dtype == np.float16 else v

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _run(tg: TrainGraph, values: Dict[str, np.ndarray], ops: Sequence[TrainOp]) -> None:
    """Run ``ops`` in order; a gradient is stored in its tensor's dtype (float16: one rounding
    per element) and read back widened, as the C++ kernels load and store it."""
    loaded = _Loaded(values)
    for op in ops:
        outs = run_train_op(tg, op, values if op.type in FORWARD_OPS else loaded)
        for name, out in zip(op.outputs, outs):
            t = tg.tensors[name]
            values[name] = bw.store_grad(out, t.dtype) if t.kind == "gradient" else out


def run_step(tg: TrainGraph, state: TrainState, x, label) -> Dict[str, np.ndarray]:
    """Run every op of ``tg`` on one sample and return every tensor's value (gradients
    included, parameters as updated); ``state`` itself is left unchanged."""
    values = _bind(tg, state, x, label)
    _run(tg, values, tg.ops)
    return values


def train_step(tg: TrainGraph, state: TrainState, x, label) -> float:
    """One SGD step on one sample: runs every op of ``tg`` in order, updates ``state`` in place.

    ``x`` is the int8 image (the graph input's shape, or without the batch dim),
    ``label`` an int in ``[0, num_classes)``. Returns the loss before the update.
    """
    values = run_step(tg, state, x, label)
    for name in state.values:
        state.values[name] = values[name]
    logits = values["logits"]
    if tg.head_type == "float":
        state.logit_absmax = max(state.logit_absmax, float(np.max(np.abs(logits))))
    state.steps += 1
    return float(values["loss"][0])


def forward_logits(tg: TrainGraph, state: TrainState, x) -> np.ndarray:
    """Real-valued logits ``[num_classes]`` of one sample under the current state (no update)."""
    values = _bind(tg, state, x)
    _run(tg, values, [op for op in tg.ops if op.phase == "forward"])
    t = tg.tensors["logits"]
    z = values["logits"]
    if t.dtype == "int8":
        z = bw.dequantize(z, float(t.scale[0]), int(t.zero_point[0]))
    return np.asarray(z, F32).reshape(-1)


def evaluate(tg: TrainGraph, state: TrainState, xs, labels) -> float:
    """Top-1 accuracy of the training graph's forward (with its head) on ``xs``."""
    xs = list(xs)
    labels = np.asarray(labels).reshape(-1)
    if len(xs) != labels.size:
        raise GraphError(f"evaluate: {len(xs)} inputs but {labels.size} labels")
    if not xs:
        raise GraphError("evaluate: no samples")
    hits = sum(int(np.argmax(forward_logits(tg, state, x)) == int(y)) for x, y in zip(xs, labels))
    return hits / len(xs)


# --------------------------------------------------------------------------- back to an inference graph
def _replace(g: QuantGraph, name: str, **changes) -> None:
    t = g.tensors[name]
    kw = dict(name=t.name, shape=t.shape, dtype=t.dtype, scale=t.scale, zero_point=t.zero_point,
              quantized_dim=t.quantized_dim, data=t.data)
    kw.update(changes)
    g.tensors[name] = Tensor(**kw)


def _unique_name(g: QuantGraph, name: str) -> str:
    k, out = 0, name
    while out in g.tensors:
        k += 1
        out = f"{name}_{k}"
    return out


def _quantize_float_head(tg: TrainGraph, state: TrainState, feat_scale: float, per_channel: bool,
                         logit_absmax: float):
    w = np.asarray(state.values["head/weight"], np.float64)
    b = np.asarray(state.values["head/bias"], np.float64)
    amax = np.abs(w).max(axis=1) if per_channel else np.full(w.shape[0], np.abs(w).max())
    s_w = np.where(amax > 0, amax / 127.0, 1.0 / 127.0)
    w_q = np.clip(quant.round_half_away(w / s_w[:, None]), -127, 127).astype(np.int8)
    b_scale = feat_scale * s_w
    b_q = np.clip(quant.round_half_away(b / b_scale), quant.INT32_MIN, quant.INT32_MAX).astype(np.int32)
    absmax = logit_absmax if logit_absmax > 0 else 1.0
    out_scale = 1.25 * absmax / 127.0
    return (s_w if per_channel else s_w[:1]), w_q, b_scale, b_q, out_scale


def apply_to_graph(graph: QuantGraph, tg: TrainGraph, state: TrainState, calibration=None) -> QuantGraph:
    """A copy of ``graph`` with the trained parameters and the new ``num_classes`` head.

    Trained weights/biases are copied by name. The int8 head is copied as trained; a float
    head is quantized (per output channel for CONV_2D, per tensor for FULLY_CONNECTED;
    bias with scale ``s_x * s_w``; logits scale ``1.25 * max|logit| / 127``, zero point 0,
    ``max|logit|`` from ``calibration`` images if given, else ``state.logit_absmax``).
    Shapes after the classifier (RESHAPE target, SOFTMAX, ...) follow the new class count.
    """
    head = tg.head
    cls_name = head.get("classifier_op")
    cls_ops = [op for op in graph.ops if op.name == cls_name and op.outputs[0] == head.get("classifier_output")]
    if len(cls_ops) != 1:
        raise GraphError(
            f"apply_to_graph: {graph.name} has no classifier {cls_name!r}; not the graph {tg.name} was built from")
    g = graph.copy()
    for name, value in state.values.items():
        if name == RNG_STATE or name.startswith("head/"):
            continue
        if name not in g.tensors or g.tensors[name].shape != value.shape:
            raise GraphError(f"apply_to_graph: trained tensor {name!r} does not fit {graph.name}")
        _replace(g, name, data=np.array(value, copy=True))
    cls = next(op for op in g.ops if op.name == cls_name and op.outputs[0] == head["classifier_output"])
    n = tg.num_classes
    feat = tg.tensors[head["features"]]
    s_x = float(feat.scale[0])
    w_name, b_name, out_name = cls.inputs[1], head.get("classifier_bias"), cls.outputs[0]
    per_channel = cls.type == "CONV_2D"
    if tg.head_type == "int8":
        w_t, b_t, l_t = tg.tensors["head/weight"], tg.tensors["head/bias"], tg.tensors["logits"]
        w_q, b_q = state.values["head/weight"], state.values["head/bias"]
        s_w, b_scale = w_t.scale, b_t.scale
        out_scale, out_zp = float(l_t.scale[0]), int(l_t.zero_point[0])
    else:
        absmax = state.logit_absmax
        if calibration is not None:
            absmax = max(float(np.max(np.abs(forward_logits(tg, state, x)))) for x in calibration)
        s_w, w_q, b_scale, b_q, out_scale = _quantize_float_head(tg, state, s_x, per_channel, absmax)
        out_zp = 0
        if per_channel:
            w_q = w_q.reshape(n, 1, 1, -1)
    w_shape = (n,) + tuple(g.tensors[w_name].shape[1:])
    _replace(g, w_name, shape=w_shape, scale=s_w, zero_point=np.zeros(np.size(s_w), np.int64),
             quantized_dim=0, data=np.asarray(w_q).reshape(w_shape))
    if b_name is None:
        # the file's classifier has no bias (the converter drops an all-zero one); the
        # trained head has one, so the inference graph gets it
        b_name = _unique_name(g, cls.name + "/bias")
        g.tensors[b_name] = Tensor(b_name, (n,), "int32")
        cls.inputs = list(cls.inputs[:2]) + [b_name] + list(cls.inputs[3:])
    # one zero point per scale: a kept per-tensor classifier's bias has one scale
    _replace(g, b_name, shape=(n,), scale=b_scale, zero_point=np.zeros(np.size(b_scale), np.int64),
             data=np.asarray(b_q))
    _replace(g, out_name, shape=tuple(g.tensors[out_name].shape[:-1]) + (n,), scale=[out_scale],
             zero_point=[out_zp])
    # ops after the classifier carry the class count in their last dim
    cls_index = g.ops.index(cls)
    for op in g.ops[cls_index + 1:]:
        for o in op.outputs:
            t = g.tensors[o]
            if t.shape and t.shape[-1] != n:
                _replace(g, o, shape=tuple(t.shape[:-1]) + (n,))
            if op.type == "RESHAPE":  # a reshape keeps its input's quantization
                src = g.tensors[op.inputs[0]]
                _replace(g, o, scale=src.scale, zero_point=src.zero_point)
        if op.type == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] is not None:
            s = g.tensors[op.inputs[1]]
            if s.data is not None:
                _replace(g, op.inputs[1], data=np.asarray(g.tensors[op.outputs[0]].shape, dtype=s.dtype))
    g.validate()
    return g
