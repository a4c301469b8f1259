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

With a server step (FedAvgM, ``ServerMomentum``) the mean is replaced by the server's step
``lr * m`` before the same rounding. The result is the new global value of every trained part;
a device that writes it (``Interpreter.set_parameters``) holds exactly these bytes.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

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


def mean_delta(trained: TrainedSet, deltas: Sequence[Dict[str, np.ndarray]],
               weights: Sequence[float]) -> Dict[str, np.ndarray]:
    """The sample-weighted mean of the devices' deltas, per trained part, in float64 (integer units)."""
    return {t.name: weighted_mean_delta([d[t.name] for d in deltas], weights) for t in trained.tensors}


def requantize(trained: TrainedSet, current: Dict[str, np.ndarray], step: Dict[str, np.ndarray],
               rng_state: int) -> Dict[str, np.ndarray]:
    """``current + step`` (``step`` in float64 integer units) rounded by the device's rules."""
    out = {}
    state = int(rng_state)
    for t in trained.tensors:
        v = np.asarray(current[t.name], dtype=np.float64) + step[t.name]
        if t.kind == "weight":
            u, state = uniforms(state, v.size)
            q = stochastic_round(v.astype(np.float32).ravel(), u).reshape(v.shape)
            out[t.name] = np.clip(q, INT8_WEIGHT_MIN, INT8_WEIGHT_MAX).astype(np.int8)
        elif t.kind == "bias":
            # The device rounds its bias *step* half away from zero; so does the server, in float64
            # (a float32 bias value would lose bits above 2^24).
            rounded = np.sign(step[t.name]) * np.floor(np.abs(step[t.name]) + 0.5)
            q = np.asarray(current[t.name], dtype=np.int64) + rounded.astype(np.int64)
            out[t.name] = np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)
        else:
            out[t.name] = v.astype(np.float32)
    return out


def aggregate(trained: TrainedSet, current: Dict[str, np.ndarray], deltas: Sequence[Dict[str, np.ndarray]],
              weights: Sequence[float], rng_state: int) -> Dict[str, np.ndarray]:
    """New global trained parts from the round's ``current`` parts and the devices' ``deltas`` (FedAvg)."""
    return requantize(trained, current, mean_delta(trained, deltas, weights), rng_state)


class ServerMomentum:
    """FedAvgM's server step (Hsu et al., 2019; Flower's ``FedAvgM``), in the devices' integer units:
    ``m = momentum * m + mean_delta`` (``m = mean_delta`` in the first round), step ``= lr * m``.

    A round's averaged delta moves the model about as far as one device's local steps do; the
    server's rate and momentum carry it further along the directions the rounds agree on. The
    momentum buffer stays on the server in float64; only the requantized parameters are sent, so
    devices still hold exactly the server's bytes. ``lr=1, momentum=0`` is plain FedAvg.
    ``final_lr``: the rate decays from ``lr`` to ``final_lr`` over ``rounds`` rounds (cosine), which
    lets the late rounds average out the noise of the sampled devices."""

    def __init__(self, lr: float = 1.0, momentum: float = 0.0, final_lr: Optional[float] = None, rounds: int = 1):
        if not (np.isfinite(lr) and lr > 0) or not (0.0 <= momentum < 1.0):
            raise ValueError(f"server lr must be > 0 and momentum in [0, 1), got {lr} and {momentum}")
        if final_lr is not None and not (np.isfinite(final_lr) and final_lr > 0):
            raise ValueError(f"the final server lr must be > 0, got {final_lr}")
        self.lr, self.momentum, self.final_lr, self.rounds = float(lr), float(momentum), final_lr, max(1, int(rounds))
        self.buffer: Optional[Dict[str, np.ndarray]] = None

    def lr_at(self, server_round: int) -> float:
        if self.final_lr is None or self.rounds == 1:
            return self.lr
        t = min(1.0, max(0.0, (server_round - 1) / (self.rounds - 1)))
        return float(self.final_lr + (self.lr - self.final_lr) * 0.5 * (1.0 + np.cos(np.pi * t)))

    def step(self, mean: Dict[str, np.ndarray], server_round: int = 1) -> Dict[str, np.ndarray]:
        if self.buffer is None or self.momentum == 0.0:
            self.buffer = {n: np.array(v, dtype=np.float64) for n, v in mean.items()}
        else:
            self.buffer = {n: self.momentum * self.buffer[n] + mean[n] for n in mean}
        lr = self.lr_at(server_round)
        return {n: lr * v for n, v in self.buffer.items()}
