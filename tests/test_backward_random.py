"""The restructured backward kernels on random shapes, byte for byte against the NumPy reference
trainer (host runtime) and against the host runtime in the firmware (QEMU).

Each graph chains blocks of a pointwise CONV_2D and a DEPTHWISE_CONV_2D with random odd and prime
channel counts, kernels 3 / 5 / 7, strides 1 and 2, SAME and VALID padding and plane sizes on both
sides of the depthwise gradient's four-channel block bound, then MEAN and a classifier; every layer
trains (split channels where the ratio is below 1), so the training step runs
DEPTHWISE_CONV_2D_GRAD_INPUT (four channels at a time, the per-channel lines for the rest, in place
and not), CONV_2D_GRAD_INPUT (1x1, in place both ways and normal), CONV_2D_UPDATE, CLAMP_GRAD
(bitmasks, in place) and BIAS_UPDATE, with float32 and float16 gradients.
"""
import numpy as np
import pytest

from tests.model_factory import _act, _bias, _weights
from tests.test_micro_train import train_both
from tflm_train.graph import Op, QuantGraph, Tensor
from tflm_train.io.train_export import export
from tflm_train.training.scheme import SparseScheme

CHANNELS = (3, 5, 6, 7, 9, 11, 13, 17, 24)


def random_graph(seed: int, blocks: int = 3) -> QuantGraph:
    rng = np.random.default_rng(seed)
    h = int(rng.integers(4, 13))
    c_prev = int(rng.choice((3, 4)))
    t = {"x": _act("x", (1, h, h, c_prev), 0.05, 3)}
    ops = []
    x = "x"
    for b in range(blocks):
        c = int(rng.choice(CHANNELS))
        k = int(rng.choice((3, 5, 7)))
        stride = int(rng.choice((1, 2))) if h > 3 else 1
        padding = "VALID" if h >= k + 1 and rng.random() < 0.3 else "SAME"
        oh = -(-h // stride) if padding == "SAME" else (h - k) // stride + 1
        t[f"pw{b}"] = _weights(f"pw{b}", (c, 1, 1, c_prev), rng, per_channel_dim=0, scale=0.03)
        t[f"pb{b}"] = _bias(f"pb{b}", c, float(t[x].scale[0]), t[f"pw{b}"].scale, rng)
        t[f"p{b}"] = _act(f"p{b}", (1, h, h, c), 6 / 255, -128)
        t[f"dw{b}"] = _weights(f"dw{b}", (1, k, k, c), rng, per_channel_dim=3, scale=0.03)
        t[f"db{b}"] = _bias(f"db{b}", c, 6 / 255, t[f"dw{b}"].scale, rng)
        t[f"d{b}"] = _act(f"d{b}", (1, oh, oh, c), 6 / 255, -128)
        conv = dict(dilation_h=1, dilation_w=1)
        ops.append(Op("CONV_2D", [x, f"pw{b}", f"pb{b}"], [f"p{b}"],
                      dict(conv, stride_h=1, stride_w=1, padding="VALID", activation="RELU6"), f"pw{b}"))
        ops.append(Op("DEPTHWISE_CONV_2D", [f"p{b}", f"dw{b}", f"db{b}"], [f"d{b}"],
                      dict(conv, stride_h=stride, stride_w=stride, padding=padding, activation="RELU6",
                           depth_multiplier=1), f"dw{b}"))
        x, h, c_prev = f"d{b}", oh, c
    t["axes"] = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    t["f"] = _act("f", (1, c_prev), 0.02, -50)
    t["wf"] = _weights("wf", (4, c_prev), rng, scale=0.02)
    t["bf"] = _bias("bf", 4, 0.02, t["wf"].scale, rng)
    t["y"] = _act("y", (1, 4), 0.1, 0)
    ops.append(Op("MEAN", [x, "axes"], ["f"], dict(keep_dims=False), "pool"))
    ops.append(Op("FULLY_CONNECTED", ["f", "wf", "bf"], ["y"], dict(activation="NONE", keep_num_dims=False),
                  "classifier"))
    return QuantGraph(t, ops, ["x"], ["y"], name=f"random_backward_{seed}")


def random_scheme(seed: int, blocks: int = 3, first_only: bool = False) -> SparseScheme:
    """Every conv's weights with a random ratio, or (``first_only``) the first conv's only: the
    gradient then crosses the other layers without a weight update reading it, and the planner
    runs their gradient ops in place."""
    rng = np.random.default_rng(seed + 1000)
    if first_only:
        return SparseScheme(2 * blocks + 1, {0: 0.5}, name="first")
    return SparseScheme(2 * blocks + 1, {i: float(rng.choice((1.0, 0.6, 0.3))) for i in range(2 * blocks)},
                        name="random")


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("grad_dtype", ["float32", "float16"])
def test_random_shapes_match_reference(seed, grad_dtype):
    g = random_graph(seed)
    for inplace in (True, False):
        r = export(g, random_scheme(seed, first_only=inplace), num_classes=4, lr=0.05, grad_dtype=grad_dtype,
                   inplace=inplace)
        types = {op.type for op in r.train_graph.ops}
        assert {"DEPTHWISE_CONV_2D_GRAD_INPUT", "CONV_2D_GRAD_INPUT", "CONV_2D_UPDATE", "CLAMP_GRAD",
                "BIAS_UPDATE"} <= types
        grad_modes = {s.mode for s in r.plan.steps
                      if s.type in ("CONV_2D_GRAD_INPUT", "DEPTHWISE_CONV_2D_GRAD_INPUT")}
        assert ("in_place" in grad_modes) if inplace else grad_modes == {"normal"}
        train_both(r.data, steps=2, seed=seed)


def test_random_shapes_on_cortex_m4_match_host():
    """Two random graphs (float32 and float16 gradients) trained in the firmware: losses equal
    the host runtime's (which equal the reference's, above)."""
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.fail(str(e))
    for seed, grad_dtype, first_only in ((0, "float32", True), (3, "float16", False)):
        g = random_graph(seed)
        r = export(g, random_scheme(seed, first_only=first_only), num_classes=4, lr=0.05, grad_dtype=grad_dtype)
        rng = np.random.default_rng(seed)
        shape = g.tensors["x"].shape
        xs = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(2)]
        report = mcu.run_training(r.data, xs, [1, 3], steps=2)
        assert report.matches_host, (report.losses, report.host_losses)
