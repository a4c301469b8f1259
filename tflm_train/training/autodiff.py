"""Compile-time autodiff: QuantGraph + SparseScheme -> TrainGraph (forward, loss, backward, updates).

The compiler walks the forward ops once forward ("which tensors depend on a trained
parameter") and once in reverse, emitting for each op only the backward work that some
trained parameter needs: that is the pruning of the sparse-update scheme. Each layer's
weight and bias updates are placed right after the gradient of its output exists (and
after its GRAD_INPUT, which must read the weights before this step's update), so the
weight gradient is consumed as it is produced. Specification: docs/training_graph.md.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import numpy as np

from ..contract import check
from ..graph import CONV_LIKE_OPS, DEFAULT_GRAD_DTYPE, GRAD_DTYPES, GraphError, Op, QuantGraph
from ..ops import quant
from ..ops.backward import conv_padding
from ..ops.forward import concatenation_axis, relu6_range
from ..ops.update import seed_state
from .scheme import LayerUpdate, SparseScheme
from .train_graph import TrainGraph, TrainOp, TrainTensor

#: "keep" continues training the model's own int8 classifier (a head trained earlier, e.g. in Keras).
HEADS = ("float", "int8", "keep")
#: Ops that requantize (round + clamp) their output: the backward stops the gradient at the clamp.
REQUANTIZING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MEAN", "AVERAGE_POOL_2D", "RELU",
                    "RELU6", "LEAKY_RELU")
#: Ops the backward can differentiate through.
DIFFERENTIABLE_OPS = CONV_LIKE_OPS + ("ADD", "MEAN", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "RESHAPE", "RELU",
                                      "RELU6", "LEAKY_RELU", "CONCATENATION")
DEFAULT_INT8_LOGITS_SCALE = 1.0 / 8.0
#: Default SGD rate per head mode (``default_lr``), measured by benchmarks/learning_rate.py
#: (results/learning_rate.json: a small digits CNN, one epoch of device training, mean of 2 orders).
#: A new head starts from a random classifier: 0.05 is within 1.4 points of the grid's best for
#: both new-head modes (float 47.6 % vs 49.0 % at 0.1; int8 42.4 % vs 43.6 % at 0.02). A kept head
#: is already trained (58.0 %): 0.001 keeps improving it (59.2 %, the best), 0.05 takes it down to
#: 51.3 %, 0.1 to 10.2 %. Large backbones need less for a new head too (MCUNet-5FPS at 64x64: 1e-3
#: and 3e-3 train alike, 5e-2 diverges: pooled features with a squared norm in the thousands set
#: the head's step): pass ``lr`` for them.
DEFAULT_LRS = {"float": 0.05, "int8": 0.05, "keep": 0.001}
RNG_STATE = "rng/state"


def default_lr(head: str) -> float:
    """The SGD rate used when none is given, for a head mode of ``HEADS``."""
    if head not in DEFAULT_LRS:
        raise GraphError(f"head must be one of {HEADS}, not {head!r}")
    return DEFAULT_LRS[head]


def check_lr(lr) -> float:
    """``lr`` as a float if it is a finite positive number; GraphError otherwise."""
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise GraphError(f"learning rate must be a positive number, not {lr!r}")
    if not np.isfinite(lr) or lr <= 0:
        raise GraphError(f"learning rate must be a finite positive number, not {lr}")
    return float(lr)


def _f32(v) -> float:
    """A float as the float32 value a kernel uses (a plain Python float, JSON-friendly)."""
    return float(np.float32(v))


def _f32_list(a) -> List[float]:
    return [float(x) for x in np.asarray(a, dtype=np.float32).reshape(-1)]


def head_init(c_in: int, num_classes: int) -> np.ndarray:
    """Initial real weights ``[num_classes, c_in]`` of a new head (float or int8): zero, as its bias.

    The one rule the compiler, the device file (which carries the compiler's values) and the
    Keras front-end (``FloatHead``, the int8 head, ``MaskedTrainer``) share. A zero head's first
    step sends no gradient into the backbone (``dL/dx = W^T (p - y) = 0``) and its logits start
    at chance, so the head moves before the trained layers see its gradient; softmax regression
    on fixed features is convex and its gradient differs per class, so zero has no symmetry to
    break. A random head sized for unit features (uniform in ``+-1/sqrt(c_in)``, the former
    rule) meets pretrained features of rms 2.4-5.7 here, starts overconfident and its large
    first gradients wrecked fully trained pointwise convolutions
    (``benchmarks/results/scheme_stability.json``)."""
    return np.zeros((int(num_classes), int(c_in)), np.float32)


class _Compiler:
    def __init__(self, graph: QuantGraph, scheme: SparseScheme, num_classes: int, head: str, lr, seed: int,
                 int8_logits_scale: float, grad_dtype: str = DEFAULT_GRAD_DTYPE):
        if head not in HEADS:
            raise GraphError(f"head must be one of {HEADS}, not {head!r}")
        if int(num_classes) < 2:
            raise GraphError(f"num_classes must be >= 2, not {num_classes}")
        if not np.isfinite(int8_logits_scale) or int8_logits_scale <= 0:
            raise GraphError(f"int8 logits scale must be positive, not {int8_logits_scale}")
        if grad_dtype not in GRAD_DTYPES:
            raise GraphError(f"grad_dtype must be one of {GRAD_DTYPES}, not {grad_dtype!r}")
        self.grad_dtype = grad_dtype
        self.g = graph
        self.scheme = scheme
        self.num_classes = int(num_classes)
        # a kept classifier is an int8 head whose initial values are the model's own
        self.keep_head = head == "keep"
        self.head_type = "int8" if self.keep_head else head
        self.lr = default_lr(head) if lr is None else check_lr(lr)
        self.seed = int(seed)
        self.logits_scale = float(int8_logits_scale)
        self.tensors: Dict[str, TrainTensor] = {}
        self.ops: List[TrainOp] = []
        self.layers: List[dict] = []

    # ------------------------------------------------------------------ helpers
    def add_tensor(self, t: TrainTensor) -> str:
        if t.name in self.tensors:
            raise GraphError(f"train graph: duplicate tensor {t.name!r}")
        self.tensors[t.name] = t
        return t.name

    def forward_tensor(self, name: str, kind: Optional[str] = None) -> str:
        """Copy a QuantGraph tensor into the training graph (once)."""
        if name in self.tensors:
            return name
        t = self.g.tensors[name]
        if kind is None:
            if name in self.g.inputs:
                kind = "input"
            elif t.is_constant:
                kind = "parameter" if name in self.trained_tensors else "constant"
            else:
                kind = "activation"
        data = None if t.data is None else np.array(t.data, copy=True)
        return self.add_tensor(TrainTensor(name, t.shape, t.dtype, kind, t.scale, t.zero_point, t.quantized_dim, data))

    def grad_tensor(self, name: str, like: str) -> str:
        # the loss writes its gradient in place of its float32 working values (z, d, e), so the
        # gradients of the logits stay float32 (N values); every other gradient is grad_dtype
        dtype = "float32" if like == "logits" else self.grad_dtype
        return self.add_tensor(TrainTensor(name, self.tensors[like].shape, dtype, "gradient"))

    def emit(self, type_: str, inputs, outputs, attrs=None, name="", phase="backward"):
        self.ops.append(TrainOp(type_, list(inputs), list(outputs), dict(attrs or {}), name, phase))

    # ------------------------------------------------------------------ structure checks
    def locate_classifier(self) -> int:
        """The classifier: the last conv-like op (the support contract checked its form and tail)."""
        return self.g.conv_op_indices()[-1]

    # ------------------------------------------------------------------ compile
    def compile(self) -> TrainGraph:
        g = self.g
        cls_index = self.locate_classifier()
        cls_op = g.ops[cls_index]
        updates = self.scheme.resolve(g)
        self.updates: Dict[int, LayerUpdate] = {u.op_index: u for u in updates if not u.is_classifier}
        self.trained_tensors: Set[str] = set()
        for u in self.updates.values():
            op = g.ops[u.op_index]
            if u.updates_weights:
                self.trained_tensors.add(op.inputs[1])
            if u.update_bias and len(op.inputs) > 2 and op.inputs[2] is not None:
                self.trained_tensors.add(op.inputs[2])
        forward_ops = g.ops[:cls_index]
        image = g.inputs[0]
        if g.tensors[image].dtype == "float32":
            # a float model edge: the device trains on the int8 image of the input's QUANTIZE
            # (the support contract: a float input feeds one QUANTIZE), as the Keras front-end does
            quantize = g.consumers(image)[0]
            image = g.ops[quantize].outputs[0]
            forward_ops = [op for k, op in enumerate(forward_ops) if k != quantize]
        self.feature = cls_op.inputs[0]
        self.forward_producer = {t: op for op in forward_ops for t in op.outputs}
        self.forward_consumers: Dict[str, List[Op]] = {}
        for op in forward_ops + [cls_op]:
            for t in op.inputs:
                self.forward_consumers.setdefault(t, []).append(op)

        # forward: copy ops and tensors
        self.forward_tensor(image, "input")
        for op in forward_ops:
            for t in op.inputs:
                if t is not None:
                    self.forward_tensor(t)
            for t in op.outputs:
                self.forward_tensor(t)
            self.emit(op.type, [t for t in op.inputs if t is not None], op.outputs, op.attrs, op.name, "forward")
        self.forward_tensor(self.feature)
        head_info = self.build_head(cls_op)

        # loss
        label = self.add_tensor(TrainTensor("label", (1,), "int32", "label"))
        self.add_tensor(TrainTensor("loss", (1,), "float32", "loss"))
        logits = self.tensors["logits"]
        grad_logits = self.grad_tensor("grad/logits", "logits")
        quantized_logits = logits.dtype == "int8"
        self.emit(
            "SOFTMAX_CROSS_ENTROPY", ["logits", label], ["loss", grad_logits],
            dict(
                num_classes=self.num_classes,
                logits_scale=_f32(logits.scale[0]) if quantized_logits else None,
                logits_zero_point=int(logits.zero_point[0]) if quantized_logits else None,
            ),
            "loss", "loss",
        )

        # which tensors depend on a trained parameter (the head always trains)
        needs = self.requires_grad(forward_ops)
        self.contrib_count = self.count_contributions(forward_ops, needs)
        self.pending: Dict[str, str] = {}
        self.received: Dict[str, int] = {}
        self.backward_head(cls_op, needs)
        for index in range(cls_index - 1, -1, -1):
            self.backward_op(index, g.ops[index], needs)

        scheme_dict = self.scheme.to_dict()
        return TrainGraph(
            self.tensors, self.ops, [image, "label"], ["loss"],
            name=f"{g.name}/train", scheme=scheme_dict, lr=self.lr, seed=self.seed,
            head_type=self.head_type, num_classes=self.num_classes, layers=self.layers, head=head_info,
        )

    # ------------------------------------------------------------------ head
    def head_init(self, c_in: int) -> np.ndarray:
        return head_init(c_in, self.num_classes)

    def build_head(self, cls_op: Op) -> dict:
        feat = self.tensors[self.feature]
        c_in = int(feat.size)
        w0 = self.head_init(c_in)
        info = dict(
            type=self.head_type, classifier_op=cls_op.name, classifier_type=cls_op.type,
            classifier_weight=cls_op.inputs[1], classifier_bias=cls_op.inputs[2] if len(cls_op.inputs) > 2 else None,
            classifier_output=cls_op.outputs[0], features=self.feature, num_classes=self.num_classes,
            weight="head/weight", bias="head/bias", logits="logits",
        )
        s_x = float(feat.scale[0])
        if self.head_type == "float":
            self.add_tensor(TrainTensor("head/weight", w0.shape, "float32", "parameter", data=w0))
            self.add_tensor(TrainTensor("head/bias", (self.num_classes,), "float32", "parameter",
                                        data=np.zeros(self.num_classes, np.float32)))
            self.add_tensor(TrainTensor("logits", (1, self.num_classes), "float32", "activation"))
            self.emit("FC_FLOAT_FORWARD", [self.feature, "head/weight", "head/bias"], ["logits"],
                      dict(in_scale=_f32(s_x), in_zero_point=int(feat.zero_point[0])), "head", "forward")
            return info
        if self.keep_head:
            return self.keep_classifier(cls_op, info)
        # int8 head: the classifier's op type with new (zero) weights on the grid s_w = 2a/127,
        # a = 1/sqrt(c_in): weights can grow to +-2/sqrt(c_in) before the [-127, 127] clamp
        a = 1.0 / np.sqrt(c_in)
        per_channel = cls_op.type == "CONV_2D"
        n = self.num_classes
        s_w = np.full(n if per_channel else 1, 2.0 * a / 127.0)
        w_q = np.clip(quant.round_half_away(w0.astype(np.float64) / (2.0 * a / 127.0)), -127, 127).astype(np.int8)
        if cls_op.type == "CONV_2D":
            w_shape = (n, 1, 1, c_in)
            out_shape = tuple(self.g.tensors[cls_op.outputs[0]].shape[:-1]) + (n,)
        else:
            w_shape = (n, c_in)
            out_shape = (int(feat.size) // c_in, n)
        self.add_tensor(TrainTensor("head/weight", w_shape, "int8", "parameter", s_w, np.zeros(s_w.size, np.int64),
                                    0, w_q.reshape(w_shape)))
        b_scale = s_x * (s_w if per_channel else np.full(n, s_w[0]))
        self.add_tensor(TrainTensor("head/bias", (n,), "int32", "parameter", b_scale, np.zeros(n, np.int64), 0,
                                    np.zeros(n, np.int32)))
        self.add_tensor(TrainTensor("logits", out_shape, "int8", "activation", [self.logits_scale], [0]))
        attrs = dict(cls_op.attrs)
        attrs["activation"] = "NONE"
        self.emit(cls_op.type, [self.feature, "head/weight", "head/bias"], ["logits"], attrs, "head", "forward")
        info.update(logits_scale=self.logits_scale, weight_scale=_f32_list(s_w))
        return info

    def keep_classifier(self, cls_op: Op, info: dict) -> dict:
        """The model's own int8 classifier as the trainable head (weights, bias, output quantization kept)."""
        w_src = self.g.tensors[cls_op.inputs[1]]
        b_name = cls_op.inputs[2] if len(cls_op.inputs) > 2 else None
        out = self.g.tensors[cls_op.outputs[0]]
        n = int(w_src.shape[0])
        if n != self.num_classes:
            raise GraphError(f"head='keep': the classifier has {n} classes, not num_classes={self.num_classes}")
        self.add_tensor(TrainTensor("head/weight", w_src.shape, "int8", "parameter", w_src.scale, w_src.zero_point,
                                    w_src.quantized_dim, np.array(w_src.data, copy=True)))
        if b_name is None:  # no bias in the file (the converter drops an all-zero one): it starts at zero
            b_scale = float(self.tensors[self.feature].scale[0]) * np.broadcast_to(w_src.scale, (n,))
            self.add_tensor(TrainTensor("head/bias", (n,), "int32", "parameter", b_scale, np.zeros(n, np.int64), 0,
                                        np.zeros(n, np.int32)))
        else:
            b_src = self.g.tensors[b_name]
            self.add_tensor(TrainTensor("head/bias", (n,), "int32", "parameter", b_src.scale, b_src.zero_point, 0,
                                        np.array(b_src.data, copy=True)))
        self.add_tensor(TrainTensor("logits", out.shape, "int8", "activation", out.scale, out.zero_point))
        self.emit(cls_op.type, [self.feature, "head/weight", "head/bias"], ["logits"], dict(cls_op.attrs), "head",
                  "forward")
        info.update(kept=True, logits_scale=_f32(out.scale[0]), weight_scale=_f32_list(w_src.scale))
        return info

    # ------------------------------------------------------------------ analysis
    def requires_grad(self, forward_ops: List[Op]) -> Set[str]:
        """Tensors whose value depends on a trained parameter (so their gradient is needed) ..."""
        depends: Set[str] = set()
        for i, op in enumerate(forward_ops):
            trained = i in self.updates
            if trained or any(t in depends for t in op.inputs if t is not None):
                depends.update(op.outputs)
        # ... and from which the loss can be reached (dead branches get no gradient)
        reaches = {self.feature}
        for op in reversed(forward_ops):
            if any(t in reaches for t in op.outputs):
                reaches.update(t for t in op.inputs if t is not None)
        return depends & reaches

    def grad_inputs(self, op: Op, needs: Set[str]) -> List[str]:
        """Activation inputs of ``op`` that receive a gradient from it (with repetition)."""
        if op.outputs[0] not in needs:
            return []
        if op.type == "ADD":
            cands = list(op.inputs[:2])
        elif op.type == "CONCATENATION":
            cands = list(op.inputs)
        else:
            cands = [op.inputs[0]]
        return [t for t in cands if t in needs]

    def count_contributions(self, forward_ops: List[Op], needs: Set[str]) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for op in forward_ops:
            for t in self.grad_inputs(op, needs):
                counts[t] = counts.get(t, 0) + 1
        if self.feature in needs:
            counts[self.feature] = counts.get(self.feature, 0) + 1
        return counts

    # ------------------------------------------------------------------ gradient bookkeeping
    def contribution_name(self, tensor: str) -> str:
        """Name for the next freshly computed gradient contribution of ``tensor``."""
        k = self.received.get(tensor, 0)
        return f"grad/{tensor}" if self.contrib_count.get(tensor, 1) == 1 else f"grad/{tensor}/part{k}"

    def contribute(self, tensor: str, grad: str) -> None:
        """Record a gradient contribution; accumulate as soon as two exist."""
        k = self.received.get(tensor, 0) + 1
        self.received[tensor] = k
        if tensor not in self.pending:
            self.pending[tensor] = grad
            return
        total = self.contrib_count[tensor]
        name = f"grad/{tensor}" if k == total else f"grad/{tensor}/sum{k - 1}"
        self.grad_tensor(name, tensor)
        self.emit("GRAD_ACCUMULATE", [self.pending[tensor], grad], [name], dict(inplace_ok=True),
                  f"grad/{tensor}/accumulate{k - 1}")
        self.pending[tensor] = name

    def grad_of(self, tensor: str) -> Optional[str]:
        if tensor not in self.pending:
            return None
        if self.received.get(tensor, 0) != self.contrib_count.get(tensor, 0):
            raise GraphError(f"internal: gradient of {tensor!r} incomplete when its producer is reached")
        return self.pending[tensor]

    # ------------------------------------------------------------------ backward emission
    def backward_head(self, cls_op: Op, needs: Set[str]) -> None:
        feat = self.feature
        feat_needs = feat in needs
        if self.head_type == "float":
            if feat_needs:
                out = self.grad_tensor(self.contribution_name(feat), feat)
                self.emit("FC_FLOAT_GRAD_INPUT", ["grad/logits", "head/weight"], [out], {}, "head/grad_input")
                self.contribute(feat, out)
            t = self.tensors[feat]
            self.emit(
                "FC_FLOAT_UPDATE", ["grad/logits", feat, "head/weight", "head/bias"], ["head/weight", "head/bias"],
                dict(in_scale=_f32(t.scale[0]), in_zero_point=int(t.zero_point[0]), lr=_f32(self.lr)),
                "head/update", "update",
            )
            self.layers.append(dict(
                conv_index=len(self.g.conv_op_indices()) - 1, op_name="head", op_type="FC_FLOAT",
                weight="head/weight", bias="head/bias", channels=list(range(self.tensors[feat].size)),
                update_bias=True, is_classifier=True,
            ))
            return
        head_op = Op(cls_op.type, [feat, "head/weight", "head/bias"], ["logits"], self.ops_by_name("head").attrs,
                     "head")
        self.pending["logits"] = "grad/logits"
        self.received["logits"] = self.contrib_count["logits"] = 1
        c_in = self.tensors[feat].size
        upd = LayerUpdate(len(self.g.conv_op_indices()) - 1, -1, True, tuple(range(c_in)), True)
        self.backward_layer(head_op, needs | {"logits"}, upd, feat_needs)

    def ops_by_name(self, name: str) -> TrainOp:
        return next(op for op in self.ops if op.name == name)

    def backward_op(self, index: int, op: Op, needs: Set[str]) -> None:
        out = op.outputs[0]
        if out not in needs or self.grad_of(out) is None:
            return
        if op.type not in DIFFERENTIABLE_OPS:
            raise GraphError(f"{self.g.name}: cannot backpropagate through {op.type} ({op.name}); "
                             f"train only layers after it")
        if op.type in CONV_LIKE_OPS:
            self.backward_layer(op, needs, self.updates.get(index), op.inputs[0] in needs)
            return
        g = self.clamped(op)
        x = op.inputs[0]
        x_shape = list(self.tensors[x].shape)
        if op.type == "RELU6":
            g = self.relu6_slope(op, g)
        if op.type in ("ADD", "RELU", "RELU6"):
            # the clamped output gradient is the input gradient itself (in real units the op
            # is the identity where it does not clamp; a rescaling RELU6 was scaled above)
            for t in self.grad_inputs(op, needs):
                self.contribute(t, g)
            return
        if op.type == "CONCATENATION":
            self.backward_concatenation(op, g, needs)
            return
        if x not in needs:
            return
        gx = self.grad_tensor(self.contribution_name(x), x)
        a = op.attrs
        if op.type == "MEAN":
            axes = np.atleast_1d(self.g.tensors[op.inputs[1]].data).astype(int) % len(x_shape)
            count = int(np.prod([x_shape[i] for i in sorted(set(axes.tolist()))]))
            self.emit("MEAN_GRAD", [g], [gx], dict(axes=sorted(set(axes.tolist())), count=count),
                      f"{op.name}/grad")
        elif op.type in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            out_shape = self.tensors[out].shape
            pt, pl = conv_padding(a["padding"], x_shape[1:3], out_shape[1:3], (a["filter_h"], a["filter_w"]),
                                  (a["stride_h"], a["stride_w"]))
            attrs = dict(filter_h=a["filter_h"], filter_w=a["filter_w"], stride_h=a["stride_h"],
                         stride_w=a["stride_w"], pad_top=pt, pad_left=pl, padding=a["padding"])
            ins = [g] if op.type == "AVERAGE_POOL_2D" else [g, x]
            self.emit(op.type + "_GRAD", ins, [gx], attrs, f"{op.name}/grad")
        elif op.type == "PAD":
            pads = np.asarray(self.g.tensors[op.inputs[1]].data).reshape(-1, 2).astype(int).tolist()
            self.emit("PAD_GRAD", [g], [gx], dict(paddings=pads), f"{op.name}/grad")
        elif op.type == "RESHAPE":
            self.emit("RESHAPE_GRAD", [g], [gx], dict(inplace_ok=True), f"{op.name}/grad")
        elif op.type == "LEAKY_RELU":
            # slope 1 or alpha by the sign of the saved input (the output's clamp passed above)
            self.emit("LEAKY_RELU_GRAD", [g, x], [gx],
                      dict(alpha=_f32(a["alpha"]), input_zero_point=int(self.tensors[x].zero_point[0]),
                           inplace_ok=True), f"{op.name}/grad")
        self.contribute(x, gx)

    def backward_concatenation(self, op: Op, g: str, needs: Set[str]) -> None:
        """One CONCATENATION_GRAD per input that needs a gradient: its slice of ``g``."""
        axis = concatenation_axis(self.g, op)
        begin = 0
        for x in op.inputs:
            size = self.tensors[x].shape[axis]
            if x in needs:
                gx = self.grad_tensor(self.contribution_name(x), x)
                self.emit("CONCATENATION_GRAD", [g], [gx], dict(axis=axis, begin=begin),
                          f"{op.name}/grad{begin}")
                self.contribute(x, gx)
            begin += size

    def clamped(self, op: Op) -> str:
        """The gradient of ``op``'s output, passed through CLAMP_GRAD if the op requantizes."""
        out = op.outputs[0]
        g = self.grad_of(out)
        if op.type not in REQUANTIZING_OPS:
            return g
        t = self.tensors[out]
        if op.type == "RELU6":
            x = self.tensors[op.inputs[0]]
            lo, hi = relu6_range(float(x.scale[0]), int(x.zero_point[0]))
        else:
            act = {"MEAN": "NONE", "RELU": "RELU"}.get(op.type) or op.attrs.get("activation", "NONE")
            lo, hi = quant.activation_range(act, float(t.scale[0]), int(t.zero_point[0]))
        name = self.grad_tensor(f"grad/{out}/clamped", out)
        self.emit("CLAMP_GRAD", [g, out], [name], dict(act_min=lo, act_max=hi, inplace_ok=True),
                  f"{op.name}/clamp_grad")
        return name

    def relu6_slope(self, op: Op, g: str) -> str:
        """RELU6 clamps in its input's quantization and copies the bytes (TFLite Micro): read in
        the output's quantization, its real slope is s_out / s_in, which GRAD_SCALE applies when
        the converter gave the output another scale."""
        x, y = self.tensors[op.inputs[0]], self.tensors[op.outputs[0]]
        if np.float32(x.scale[0]) == np.float32(y.scale[0]):
            return g
        name = self.grad_tensor(f"grad/{op.outputs[0]}/scaled", op.outputs[0])
        factor = float(np.float32(y.scale[0]) / np.float32(x.scale[0]))  # one float32 division
        self.emit("GRAD_SCALE", [g], [name], dict(factor=factor, inplace_ok=True), f"{op.name}/grad_scale")
        return name

    def foldable_pad(self, x: str):
        """(PAD input, (top, left)) when ``x`` comes from a spatial-only PAD read by nothing else."""
        producer = self.forward_producer.get(x)
        if producer is None or producer.type != "PAD" or len(self.forward_consumers.get(x, [])) != 1:
            return None
        pads = np.asarray(self.g.tensors[producer.inputs[1]].data).reshape(-1, 2)
        if pads.shape[0] != 4 or pads[0].any() or pads[3].any():
            return None
        src = producer.inputs[0]
        if src not in self.tensors or self.tensors[src].dtype != "int8":
            return None
        return src, (int(pads[1, 0]), int(pads[2, 0]))

    def backward_layer(self, op: Op, needs: Set[str], upd: Optional[LayerUpdate], input_needs: bool) -> None:
        """CLAMP_GRAD, GRAD_INPUT (old weights), fused weight-gradient + QAS update, bias update."""
        g = self.clamped(op)
        x, w_name = op.inputs[0], op.inputs[1]
        b_name = op.inputs[2] if len(op.inputs) > 2 else None
        x_t, w_t, y_t = self.tensors[x], self.tensors[w_name], self.tensors[op.outputs[0]]
        a = op.attrs
        geometry = {}
        if op.type != "FULLY_CONNECTED":
            kh, kw = w_t.shape[1], w_t.shape[2]
            dh, dw = a.get("dilation_h", 1), a.get("dilation_w", 1)
            pt, pl = conv_padding(a["padding"], x_t.shape[1:3], y_t.shape[1:3], (kh, kw),
                                  (a["stride_h"], a["stride_w"]), (dh, dw))
            padding = a["padding"]
            folded = self.foldable_pad(x)
            if folded is not None:
                # read the PAD's input with the padding made explicit: the padded activation
                # need not be saved and its (larger) gradient never exists
                x, (extra_top, extra_left) = folded
                x_t = self.tensors[x]
                pt, pl, padding = pt + extra_top, pl + extra_left, "EXPLICIT"
            geometry = dict(stride_h=a["stride_h"], stride_w=a["stride_w"], dilation_h=dh, dilation_w=dw,
                            pad_top=pt, pad_left=pl, padding=padding)
            if op.type == "DEPTHWISE_CONV_2D":
                geometry["depth_multiplier"] = int(a.get("depth_multiplier", 1))
        w_scale = _f32_list(w_t.scale)
        if input_needs:
            gx = self.grad_tensor(self.contribution_name(x), x)
            self.emit(f"{op.type}_GRAD_INPUT", [g, w_name], [gx], dict(geometry, weight_scale=w_scale),
                      f"{op.name}/grad_input")
            self.contribute(x, gx)
        if upd is None:
            return
        channels = list(upd.weight_channels)
        if channels:
            if RNG_STATE not in self.tensors:
                self.add_tensor(TrainTensor(RNG_STATE, (1,), "uint32", "state",
                                            data=np.array([seed_state(self.seed)], np.uint32)))
            self.emit(
                f"{op.type}_UPDATE", [g, x, w_name, RNG_STATE], [w_name, RNG_STATE],
                dict(geometry, channels=channels, weight_scale=w_scale, in_scale=_f32(x_t.scale[0]),
                     in_zero_point=int(x_t.zero_point[0]), lr=_f32(self.lr)),
                f"{op.name}/update", "update",
            )
        bias_trains = upd.update_bias and b_name is not None
        if bias_trains:
            b_t = self.tensors[b_name]
            if b_t.scale is not None and b_t.scale.size == y_t.shape[-1]:
                b_scale = b_t.scale
            else:
                b_scale = float(x_t.scale[0]) * np.broadcast_to(w_t.scale, (y_t.shape[-1],))
            self.emit("BIAS_UPDATE", [g, b_name], [b_name], dict(bias_scale=_f32_list(b_scale), lr=_f32(self.lr)),
                      f"{op.name}/bias_update", "update")
        self.layers.append(dict(
            conv_index=upd.conv_index, op_name=op.name, op_type=op.type, weight=w_name,
            bias=b_name if bias_trains else None, channels=channels, update_bias=bias_trains,
            is_classifier=upd.is_classifier,
        ))


def build_train_graph(
    graph: QuantGraph,
    scheme: SparseScheme,
    num_classes: int = 10,
    head: str = "float",
    lr: Optional[float] = None,
    seed: int = 1,
    int8_logits_scale: float = DEFAULT_INT8_LOGITS_SCALE,
    grad_dtype: str = DEFAULT_GRAD_DTYPE,
) -> TrainGraph:
    """Compile one training step of ``graph`` under ``scheme`` (see docs/training_graph.md).

    The classifier (last conv-like layer) is replaced by a new ``num_classes`` head:
    ``"float"`` (float32 FC on the dequantized pooled features) or ``"int8"`` (the
    classifier's op type with new int8 weights, logits quantized with
    ``int8_logits_scale``), or the classifier itself keeps training with ``"keep"``
    (an int8 head initialized from the model, e.g. after fine-tuning in Keras). A new head starts
    at zero, weights and bias (``head_init``). ``lr`` is the SGD
    learning rate of every update (QAS makes one rate fit all int8 layers; None: ``default_lr(head)``), ``seed`` the xorshift32 seed of stochastic rounding,
    ``grad_dtype`` the storage of
    every gradient tensor (``"float32"``, or ``"float16"``: IEEE binary16, arithmetic still float32).
    """
    if not isinstance(graph, QuantGraph):
        raise GraphError(f"build_train_graph needs a QuantGraph, not {type(graph).__name__}")
    if not isinstance(scheme, SparseScheme):
        raise GraphError(f"build_train_graph needs a SparseScheme, not {type(scheme).__name__}")
    check(graph, training=True)
    return _Compiler(graph, scheme, num_classes, head, lr, seed, float(int8_logits_scale), grad_dtype).compile()
