"""NumPy reference of the update ops: xorshift32, stochastic rounding, QAS updates, float SGD.

Specification: docs/training_graph.md ("Update ops", "Random numbers"). Everything here
is float32 / integer arithmetic defined so that a C port reproduces the bytes:
- xorshift32 (13, 17, 5), the state is never 0; ``u = f32(x >> 8) * 2^-24``;
- stochastic rounding ``floor(v + u)`` evaluated as ``f + (u < v - f)``, ``f = floorf(v)``;
- QAS weight step ``(lr * G) / s_w`` (two f32 roundings), int8 result clamped to [-127, 127];
- bias step ``(lr * G_b) / (s_x s_w)`` rounded half away from zero into int32.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence, Tuple

import numpy as np

from ..graph import GraphError

F32 = np.float32
U32 = np.uint32
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: Replaces a zero seed: xorshift32 would stay at 0 forever.
ZERO_SEED_REPLACEMENT = 0x9E3779B9
_BLOCK = 1024


# --------------------------------------------------------------------------- xorshift32
def seed_state(seed: int) -> int:
    """Initial xorshift32 state of a seed: ``seed mod 2^32``, never 0."""
    s = int(seed) & 0xFFFFFFFF
    return s if s != 0 else ZERO_SEED_REPLACEMENT


def xorshift32(state: int) -> int:
    """One step: ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` on uint32."""
    x = int(state) & 0xFFFFFFFF
    if x == 0:
        raise GraphError("xorshift32 state must never be 0")
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def _step_vec(x: np.ndarray) -> np.ndarray:
    x = x ^ (x << U32(13))
    x = x ^ (x >> U32(17))
    return x ^ (x << U32(5))


@lru_cache(maxsize=1)
def _jump_table() -> np.ndarray:
    """``T[k, j]`` = state after k+1 steps from the state ``1 << j``.

    xorshift32 is linear over GF(2), so the state after k+1 steps from any x is the XOR
    of ``T[k, j]`` over the set bits j of x: a block of states in 32 vector XORs.
    """
    t = np.empty((_BLOCK, 32), dtype=U32)
    v = (U32(1) << np.arange(32, dtype=U32)).astype(U32)
    for k in range(_BLOCK):
        v = _step_vec(v)
        t[k] = v
    return t


def xorshift32_states(state: int, count: int) -> Tuple[np.ndarray, int]:
    """The next ``count`` states (uint32 array) after ``state``, and the new state."""
    state = int(state) & 0xFFFFFFFF
    if state == 0:
        raise GraphError("xorshift32 state must never be 0")
    out = np.empty(int(count), dtype=U32)
    table = _jump_table()
    pos = 0
    while pos < count:
        n = min(_BLOCK, count - pos)
        bits = [j for j in range(32) if (state >> j) & 1]
        block = np.bitwise_xor.reduce(table[:n, bits], axis=1)
        out[pos:pos + n] = block
        state = int(block[-1])
        pos += n
    return out, state


def uniforms(state: int, count: int) -> Tuple[np.ndarray, int]:
    """``count`` float32 uniforms in [0, 1) from the stream: ``u = f32(x >> 8) * 2^-24``."""
    states, state = xorshift32_states(state, count)
    u = (states >> U32(8)).astype(F32) * F32(2.0 ** -24)
    return u, state


# --------------------------------------------------------------------------- rounding
def stochastic_round(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``floor(v + u)`` as ``f + (u < v - f)`` with ``f = floor(v)``, all float32.

    An integer ``v`` never moves (its fraction is 0). Returns float32 integers.
    """
    v = np.asarray(v, F32)
    f = np.floor(v)
    frac = (v - f).astype(F32)
    return (f + (np.asarray(u, F32) < frac).astype(F32)).astype(F32)


def round_half_away_to_int(x: np.ndarray) -> np.ndarray:
    """C's ``lround`` of float32 values, saturated to int32, as int64 (non-finite -> 0)."""
    x = np.asarray(x, F32).astype(np.float64)  # exact widening
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    r = np.sign(x) * np.floor(np.abs(x) + 0.5)  # exact in double for float32 inputs
    return np.clip(r, INT32_MIN, INT32_MAX).astype(np.int64)


# --------------------------------------------------------------------------- QAS updates
def _per_channel(scale, n: int, axis: int, ndim: int) -> np.ndarray:
    s = np.asarray(scale, F32).reshape(-1)
    if s.size not in (1, n):
        raise GraphError(f"weight_scale has {s.size} entries, expected 1 or {n}")
    shape = [1] * ndim
    if s.size > 1:
        shape[axis] = -1
    return s.reshape(shape)


def qas_weight_update(
    w_q: np.ndarray,
    grad: np.ndarray,
    weight_scale,
    lr: float,
    channels: Sequence[int],
    channel_axis: int,
    scale_axis: int,
    rng_state: int,
) -> Tuple[np.ndarray, int]:
    """QAS SGD step on the int8 weight elements whose ``channel_axis`` index is in ``channels``.

    ``grad`` is the real-valued weight gradient of exactly those elements (the weight
    tensor with ``channel_axis`` restricted to ``channels``, in ascending order). One
    uniform is drawn per updated element in row-major order of that restricted tensor,
    which is the weight tensor's memory order skipping unselected channels.
    Returns the new weight tensor (a copy) and the new RNG state.
    """
    channels = np.asarray(list(channels), dtype=np.int64)
    if channels.size == 0:
        return np.array(w_q, copy=True), int(rng_state)
    if np.any(np.diff(channels) <= 0):
        raise GraphError("update channels must be strictly ascending")
    w_sel = np.take(np.asarray(w_q), channels, axis=channel_axis)
    grad = np.asarray(grad, F32)
    if grad.shape != w_sel.shape:
        raise GraphError(f"weight gradient shape {grad.shape} != selected weight shape {w_sel.shape}")
    s = _per_channel(weight_scale, w_q.shape[scale_axis], scale_axis, w_q.ndim)
    if s.size > 1 and scale_axis == channel_axis:
        s = np.take(s, channels, axis=channel_axis)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite steps are handled below
        step = (F32(lr) * grad).astype(F32) / s
        v = (w_sel.astype(F32) - step).astype(F32)
        u, rng_state = uniforms(rng_state, v.size)
        r = stochastic_round(v, u.reshape(v.shape))
    finite = np.isfinite(v)
    new_sel = np.where(finite, np.clip(np.where(finite, r, 0), -127, 127), w_sel).astype(np.int8)
    out = np.array(w_q, dtype=np.int8, copy=True)
    index = [slice(None)] * out.ndim
    index[channel_axis] = channels
    out[tuple(index)] = new_sel
    return out, rng_state


def qas_bias_update(b_q: np.ndarray, grad_b: np.ndarray, bias_scale, lr: float) -> np.ndarray:
    """``b <- saturate_int32(b - lround((lr * G_b) / bias_scale))``; non-finite steps leave b as is."""
    b = np.asarray(b_q, dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite steps leave b unchanged
        step = (F32(lr) * np.asarray(grad_b, F32)).astype(F32) / np.asarray(bias_scale, F32).reshape(b.shape)
    delta = round_half_away_to_int(step)
    return np.clip(b - delta, INT32_MIN, INT32_MAX).astype(np.int32)


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
    """Plain float32 SGD: ``p - lr * g`` (product rounded, then the subtraction)."""
    return (np.asarray(param, F32) - (F32(lr) * np.asarray(grad, F32)).astype(F32)).astype(F32)


def float_head_update(weight, bias, grad_logits, features_real, lr: float):
    """FC_FLOAT_UPDATE: ``W[j,i] -= lr * (g_j * f_i)``, ``b_j -= lr * g_j``."""
    g = np.asarray(grad_logits, F32).reshape(-1)
    f = np.asarray(features_real, F32).reshape(-1)
    grad_w = (g[:, None] * f[None, :]).astype(F32)
    return sgd_update(weight, grad_w, lr), sgd_update(bias, g, lr)
