"""Convolutions the seed models never exercise, against TFLite Micro byte for byte (and the
NumPy reference): CONV_2D with windows larger than 1x1 and SAME padding on every edge (top,
bottom, left and right all padded, odd and even sizes, strides 1-3, dilation 2), and
DEPTHWISE_CONV_2D with every stride 1-3 for 3x3, 5x5 and 7x7 windows (the optimized kernels'
specialized interiors and their border columns), odd and prime channel counts, depth
multipliers 1-3. An off-by-one at the right or bottom edge changes these outputs."""
import numpy as np
import pytest

from tflm_train.graph import Op, QuantGraph, Tensor
from tests.test_micro_host import _act, _window_out, check_runtime


def same_padding(size, k, stride, dilation):
    """(before, after) padding of SAME on one axis."""
    out = _window_out(size, k, stride, dilation, "SAME")
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def padded_size(size, k, stride, dilation):
    """The first size from `size` up whose SAME padding covers both edges."""
    while min(same_padding(size, k, stride, dilation)) < 1:
        size += 1
    return size


def padded_graph(rng, op_type, h, w, cin, cout, kh, kw, stride, dilation=1):
    h, w = padded_size(h, kh, stride, dilation), padded_size(w, kw, stride, dilation)
    oh, ow = _window_out(h, kh, stride, dilation, "SAME"), _window_out(w, kw, stride, dilation, "SAME")
    t = {"x": _act("x", (1, h, w, cin), rng)}
    depthwise = op_type == "DEPTHWISE_CONV_2D"
    shape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
    wdata = rng.integers(-127, 128, shape).astype(np.int8)
    ws = rng.uniform(0.001, 0.05, cout)
    t["w"] = Tensor("w", shape, "int8", ws, np.zeros(cout, np.int64), 3 if depthwise else 0, wdata)
    t["b"] = Tensor("b", (cout,), "int32", t["x"].scalar_scale() * ws, np.zeros(cout, np.int64), 0,
                    rng.integers(-3000, 3000, cout).astype(np.int32))
    t["y"] = _act("y", (1, oh, ow, cout), rng)
    attrs = dict(padding="SAME", stride_h=stride, stride_w=stride, dilation_h=dilation, dilation_w=dilation,
                 activation="NONE")
    if depthwise:
        attrs["depth_multiplier"] = cout // cin
    name = f"{op_type} {h}x{w}x{cin}->{cout} k{kh}x{kw} s{stride} d{dilation}"
    return QuantGraph(t, [Op(op_type, ["x", "w", "b"], ["y"], attrs)], ["x"], ["y"], name=name)


CONV_CASES = [  # h, w, cin, cout, kh, kw, stride, dilation
    (9, 9, 3, 5, 3, 3, 1, 1), (10, 11, 5, 7, 3, 3, 1, 1), (9, 10, 7, 3, 3, 3, 2, 1), (13, 12, 4, 11, 5, 5, 2, 1),
    (11, 9, 3, 13, 5, 3, 1, 1), (14, 13, 6, 5, 7, 7, 3, 1), (10, 10, 5, 4, 3, 3, 1, 2), (12, 11, 2, 17, 4, 4, 3, 1),
]
DW_CASES = [(h, w, cin, m, k, s) for (h, w, cin, m) in ((12, 11, 5, 1), (13, 10, 7, 2), (9, 14, 3, 3))
            for k in (3, 5, 7) for s in (1, 2, 3)]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_padded_conv_matches_tflm(case):
    h, w, cin, cout, kh, kw, stride, dilation = case
    graph = padded_graph(np.random.default_rng(sum(case)), "CONV_2D", h, w, cin, cout, kh, kw, stride, dilation)
    check_runtime(graph, graph.to_tflite(), n=2)


def test_depthwise_every_stride_matches_tflm():
    rng = np.random.default_rng(7)
    for h, w, cin, m, k, s in DW_CASES:
        graph = padded_graph(rng, "DEPTHWISE_CONV_2D", h, w, cin, cin * m, k, k, s)
        check_runtime(graph, graph.to_tflite(), n=2)
