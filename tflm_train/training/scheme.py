"""Sparse-update schemes: which biases, which layers' weights and which channels train.

A scheme refers to conv layers by their *conv index* (QuantGraph.conv_op_indices():
first conv = 0 ... classifier last). The classifier is always trained (a new task
gets a new head) and counts as the last conv layer for ``n_bias_update``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..graph import GraphError, QuantGraph


@dataclass(frozen=True)
class LayerUpdate:
    """What one conv layer trains after a scheme is resolved against a graph."""

    conv_index: int
    op_index: int
    update_bias: bool
    #: sorted input-channel indices (channels, for depthwise) whose weights train; empty = weights frozen
    weight_channels: Tuple[int, ...]
    is_classifier: bool = False

    @property
    def updates_weights(self) -> bool:
        return len(self.weight_channels) > 0


def channel_count(ratio: float, channels: int) -> int:
    """round(ratio * channels), half away from zero as the published schemes count it."""
    return int(np.floor(ratio * channels + 0.5))


def weight_update_axis(op_type: str) -> int:
    """Axis of the weight tensor that holds the channels a scheme selects.

    CONV_2D OHWI: input channels (3); DEPTHWISE_CONV_2D [1,kh,kw,C]: channels (3);
    FULLY_CONNECTED [out,in]: inputs (1).
    """
    return 1 if op_type == "FULLY_CONNECTED" else 3


@dataclass
class SparseScheme:
    """Biases of the last ``n_bias_update`` conv layers train; ``weight_update`` maps
    conv index -> fraction of that layer's input channels whose weights train.

    ``channel_selection`` is ``"magnitude"`` (largest per-channel sum of |real weight|,
    as the published schemes' "magnitude+") or ``"first"`` (lowest channel indices).
    """

    n_bias_update: int
    weight_update: Dict[int, float] = field(default_factory=dict)
    channel_selection: str = "magnitude"
    name: str = ""

    def __post_init__(self):
        self.n_bias_update = int(self.n_bias_update)
        if self.n_bias_update < 0:
            raise GraphError(f"scheme {self.name!r}: n_bias_update must be >= 0")
        wu = {}
        for k, r in dict(self.weight_update).items():
            r = float(r)
            if not 0.0 <= r <= 1.0:
                raise GraphError(f"scheme {self.name!r}: ratio {r} for conv {k} is outside [0, 1]")
            wu[int(k)] = r
        self.weight_update = dict(sorted(wu.items()))
        if self.channel_selection not in ("magnitude", "first"):
            raise GraphError(f"unknown channel_selection {self.channel_selection!r}")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def full(cls, graph: QuantGraph) -> "SparseScheme":
        n = len(graph.conv_op_indices())
        return cls(n, {i: 1.0 for i in range(n - 1)}, name="full")

    @classmethod
    def bias_only(cls, graph: QuantGraph) -> "SparseScheme":
        return cls(len(graph.conv_op_indices()), {}, name="bias-only")

    @classmethod
    def last_k(cls, graph: QuantGraph, k: int) -> "SparseScheme":
        """Weights and biases of the last ``k`` conv layers (classifier included)."""
        n = len(graph.conv_op_indices())
        k = min(int(k), n)
        return cls(k, {i: 1.0 for i in range(n - k, n - 1)}, name=f"last-{k}")

    @classmethod
    def classifier_only(cls, graph: QuantGraph) -> "SparseScheme":
        return cls.last_k(graph, 1)

    @classmethod
    def from_dict(cls, d: dict, name: str = "") -> "SparseScheme":
        try:
            wu = {int(e["conv_index"]): float(e["ratio"]) for e in d.get("weight_update", [])}
            return cls(int(d["n_bias_update"]), wu, d.get("channel_selection", "magnitude"), d.get("name", name))
        except (KeyError, TypeError, ValueError) as e:
            raise GraphError(f"malformed scheme {name!r}: {e}") from None

    @classmethod
    def from_json(cls, path: str, key: Optional[str] = None) -> "SparseScheme":
        """Load a scheme file: a single scheme, or a ../shared/schemes file with ``key``."""
        with open(path) as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise GraphError(f"{path}: malformed JSON ({e})") from None
        if "schemes" in d:
            if key is None:
                raise GraphError(f"{path} holds several schemes; pick one of {sorted(d['schemes'])}")
            if key not in d["schemes"]:
                raise GraphError(f"{path}: no scheme {key!r}; available: {sorted(d['schemes'])}")
            return cls.from_dict(d["schemes"][key], name=key)
        return cls.from_dict(d, name=key or d.get("name", ""))

    @classmethod
    def parse(cls, spec: str) -> "SparseScheme":
        """``FILE[:KEY]`` as the CLI takes it."""
        path, _, key = spec.partition(":") if not spec.endswith(".json") else (spec, "", "")
        return cls.from_json(path, key or None)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "n_bias_update": self.n_bias_update,
            "weight_update": [{"conv_index": k, "ratio": r} for k, r in self.weight_update.items()],
            "channel_selection": self.channel_selection,
        }

    def to_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    # ------------------------------------------------------------------ resolution
    def resolve(self, graph: QuantGraph) -> List[LayerUpdate]:
        """The layers that train, in forward order, with their selected channels."""
        conv_ops = graph.conv_op_indices()
        n = len(conv_ops)
        for k in self.weight_update:
            if not 0 <= k < n:
                raise GraphError(f"scheme {self.name!r}: conv index {k} out of range (model has {n} conv layers)")
        if self.n_bias_update > n:
            raise GraphError(f"scheme {self.name!r}: n_bias_update {self.n_bias_update} > {n} conv layers")
        out = []
        for k, op_index in enumerate(conv_ops):
            op = graph.ops[op_index]
            is_cls = k == n - 1
            axis = weight_update_axis(op.type)
            w = graph.tensors[op.inputs[1]]
            c = w.shape[axis]
            ratio = 1.0 if is_cls else self.weight_update.get(k, 0.0)
            n_ch = channel_count(ratio, c)
            channels: Tuple[int, ...] = ()
            if n_ch > 0:
                if self.channel_selection == "first" or n_ch == c:
                    channels = tuple(range(n_ch))
                else:
                    channels = tuple(sorted(int(i) for i in _top_channels(w, axis, n_ch)))
            update_bias = k >= n - self.n_bias_update or is_cls
            if update_bias or channels:
                out.append(LayerUpdate(k, op_index, update_bias, channels, is_cls))
        return out


def _top_channels(w, axis: int, count: int) -> np.ndarray:
    """Indices of the ``count`` channels along ``axis`` with the largest sum of |real weight|."""
    real = w.data.astype(np.float64)
    scale = w.scale
    if scale.size > 1:
        shape = [1] * real.ndim
        shape[w.quantized_dim] = -1
        real = real * scale.reshape(shape)
    else:
        real = real * scale[0]
    other = tuple(i for i in range(real.ndim) if i != axis)
    mag = np.abs(real).sum(axis=other)
    # stable: ties go to the lower channel index
    return np.argsort(-mag, kind="stable")[:count]
