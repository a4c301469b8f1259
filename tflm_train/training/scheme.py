"""Sparse-update schemes: which biases, which layers' weights and which channels train.

A scheme refers to conv layers by their *conv index* (QuantGraph.conv_op_indices():
first conv = 0 ... classifier last). The classifier is always trained (a new task
gets a new head) and counts as the last conv layer for ``n_bias_update``.
"""
from __future__ import annotations

import json
import os
import re
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
    #: the model the scheme was made for (a scheme file's ``model`` field); "" = not stated
    model: str = ""

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
            return cls(int(d["n_bias_update"]), wu, d.get("channel_selection", "magnitude"), d.get("name", name),
                       str(d.get("model") or ""))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise GraphError(f"malformed scheme {name!r}: {e}") from None

    @classmethod
    def from_json(cls, path: str, key: Optional[str] = None) -> "SparseScheme":
        """Load a scheme file: a single scheme, or a ../shared/schemes file with ``key``."""
        try:
            with open(path) as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise GraphError(f"{path}: malformed JSON ({e})") from None
        except UnicodeDecodeError:
            raise GraphError(f"{path}: not a scheme file (not UTF-8 text)") from None
        if not isinstance(d, dict):
            raise GraphError(f"{path}: not a scheme file (a JSON object is expected)")
        model = str(d.get("model") or "")
        if "schemes" in d:
            if not isinstance(d["schemes"], dict):
                raise GraphError(f"{path}: 'schemes' must map names to schemes")
            if key is None:
                raise GraphError(f"{path} holds several schemes; pick one of {sorted(d['schemes'])} as {path}:KEY")
            if key not in d["schemes"]:
                raise GraphError(f"{path}: no scheme {key!r}; available: {sorted(d['schemes'])}")
            return cls.from_dict(dict(d["schemes"][key], model=model), name=key)
        return cls.from_dict(d, name=key or d.get("name", ""))

    @classmethod
    def parse(cls, spec: str, graph: Optional[QuantGraph] = None, *, force: bool = False) -> "SparseScheme":
        """A scheme from any accepted spelling (``SCHEME_FORMS``); see ``scheme_of``.
        Without ``graph`` only ``FILE[:KEY]`` can be parsed (the built-ins count the graph's layers)."""
        return scheme_of(spec, graph, force=force)

    def check_model(self, graph: QuantGraph, force: bool = False) -> "SparseScheme":
        """Refuse a scheme made for another model (its ``model`` field names another graph),
        unless ``force``; returns the scheme."""
        if self.model and not force and self.model != graph.name:
            raise GraphError(f"scheme {self.name!r} was made for model {self.model!r}, not {graph.name!r} "
                             f"(conv indices would select other layers; force it with --force-scheme / "
                             f"force_scheme=True)")
        return self

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "n_bias_update": self.n_bias_update,
            "weight_update": [{"conv_index": k, "ratio": r} for k, r in self.weight_update.items()],
            "channel_selection": self.channel_selection,
        }
        if self.model:
            d["model"] = self.model
        return d

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


#: Every spelling of a scheme that ``scheme_of`` accepts (the CLI's ``--scheme``, ``export``, ``plan``,
#: ``SparseUpdate``): listed in the error for any other.
SCHEME_FORMS = ("full", "bias-only", "bias_only", "last-K", "last_k(K)", "FILE.json[:KEY]")
_BUILTIN = re.compile(r"^(?:(full)|(bias[-_]only)|last-(\d+)|last_k\((\d+)\))$")


def is_builtin(spec: str) -> bool:
    """True for a built-in spelling (``full``, ``bias-only``, ``last-K`` ...): resolved against a graph."""
    return bool(_BUILTIN.match(spec.strip()))


def scheme_of(spec, graph: Optional[QuantGraph] = None, *, force: bool = False) -> SparseScheme:
    """The one parser of scheme spellings: a ``SparseScheme`` (returned as is), its dict form,
    or a string: ``full``; ``bias-only`` / ``bias_only``; ``last-K`` / ``last_k(K)`` (weights
    and biases of the last K conv layers, classifier included); ``FILE[:KEY]`` (a scheme file,
    KEY for a file holding several, as ../shared/schemes). With ``graph``, a scheme that names
    the model it was made for (a scheme file's ``model`` field) must name this graph, unless
    ``force``. Anything else: GraphError listing the accepted forms."""
    if isinstance(spec, SparseScheme):
        scheme = spec
    elif isinstance(spec, dict):
        scheme = SparseScheme.from_dict(spec, name=str(spec.get("name", "")))
    elif isinstance(spec, str):
        scheme = _parse_string(spec.strip(), graph)
    else:
        raise GraphError(f"a scheme is a SparseScheme or one of {', '.join(SCHEME_FORMS)}, "
                         f"not a {type(spec).__name__}")
    return scheme if graph is None else scheme.check_model(graph, force)


def _parse_string(spec: str, graph: Optional[QuantGraph]) -> SparseScheme:
    m = _BUILTIN.match(spec)
    if m:
        if graph is None:
            raise GraphError(f"scheme {spec!r} counts the model's conv layers: give the graph to resolve it against")
        if m[1]:
            return SparseScheme.full(graph)
        if m[2]:
            return SparseScheme.bias_only(graph)
        k = int(m[3] or m[4])
        if k < 1:
            raise GraphError(f"scheme {spec!r}: K must be >= 1")
        return SparseScheme.last_k(graph, k)
    path, key = spec, None
    if not os.path.isfile(spec) and ":" in spec:
        path, _, key = spec.rpartition(":")
    if not os.path.isfile(path):
        what = "unknown scheme" if not path.endswith(".json") else "no scheme file"
        raise GraphError(f"{what} {path!r}; accepted forms: {', '.join(SCHEME_FORMS)}")
    try:
        return SparseScheme.from_json(path, key or None)
    except OSError as e:
        raise GraphError(f"scheme file {path}: {e.strerror or e}") from None


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
