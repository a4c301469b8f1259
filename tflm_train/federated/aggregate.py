"""Server-side aggregation: FedAvg in real units, requantized with the device's own rounding.

For an int8 weight or int32 bias the real value is ``scale * q`` with the model's fixed
per-channel scale, which every device shares (QAS never changes a scale). The sample-weighted
mean of the devices' real-unit changes, divided by that scale, is therefore the weighted mean
of their integer deltas; it is computed so, in float64, which keeps the scale out of the
rounding:

    v = q_round + sum_k(n_k * dq_k) / sum_k(n_k)

and requantized by the rule the device applies to the same kind of tensor (docs/training_graph.md):
- int8 weights: stochastic rounding ``floor(v + u)`` with ``u`` from xorshift32, clamped to
  [-127, 127]. The server's stream is seeded per round (``round_seed``) and consumed tensor by
  tensor in the training file's update order, element by element in C order, so a rerun gives
  the same bytes;
- int32 biases: the mean step rounded half away from zero (in float64), added, saturated to int32;
- the float head: the weighted mean in float64, rounded once to float32.

The result is the new global value of every trained part; a device that writes it
(``Interpreter.set_parameters``) holds exactly these bytes.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from ..ops.update import seed_state, stochastic_round, uniforms
from .payload import TrainedSet

INT8_WEIGHT_MIN, INT8_WEIGHT_MAX = -127, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_seed(seed: int, server_round: int) -> int:
    """The xorshift32 state the server's stochastic rounding starts from in a round."""
    return seed_state((int(seed) * 1_000_003 + int(server_round)) & 0xFFFFFFFF)


def weighted_mean_delta(deltas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) != len(deltas) or len(w) == 0 or np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"aggregation needs one positive sample count per device, got {list(weights)}")
    total = np.zeros(np.shape(deltas[0]), dtype=np.float64)
    for d, wk in zip(deltas, w):
        total += wk * np.asarray(d, dtype=np.float64)
    return total / w.sum()


def aggregate(trained: TrainedSet, current: Dict[str, np.ndarray], deltas: Sequence[Dict[str, np.ndarray]],
              weights: Sequence[float], rng_state: int) -> Dict[str, np.ndarray]:
    """New global trained parts from the round's ``current`` parts and the devices' ``deltas``."""
    out = {}
    state = int(rng_state)
    for t in trained.tensors:
        mean = weighted_mean_delta([d[t.name] for d in deltas], weights)
        v = np.asarray(current[t.name], dtype=np.float64) + mean
        if t.kind == "weight":
            u, state = uniforms(state, v.size)
            q = stochastic_round(v.astype(np.float32).ravel(), u).reshape(v.shape)
            out[t.name] = np.clip(q, INT8_WEIGHT_MIN, INT8_WEIGHT_MAX).astype(np.int8)
        elif t.kind == "bias":
            # The device rounds its bias *step* half away from zero; so does the server, in float64
            # (a float32 bias value would lose bits above 2^24).
            step = np.sign(mean) * np.floor(np.abs(mean) + 0.5)
            q = np.asarray(current[t.name], dtype=np.int64) + step.astype(np.int64)
            out[t.name] = np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)
        else:
            out[t.name] = v.astype(np.float32)
    return out
