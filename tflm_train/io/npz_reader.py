"""Reader for the seed model format: a ``.json`` layout tree plus an ``.npz`` of arrays.

See ../shared/models/README.md for the format. The model becomes a QuantGraph
with TFLite conventions: stride-2 convolutions get an explicit PAD (symmetric
``k // 2``, as the source models were trained with) followed by a VALID conv,
the classifier becomes MEAN (keep_dims) -> 1x1 CONV_2D -> RESHAPE.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from ..contract import check
from ..graph import GraphError, Op, QuantGraph, Tensor

INPUT_SCALE = 1.0 / 127.5
INPUT_ZERO_POINT = 0


def _resolve(node, arrays):
    if isinstance(node, dict):
        if set(node) == {"array"}:
            key = node["array"]
            if key not in arrays:
                raise GraphError(f"npz model: array {key!r} named in the .json is missing from the .npz")
            return arrays[key]
        if set(node) == {"tuple"}:
            return tuple(node["tuple"])
        return {k: _resolve(v, arrays) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, arrays) for v in node]
    return node


class _Builder:
    def __init__(self, name):
        self.name = name
        self.tensors = {}
        self.ops = []

    def add_tensor(self, name, shape, dtype, scale=None, zero_point=None, quantized_dim=0, data=None):
        if name in self.tensors:
            raise GraphError(f"npz model: duplicate tensor name {name!r}")
        self.tensors[name] = Tensor(name, shape, dtype, scale, zero_point, quantized_dim, data)
        return name

    def act(self, name, shape, scale, zero_point):
        return self.add_tensor(name, shape, "int8", [scale], [zero_point])


def _out_size(size, kernel, stride, pad_total):
    return (size + pad_total - kernel) // stride + 1


def _conv(b: _Builder, prefix: str, layer: dict, x: str) -> str:
    p = layer["params"]
    x_t = b.tensors[x]
    _, h, w, c_in = x_t.shape
    x_scale, x_zero = float(p["x_scale"]), int(p["x_zero"])
    if not np.isclose(x_t.scalar_scale(), x_scale, rtol=1e-6) or x_t.scalar_zero_point() != x_zero:
        raise GraphError(
            f"npz model: {prefix} expects input quantization ({x_scale}, {x_zero}) but its input "
            f"{x!r} has ({x_t.scalar_scale()}, {x_t.scalar_zero_point()})"
        )
    k = layer["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else tuple(k)
    stride = int(layer["stride"])
    depthwise = bool(layer.get("depthwise", False)) or (
        int(layer["groups"]) > 1 and int(layer["groups"]) == int(layer["in_channel"])
    )
    if int(layer["groups"]) not in (1, c_in) or (int(layer["groups"]) > 1 and not depthwise):
        raise GraphError(f"npz model: {prefix}: grouped convolution with groups={layer['groups']} is unsupported")
    weight = np.asarray(p["weight"], dtype=np.int8)
    if weight.ndim == 2:
        weight = weight[:, :, None, None]
    c_out = weight.shape[0]
    w_scales = np.asarray(p["w_scales"], dtype=np.float64).reshape(-1)
    bias = np.asarray(p["bias"], dtype=np.int32).reshape(-1)

    padding = "SAME"
    if stride > 1 and (kh > 1 or kw > 1):
        # Symmetric k//2 padding, as the source models used; TFLite SAME would pad bottom/right only.
        ph, pw = kh // 2, kw // 2
        pads = np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], dtype=np.int32)
        pads_t = b.add_tensor(f"{prefix}/paddings", (4, 2), "int32", data=pads)
        padded = b.act(f"{prefix}/padded", (1, h + 2 * ph, w + 2 * pw, c_in), x_scale, x_zero)
        b.ops.append(Op("PAD", [x, pads_t], [padded], {}, name=f"{prefix}/pad"))
        x, h, w = padded, h + 2 * ph, w + 2 * pw
        padding = "VALID"
        oh, ow = _out_size(h, kh, stride, 0), _out_size(w, kw, stride, 0)
    else:
        oh, ow = -(-h // stride), -(-w // stride)

    if depthwise:
        # PyTorch [C, 1, kh, kw] -> TFLite [1, kh, kw, C]
        w_data = np.transpose(weight, (1, 2, 3, 0))
        qdim = 3
        op_type = "DEPTHWISE_CONV_2D"
    else:
        # PyTorch OIHW -> TFLite OHWI
        w_data = np.transpose(weight, (0, 2, 3, 1))
        qdim = 0
        op_type = "CONV_2D"
    w_t = b.add_tensor(f"{prefix}/weight", w_data.shape, "int8", w_scales, np.zeros(c_out, np.int64), qdim, w_data)
    b_t = b.add_tensor(f"{prefix}/bias", (c_out,), "int32", x_scale * w_scales, np.zeros(c_out, np.int64), 0, bias)
    y = b.act(f"{prefix}/output", (1, oh, ow, c_out), float(p["y_scale"]), int(p["y_zero"]))
    attrs = dict(padding=padding, stride_h=stride, stride_w=stride, dilation_h=1, dilation_w=1, activation="NONE")
    if depthwise:
        attrs["depth_multiplier"] = c_out // c_in
    b.ops.append(Op(op_type, [x, w_t, b_t], [y], attrs, name=prefix))
    return y


def load_npz(path: str, input_size: Optional[int] = None) -> QuantGraph:
    """Load a seed model from ``path`` (the .npz or the .json; the other must sit beside it).

    ``input_size`` overrides the square input resolution (the models are fully
    convolutional up to the global pool); default is the size recorded in the file.
    """
    base, ext = os.path.splitext(path)
    if ext not in (".npz", ".json"):
        raise GraphError(f"{path}: not a seed model (.npz or .json expected)")
    json_path, npz_path = base + ".json", base + ".npz"
    for p in (json_path, npz_path):
        if not os.path.exists(p):
            raise GraphError(f"{path}: seed model needs both .json and .npz; {p} is missing")
    try:
        with open(json_path) as f:
            layout = json.load(f)
    except json.JSONDecodeError as e:
        raise GraphError(f"{json_path}: malformed JSON ({e})") from None
    try:
        arrays = dict(np.load(npz_path))
    except Exception as e:  # zipfile / pickle errors of a corrupt file
        raise GraphError(f"{npz_path}: malformed .npz ({e})") from None
    for key in ("first_conv", "blocks", "classifier"):
        if key not in layout:
            raise GraphError(f"{json_path}: missing top-level key {key!r}")
    model = _resolve(layout, arrays)
    name = os.path.basename(base)
    b = _Builder(name)
    size = int(input_size or model["first_conv"]["in_shape"])
    c_in = int(model["first_conv"]["in_channel"])
    x = b.act("input", (1, size, size, c_in), INPUT_SCALE, INPUT_ZERO_POINT)

    x = _conv(b, "first_conv", model["first_conv"], x)
    for i, block in enumerate(model["blocks"]):
        if block.get("se") is not None:
            raise GraphError(f"npz model: blocks/{i} has a squeeze-excite module, which is unsupported")
        block_in = x
        for part in ("pointwise1", "depthwise", "pointwise2"):
            if block.get(part) is not None:
                x = _conv(b, f"blocks/{i}/{part}", block[part], x)
        res = block.get("residual")
        if res is not None:
            rp = res["params"]
            xin = b.tensors[block_in]
            if xin.shape != b.tensors[x].shape:
                raise GraphError(f"npz model: blocks/{i} residual shapes differ: {xin.shape} vs {b.tensors[x].shape}")
            if not np.isclose(xin.scalar_scale(), float(rp["x_scale"]), rtol=1e-6) or xin.scalar_zero_point() != int(rp["x_zero"]):
                raise GraphError(f"npz model: blocks/{i} residual input quantization does not match the block input")
            y = b.act(f"blocks/{i}/residual/output", xin.shape, float(rp["y_scale"]), int(rp["y_zero"]))
            b.ops.append(Op("ADD", [block_in, x], [y], {"activation": "NONE"}, name=f"blocks/{i}/residual"))
            x = y
    if model.get("feature_mix") is not None:
        x = _conv(b, "feature_mix", model["feature_mix"], x)

    cls = model["classifier"]
    cp = cls["params"]
    c = b.tensors[x].shape[-1]
    axes = b.add_tensor("pool/axes", (2,), "int32", data=np.array([1, 2], np.int32))
    pooled = b.act("pool/output", (1, 1, 1, c), float(cp["x_scale"]), int(cp["x_zero"]))
    b.ops.append(Op("MEAN", [x, axes], [pooled], {"keep_dims": True}, name="pool"))
    cls_layer = dict(cls)
    cls_layer.setdefault("stride", 1)
    cls_layer.setdefault("groups", 1)
    logits4 = _conv(b, "classifier", cls_layer, pooled)
    n_cls = b.tensors[logits4].shape[-1]
    shape_t = b.add_tensor("classifier/shape", (2,), "int32", data=np.array([1, n_cls], np.int32))
    t = b.tensors[logits4]
    logits = b.act("logits", (1, n_cls), t.scalar_scale(), t.scalar_zero_point())
    b.ops.append(Op("RESHAPE", [logits4, shape_t], [logits], {}, name="classifier/reshape"))
    graph = QuantGraph(b.tensors, b.ops, ["input"], [logits], name=name)
    check(graph, training=False)
    return graph
