"""QuantGraph <-> Keras model: ``from_graph`` builds a model of emulating layers, ``to_graph``
writes the trained parameters back into a copy of the graph.

The classifier is the graph's last conv-like op (the last conv index of a sparse scheme).
Only RESHAPE, SOFTMAX, QUANTIZE and DEQUANTIZE may follow it; the Keras model returns the
real-valued logits (the classifier chain's output before any SOFTMAX), since training uses
softmax cross-entropy on the dequantized logits (DESIGN.md).

Head rules (a new ``num_classes`` head; the same as the training-graph compiler's, so both
start from the same head):

- initial weights and bias zero (``head_init``: the one rule of the compiler, the device
  file and this front-end; why zero is in its docstring).
- ``head="int8"``: an emulated int8 layer of the classifier's op type; one weight scale
  ``head_weight_headroom * a / 127``, ``a = 1/sqrt(c_in)`` (default 2: weights up to
  ``±2a`` before the [-127, 127] clamp) for every channel, bias scale ``s_x * s_w``, logits int8 with zero point 0 and
  scale ``head_logits_scale`` (default 1/8: real range about [-16, 16]).
- ``head="float"``: a float32 ``FloatHead``. ``to_graph`` quantizes it: weights symmetric
  per output channel for CONV_2D, per tensor for FULLY_CONNECTED (``s_w = max|w| / 127``),
  bias ``round(b / (s_x s_w))`` in int32, logits zero point 0 and scale
  ``1.25 * max|logit| / 127`` with ``max|logit|`` observed on ``calibration_data``, or
  ``logit_range / 127`` if given instead, else the worst-case bound
  ``max_c |b_c| + sum_i |w_ci| max|x|`` over the int8 feature range (never clips, coarse).
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import keras

from ..contract import CLASSIFIER_TAIL_OPS, check
from ..graph import CONV_LIKE_OPS, DEFAULT_GRAD_DTYPE, GRAD_DTYPES, GraphError, Op, QuantGraph, Tensor
from ..ops.forward import concatenation_axis
from ..ops.quant import INT32_MAX, INT32_MIN
from ..training.autodiff import DEFAULT_INT8_LOGITS_SCALE
from .fake_quant import activation_range
from .layers import (
    Dequantize,
    FloatHead,
    GradientStore,
    QuantAdd,
    QuantConv,
    QuantMean,
    QuantPad,
    QuantPool,
    QuantLeakyRelu,
    QuantRelu,
    Requantize,
    head_init,
    layer_name,
    round_to_int,
)

_HEADS = ("float", "int8")


# --------------------------------------------------------------------------- small helpers
def _constant(graph: QuantGraph, op: Op, position: int, what: str) -> np.ndarray:
    name = op.inputs[position] if len(op.inputs) > position else None
    if name is None or graph.tensors[name].data is None:
        raise GraphError(f"{graph.name}: op {op.name or op.type}: {what} must be a constant tensor")
    return graph.tensors[name].data


def _qparams(graph: QuantGraph, name: str, op: Op):
    """(scale, zero point) of an int8 activation (per tensor: the support contract checked it)."""
    t = graph.tensors[name]
    return t.scalar_scale(), t.scalar_zero_point()


def _per_channel_shape(ndim: int, axis: int, n: int):
    shape = [1] * ndim
    shape[axis] = n
    return tuple(shape)


def _channel_axis(op_type: str) -> int:
    return 3 if op_type == "DEPTHWISE_CONV_2D" else 0


def _weight_scales(graph: QuantGraph, op: Op) -> np.ndarray:
    """One weight scale per output channel (the support contract checked form and axis)."""
    w = graph.tensors[op.inputs[1]]
    n = w.shape[_channel_axis(op.type)]
    return w.scale if w.per_channel else np.repeat(w.scale, n)


def classifier_op_index(graph: QuantGraph) -> int:
    """The classifier: the last conv-like op (the training contract says there is one)."""
    return graph.conv_op_indices()[-1]


# --------------------------------------------------------------------------- layers from ops
def _conv_layer(graph: QuantGraph, op_index: int, quantized: bool) -> QuantConv:
    op = graph.ops[op_index]
    x_scale, x_zp = _qparams(graph, op.inputs[0], op)
    y_scale, y_zp = _qparams(graph, op.outputs[0], op)
    w = graph.tensors[op.inputs[1]]
    w_scales = _weight_scales(graph, op)
    bias_name = op.inputs[2] if len(op.inputs) > 2 else None
    bias = None if bias_name is None else graph.tensors[bias_name].data.astype(np.float64)
    kernel = w.data.astype(np.float64)
    if not quantized:
        kernel = kernel * w_scales.reshape(_per_channel_shape(kernel.ndim, _channel_axis(op.type), w_scales.size))
        if bias is not None:
            bias = bias * (x_scale * w_scales)
    a = op.attrs
    clamp = activation_range(a.get("activation", "NONE"), y_scale, y_zp)
    if op.type == "FULLY_CONNECTED":
        strides, padding, dilation = (1, 1), "VALID", (1, 1)
    else:
        strides = (a.get("stride_h", 1), a.get("stride_w", 1))
        padding = a.get("padding", "VALID")
        dilation = (a.get("dilation_h", 1), a.get("dilation_w", 1))
    out_shape = graph.tensors[op.outputs[0]].shape
    return QuantConv(
        op.type, w.shape, out_shape[1:], x_scale, x_zp, w_scales, y_scale, y_zp, clamp=clamp,
        use_bias=bias is not None, strides=strides, padding=padding, dilation=dilation,
        quantized=quantized, op_index=op_index, kernel_values=kernel, bias_values=bias,
        name=layer_name(op.name or f"op{op_index}_{op.type.lower()}"))


def _op_layer(graph: QuantGraph, op_index: int, quantized: bool):
    """The Keras layer for a non-conv op (called with the op's activation inputs)."""
    op = graph.ops[op_index]
    name = layer_name(op.name or f"op{op_index}_{op.type.lower()}")
    common = dict(quantized=quantized, op_index=op_index, name=name)
    a = op.attrs
    if op.type == "ADD":
        sa, za = _qparams(graph, op.inputs[0], op)
        sb, zb = _qparams(graph, op.inputs[1], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        return QuantAdd(sa, za, sb, zb, sy, zy, clamp=activation_range(a.get("activation", "NONE"), sy, zy), **common)
    if op.type == "MEAN":
        sx, zx = _qparams(graph, op.inputs[0], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        axes = np.atleast_1d(_constant(graph, op, 1, "the MEAN axes")).astype(int).tolist()
        return QuantMean(axes, a.get("keep_dims", False), sx, zx, sy, zy, **common)
    if op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        sx, zx = _qparams(graph, op.inputs[0], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        if not np.isclose(sx, sy, rtol=1e-6) or zx != zy:
            raise GraphError(f"{graph.name}: {op.type} {op.name}: input and output quantization must be equal")
        return QuantPool(op.type, (a["filter_h"], a["filter_w"]), (a["stride_h"], a["stride_w"]), a["padding"],
                         sy, zy, clamp=activation_range(a.get("activation", "NONE"), sy, zy), **common)
    if op.type == "PAD":
        _qparams(graph, op.inputs[0], op)
        _, zy = _qparams(graph, op.outputs[0], op)
        return QuantPad(_constant(graph, op, 1, "the paddings").tolist(), zy, **common)
    if op.type == "QUANTIZE":
        sx, zx = _qparams(graph, op.inputs[0], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        return Requantize(sx, zx, sy, zy, **common)
    if op.type == "RESHAPE":
        shape = graph.tensors[op.outputs[0]].shape
        return keras.layers.Reshape(shape[1:], name=name)
    if op.type in ("RELU", "RELU6"):
        sx, zx = _qparams(graph, op.inputs[0], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        return QuantRelu(op.type, sx, zx, sy, zy, **common)
    if op.type == "LEAKY_RELU":
        sx, zx = _qparams(graph, op.inputs[0], op)
        sy, zy = _qparams(graph, op.outputs[0], op)
        return QuantLeakyRelu(a["alpha"], sx, zx, sy, zy, **common)
    if op.type == "CONCATENATION":
        # no requantization: the support contract holds every input at the output's quantization
        return keras.layers.Concatenate(axis=concatenation_axis(graph, op), name=name)
    raise GraphError(f"{graph.name}: op {op_index} ({op.type}) is not supported here")


# --------------------------------------------------------------------------- head
def _new_int8_head(graph, cls_index, num_classes, weight_headroom, logits_scale) -> QuantConv:
    op = graph.ops[cls_index]
    x_scale, x_zp = _qparams(graph, op.inputs[0], op)
    c_in = int(graph.tensors[op.inputs[0]].size)
    real = head_init(c_in, num_classes).astype(np.float64)
    # one scale for every channel: weights up to weight_headroom / sqrt(c_in) before the clamp
    w_scale = weight_headroom * (1.0 / np.sqrt(c_in)) / 127.0
    kernel = round_to_int(real / w_scale, -127, 127, np.int8)
    if op.type == "CONV_2D":
        kernel = kernel.reshape(num_classes, 1, 1, c_in)
        out_shape = graph.tensors[op.outputs[0]].shape[:-1] + (num_classes,)
    else:
        out_shape = (1, num_classes)
    return QuantConv(op.type, kernel.shape, out_shape[1:], x_scale, x_zp, np.full(num_classes, w_scale),
                     float(logits_scale), 0, clamp=(-128, 127), use_bias=True, quantized=True, op_index=cls_index,
                     is_new_head=True, kernel_values=kernel, bias_values=np.zeros(num_classes), name="new_head")


def _model_input(graph: QuantGraph):
    """(name of the int8 tensor the Keras model takes, index of a skipped input QUANTIZE or None);
    a float32 input feeds one QUANTIZE (the support contract's edge rule)."""
    in_name = graph.inputs[0]
    skipped = None
    if graph.tensors[in_name].dtype == "float32":
        skipped = graph.consumers(in_name)[0]
        in_name = graph.ops[skipped].outputs[0]
    return in_name, skipped


# --------------------------------------------------------------------------- from_graph
class _Builder:
    """Walks graph ops, calling one Keras layer per op on the Keras tensors of its inputs."""

    def __init__(self, graph: QuantGraph, quantized: bool, grad_dtype: str = DEFAULT_GRAD_DTYPE):
        self.graph = graph
        self.quantized = quantized
        self.grad_dtype = grad_dtype
        self.values: Dict[str, object] = {}
        self.tensor_layers: Dict[str, str] = {}
        self.float32_grads: set = set()  # the logits and what follows the head: float32 gradients

    def store(self, name: str, value, layer) -> None:
        """``value`` is graph tensor ``name``, computed by ``layer``; its gradient is rounded
        as the training graph stores ``grad/<name>`` (float16: ``GradientStore``)."""
        if self.grad_dtype != "float32" and name not in self.float32_grads:
            t = self.graph.tensors[name]
            scale = t.scalar_scale() if self.quantized and t.scale is not None else 1.0
            value = GradientStore(scale, self.grad_dtype, name=layer_name(f"grad_store_{name}"))(value)
        self.values[name] = value
        self.tensor_layers[name] = layer.name

    def call(self, op_index: int, layer, n_inputs: int = 1):
        op = self.graph.ops[op_index]
        names = op.inputs[:n_inputs]
        missing = [n for n in names if n not in self.values]
        if missing:
            raise GraphError(f"{self.graph.name}: op {op_index} ({op.type}) reads {missing}, "
                             "which is neither the model input nor produced by an earlier op")
        self.store(op.outputs[0], layer(*[self.values[n] for n in names]), layer)
        return layer

    def run(self, op_index: int):
        g, op = self.graph, self.graph.ops[op_index]
        if op.type in CONV_LIKE_OPS:
            return self.call(op_index, _conv_layer(g, op_index, self.quantized))
        if op.type == "ADD":
            constant = [k for k, n in enumerate(op.inputs[:2]) if g.tensors[n].data is not None]
            if len(constant) == 2:
                raise GraphError(f"{g.name}: ADD (op {op_index}) of two constants is not supported")
            layer = _op_layer(g, op_index, self.quantized)
            if not constant:
                return self.call(op_index, layer, 2)
            k = constant[0]
            c = g.tensors[op.inputs[k]]
            data = c.data.astype(np.float32)
            if not self.quantized:
                data = (data - c.scalar_zero_point()) * c.scalar_scale()
            layer.constant, layer.constant_position = data, k
            x = self.values.get(op.inputs[1 - k])
            if x is None:
                raise GraphError(f"{g.name}: op {op_index} (ADD) reads {op.inputs[1 - k]!r}, which no earlier op produced")
            self.store(op.outputs[0], layer(x), layer)
            return layer
        if op.type in ("SOFTMAX", "DEQUANTIZE"):
            raise GraphError(f"{g.name}: {op.type} (op {op_index}) is only supported at the end of the graph")
        if op.type == "CONCATENATION":
            missing = [n for n in op.inputs if n not in self.values]
            if missing:
                raise GraphError(f"{g.name}: op {op_index} (CONCATENATION) reads {missing}, which no earlier op produced")
            layer = _op_layer(g, op_index, self.quantized)
            self.store(op.outputs[0], layer([self.values[n] for n in op.inputs]), layer)
            return layer
        return self.call(op_index, _op_layer(g, op_index, self.quantized))


def from_graph(
    graph: QuantGraph,
    num_classes: Optional[int] = None,
    head: str = "float",
    quantized: bool = True,
    head_weight_headroom: float = 2.0,
    head_logits_scale: float = DEFAULT_INT8_LOGITS_SCALE,
    name: Optional[str] = None,
    grad_dtype: str = DEFAULT_GRAD_DTYPE,
) -> keras.Model:
    """A Keras model whose layers emulate the int8 ``graph`` (see ``layers``).

    - ``num_classes``: replace the classifier (last conv-like op) by a new head with that
      many outputs; ``None`` keeps the whole graph (then ``to_graph`` gives it back
      unchanged until trained).
    - ``head``: "float" (float32 Dense on the dequantized features) or "int8" (emulated int8
      layer), starting at zero; the head rules are in the module docstring.
    - ``quantized=False`` builds the float version of the same network (real weights, no
      rounding, clamps kept) with a float head: the fp32 baseline.

    The model takes the int8 input values (any numeric dtype) in NHWC with a free batch
    dimension and returns the real-valued output before any trailing SOFTMAX: the logits,
    ``[batch, classes]`` for a new head. A float graph input's QUANTIZE is skipped (the
    model takes its int8 output). The source graph is kept as ``model.tflm_graph`` for
    ``to_graph`` and ``SparseUpdate``.
    - ``grad_dtype="float16"`` simulates the device's float16 gradient storage: the gradient
      of every graph tensor but the logits is rounded to IEEE binary16 in the backward
      (``GradientStore``), as the training graph exported with the same ``grad_dtype`` does.
    """
    if not isinstance(graph, QuantGraph):
        raise GraphError(f"from_graph: expected a QuantGraph, got {type(graph).__name__}")
    if head not in _HEADS:
        raise GraphError(f"from_graph: head must be one of {_HEADS}, got {head!r}")
    if num_classes is not None and (not isinstance(num_classes, (int, np.integer)) or num_classes < 2):
        raise GraphError(f"from_graph: num_classes must be an integer >= 2, got {num_classes!r}")
    if not quantized and head == "int8" and num_classes is not None:
        raise GraphError("from_graph: the float version of a network (quantized=False) takes a float head")
    # a new head is a training graph; the whole graph (num_classes=None) only has to run
    check(graph, training=num_classes is not None)
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise GraphError(f"{graph.name}: from_graph supports one input and one output, "
                         f"got {len(graph.inputs)} and {len(graph.outputs)}")
    in_name, skipped = _model_input(graph)
    in_t = graph.tensors[in_name]

    if grad_dtype not in GRAD_DTYPES:
        raise GraphError(f"from_graph: grad_dtype must be one of {GRAD_DTYPES}, got {grad_dtype!r}")
    b = _Builder(graph, quantized, grad_dtype)
    inputs = keras.Input(shape=in_t.shape[1:], dtype="float32", name=layer_name(in_name))
    x = inputs
    if not quantized:
        x = Dequantize(in_t.scalar_scale(), in_t.scalar_zero_point(), name="dequantize_input")(x)
    b.values[in_name] = x
    first = 0 if skipped is None else skipped + 1
    if skipped is not None and skipped != 0:
        raise GraphError(f"{graph.name}: the input QUANTIZE must be the first op")

    if num_classes is None:
        end = next((i for i in range(first, len(graph.ops)) if graph.ops[i].type in ("SOFTMAX", "DEQUANTIZE")),
                   len(graph.ops))
        after = [f"{graph.ops[i].type} (op {i})" for i in range(end, len(graph.ops))
                 if graph.ops[i].type not in CLASSIFIER_TAIL_OPS]
        if after:  # the model returns the value before the SOFTMAX / DEQUANTIZE: nothing may compute after it
            raise GraphError(f"{graph.name}: only {'/'.join(CLASSIFIER_TAIL_OPS)} may follow a SOFTMAX or "
                             f"DEQUANTIZE; found " + ", ".join(after))
        for i in range(first, end):
            b.run(i)
        out_name = graph.ops[end - 1].outputs[0] if end > first else in_name
        out = b.values[out_name]
        if quantized:
            t = graph.tensors[out_name]
            out = Dequantize(t.scalar_scale(), t.scalar_zero_point(), name="dequantize_output")(out)
    else:
        cls_index = classifier_op_index(graph)
        for i in range(first, cls_index):
            b.run(i)
        cls_op = graph.ops[cls_index]
        features = b.values.get(cls_op.inputs[0])
        if features is None:
            raise GraphError(f"{graph.name}: the classifier's input {cls_op.inputs[0]!r} is not computed")
        if head == "float":
            f_t = graph.tensors[cls_op.inputs[0]]
            s, z = _qparams(graph, cls_op.inputs[0], cls_op)
            layer = FloatHead(num_classes, s, z, quantized=quantized, op_index=cls_index, name="new_head",
                              kernel_values=head_init(int(f_t.size), int(num_classes)).T,
                              bias_values=np.zeros(num_classes))
            out = layer(features)  # float logits (their gradient stays float32): no graph tensor to map
        else:
            b.float32_grads.update(t for op in graph.ops[cls_index:] for t in op.outputs)  # grad/logits: float32
            layer = b.call(cls_index, _new_int8_head(graph, cls_index, int(num_classes),
                                                     head_weight_headroom, head_logits_scale))
            out_name, qparams = cls_op.outputs[0], (layer.y_scale, layer.y_zero_point)
            for i in range(cls_index + 1, len(graph.ops)):
                op = graph.ops[i]
                if op.type in ("SOFTMAX", "DEQUANTIZE"):
                    break  # the model returns logits
                if op.type == "RESHAPE":
                    shape = graph.tensors[op.outputs[0]].shape[1:-1] + (int(num_classes),)
                    b.call(i, keras.layers.Reshape(shape, name=layer_name(op.name or f"op{i}_reshape")))
                else:
                    b.run(i)
                    qparams = _qparams(graph, op.outputs[0], op)
                out_name = op.outputs[0]
            out = keras.layers.Reshape((int(num_classes),), name="flatten_logits")(b.values[out_name])
            out = Dequantize(*qparams, name="dequantize_logits")(out)

    model = keras.Model(inputs, out, name=layer_name(name or graph.name))
    model.tflm_graph = graph.copy()
    model.tflm_quantized = bool(quantized)
    model.tflm_tensor_layers = dict(b.tensor_layers)
    return model


# --------------------------------------------------------------------------- to_graph
def _written_back(values: np.ndarray, original: Optional[np.ndarray], lo: int, hi: int, dtype) -> np.ndarray:
    """Trained variable -> integer tensor data: round half away and clamp; an element whose
    variable still holds exactly its original value keeps the original integer (so frozen
    parameters come back bit-identical even where float could not hold them)."""
    rounded = round_to_int(values, lo, hi, dtype)
    if original is None or original.shape != rounded.shape:
        return rounded
    unchanged = np.asarray(values) == original.astype(np.asarray(values).dtype)
    return np.where(unchanged, original, rounded).astype(dtype)


def _emulating_layers(model: keras.Model):
    return [layer for layer in model.layers if isinstance(layer, (QuantConv, FloatHead))]


def _quantize_float_head(head: FloatHead, model: keras.Model, per_channel: bool, calibration_data, logit_range):
    """int8 weights, their scales, int32 bias, its scales, logits scale and zero point of a FloatHead."""
    kernel = np.asarray(head.kernel.numpy(), dtype=np.float64).T  # [classes, in]
    bias = np.asarray(head.bias.numpy(), dtype=np.float64)
    n = kernel.shape[0]
    max_abs = np.max(np.abs(kernel), axis=1) if per_channel else np.full(n, np.max(np.abs(kernel)))
    w_scales = np.where(max_abs > 0, max_abs / 127.0, 1.0 / 127.0)
    w_q = round_to_int(kernel / w_scales[:, None], -127, 127, np.int8)
    b_scales = head.x_scale * w_scales
    b_q = round_to_int(bias / b_scales, INT32_MIN, INT32_MAX, np.int32)
    if calibration_data is not None:
        logits = np.asarray(model.predict(np.asarray(calibration_data, dtype=np.float32), verbose=0))
        absmax = float(np.max(np.abs(logits))) if logits.size else 0.0
        y_scale = 1.25 * (absmax if absmax > 0 else 1.0) / 127.0
    else:
        if logit_range is None:
            x_lo = head.x_scale * (-128 - head.x_zero_point)
            x_hi = head.x_scale * (127 - head.x_zero_point)
            logit_range = float(np.max(np.abs(bias) + np.abs(kernel).sum(axis=1) * max(abs(x_lo), abs(x_hi))))
        y_scale = max(float(logit_range), 1e-6) / 127.0
    return w_q, (w_scales if per_channel else w_scales[:1]), b_q, b_scales, y_scale, 0


def _replace_head(g: QuantGraph, cls_index: int, w_q, w_scales, b_q, b_scales, y_scale, y_zp) -> None:
    """Put a new head's tensors into ``g`` at the classifier and fix the shapes after it."""
    op = g.ops[cls_index]
    num_classes = int(w_q.shape[0])
    if op.type == "CONV_2D":
        w_q = w_q.reshape(num_classes, 1, 1, -1)
    w_name = op.inputs[1]
    w_scales = np.asarray(w_scales, dtype=np.float64).reshape(-1)
    g.tensors[w_name] = Tensor(w_name, w_q.shape, "int8", w_scales, np.zeros(w_scales.size, np.int64), 0, w_q)
    b_name = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] is not None else f"{op.name or 'classifier'}/bias"
    if len(op.inputs) < 3:
        op.inputs = list(op.inputs) + [b_name]
    op.inputs[2] = b_name
    g.tensors[b_name] = Tensor(b_name, (num_classes,), "int32", b_scales, np.zeros(num_classes, np.int64), 0,
                               np.asarray(b_q, dtype=np.int32))
    out = g.tensors[op.outputs[0]]
    g.tensors[out.name] = Tensor(out.name, out.shape[:-1] + (num_classes,), "int8", [y_scale], [y_zp])
    changed = {out.name}
    for i in range(cls_index + 1, len(g.ops)):
        nxt = g.ops[i]
        if not changed.intersection(nxt.inputs):
            continue
        src = g.tensors[nxt.inputs[0]]
        for name in nxt.outputs:
            t = g.tensors[name]
            shape = t.shape[:-1] + (num_classes,)
            if nxt.type == "RESHAPE":
                scale, zp = src.scale, src.zero_point  # RESHAPE keeps its input's quantization
                if len(nxt.inputs) > 1 and nxt.inputs[1] is not None and g.tensors[nxt.inputs[1]].data is not None:
                    s_name = nxt.inputs[1]
                    g.tensors[s_name] = Tensor(s_name, (len(shape),), "int32", data=np.asarray(shape, np.int32))
                if "new_shape" in nxt.attrs:
                    nxt.attrs["new_shape"] = list(shape)
            else:
                scale, zp = t.scale, t.zero_point
            g.tensors[name] = Tensor(name, shape, t.dtype, scale, zp, t.quantized_dim)
            changed.add(name)


def to_graph(model: keras.Model, calibration_data=None, logit_range: Optional[float] = None) -> QuantGraph:
    """The int8 QuantGraph of a model built by ``from_graph`` (int8 emulation), with its
    current parameters: weights rounded half away from zero and clamped to [-127, 127],
    biases rounded to int32; a new head replaces the classifier (its quantization is
    described in the module docstring; ``calibration_data``/``logit_range`` are for a
    float head). Unchanged parameters come back bit-identical.
    """
    graph = getattr(model, "tflm_graph", None)
    if not isinstance(graph, QuantGraph):
        raise GraphError("to_graph: the model was not built by tflm_train.keras.from_graph (no tflm_graph)")
    if not getattr(model, "tflm_quantized", True):
        raise GraphError("to_graph: the model is the float version of the network (quantized=False); "
                         "only an int8-emulating model can be written back")
    g = graph.copy()
    cls_index = classifier_op_index(g)
    for layer in _emulating_layers(model):
        op = g.ops[layer.op_index]
        if isinstance(layer, FloatHead):
            per_channel = g.ops[cls_index].type == "CONV_2D"
            _replace_head(g, cls_index, *_quantize_float_head(layer, model, per_channel, calibration_data,
                                                              logit_range))
            continue
        kernel = np.asarray(layer.kernel.numpy())
        if layer.is_new_head:
            w_q = round_to_int(kernel, -127, 127, np.int8).reshape(layer.out_channels, -1)
            b_q = round_to_int(layer.bias.numpy(), INT32_MIN, INT32_MAX, np.int32)
            # equal scales: FULLY_CONNECTED weights are written per tensor, as TFLite expects
            w_scales = layer.w_scales[:1] if op.type == "FULLY_CONNECTED" else layer.w_scales
            _replace_head(g, cls_index, w_q, w_scales, b_q, layer.x_scale * layer.w_scales,
                          layer.y_scale, layer.y_zero_point)
            continue
        w_t = g.tensors[op.inputs[1]]
        w_t.data = _written_back(kernel, w_t.data, -127, 127, np.int8)
        if layer.bias is not None:
            b_t = g.tensors[op.inputs[2]]
            b_t.data = _written_back(layer.bias.numpy(), b_t.data, INT32_MIN, INT32_MAX, np.int32)
    g.validate()
    return g


def emulated_activations(model: keras.Model, x) -> Dict[str, np.ndarray]:
    """{graph tensor name: int8 values} of every tensor the int8-emulating ``model`` computes
    for input ``x`` (int8 values, NHWC with batch), for comparison with
    ``tflm_train.reference.invoke_all``."""
    if not getattr(model, "tflm_quantized", False):
        raise GraphError("emulated_activations: the model must be an int8-emulating model from from_graph")
    names = list(model.tflm_tensor_layers)
    probe = keras.Model(model.inputs, [model.get_layer(model.tflm_tensor_layers[n]).output for n in names])
    outs = probe([np.asarray(x, dtype=np.float32)], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return {n: np.asarray(keras.ops.convert_to_numpy(o)).astype(np.int8) for n, o in zip(names, outs)}
