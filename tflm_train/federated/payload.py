"""What a device sends in a fleet round: only what its scheme trains, as lossless deltas.

A training file's update ops say exactly which bytes a training step can change: the
trained channels of each int8 weight (``channels`` of CONV_2D_UPDATE / DEPTHWISE_CONV_2D_UPDATE /
FULLY_CONNECTED_UPDATE, along the weight's last axis, the axis the runtime splits), every element
of each updated int32 bias (BIAS_UPDATE), and the float head (FC_FLOAT_UPDATE). ``TrainedSet``
lists them once per model; everything else stays the model's bytes on every device.

Encoding on the wire: the server sends the trained values themselves (int8 / int32 / float32);
a device answers with its change since then: integer deltas in the narrowest integer type that
holds them exactly (int8 when every |delta| <= 127, else int16 / int32), float deltas as float32
(the head's new value minus the round's value, rounded once to float32, then applied by the
server in float64 before its own float32 rounding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..graph import GraphError

#: update op type -> (index of the updated tensor among its inputs, kind of that tensor)
_UPDATED = {
    "CONV_2D_UPDATE": ((2, "weight"),),
    "DEPTHWISE_CONV_2D_UPDATE": ((2, "weight"),),
    "FULLY_CONNECTED_UPDATE": ((2, "weight"),),
    "BIAS_UPDATE": ((1, "bias"),),
    "FC_FLOAT_UPDATE": ((2, "float"), (3, "float")),
}


@dataclass(frozen=True)
class TrainedTensor:
    """One trained parameter: ``channels`` (along the last axis) that a step may change, or None for all."""

    name: str
    kind: str          # "weight" (int8), "bias" (int32) or "float" (float32 head)
    shape: Tuple[int, ...]
    dtype: str
    channels: Optional[Tuple[int, ...]]

    def select(self, value: np.ndarray) -> np.ndarray:
        """The trained part of a whole-tensor value (a copy)."""
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"parameter {self.name!r}: shape {value.shape}, expected {self.shape}")
        return np.array(value if self.channels is None else value[..., list(self.channels)], dtype=self.dtype)

    def place(self, whole: np.ndarray, part: np.ndarray) -> np.ndarray:
        """``whole`` with its trained part replaced by ``part``."""
        out = np.array(whole, dtype=self.dtype, copy=True)
        if self.channels is None:
            out[...] = part
        else:
            out[..., list(self.channels)] = part
        return out


class TrainedSet:
    """The trained parameters of a training file, in the order of its update ops."""

    def __init__(self, tensors: List[TrainedTensor]):
        self.tensors = list(tensors)
        self.by_name = {t.name: t for t in self.tensors}

    @classmethod
    def of_training_file(cls, data: bytes) -> "TrainedSet":
        from ..io.train_export import read_training_file

        _, tg, _ = read_training_file(data)
        return cls.of_train_graph(tg)

    @classmethod
    def of_train_graph(cls, tg) -> "TrainedSet":
        found: Dict[str, TrainedTensor] = {}
        for op in tg.ops:
            for index, kind in _UPDATED.get(op.type, ()):
                name = op.inputs[index]
                t = tg.tensors[name]
                channels = op.attrs.get("channels") if kind == "weight" else None
                if channels is not None and len(channels) == t.shape[-1]:
                    channels = None
                entry = TrainedTensor(name, kind, tuple(t.shape), t.dtype,
                                      None if channels is None else tuple(int(c) for c in channels))
                if found.setdefault(name, entry) != entry:
                    raise GraphError(f"parameter {name!r} is updated twice with different channel sets")
        if not found:
            raise GraphError("the training file trains nothing: a fleet has nothing to exchange")
        return cls(list(found.values()))

    def names(self) -> List[str]:
        return [t.name for t in self.tensors]

    def values(self, params: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """The trained parts of a device's parameters (``Interpreter.parameters()``)."""
        missing = [t.name for t in self.tensors if t.name not in params]
        if missing:
            raise ValueError(f"the device has no parameter {missing[0]!r}: another model's payload?")
        return {t.name: t.select(params[t.name]) for t in self.tensors}

    def whole(self, params: Dict[str, np.ndarray], parts: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Whole-tensor values for ``Interpreter.set_parameters``: ``params`` with ``parts`` placed in."""
        return {t.name: t.place(params[t.name], parts[t.name]) for t in self.tensors}

    def nbytes(self, parts: Dict[str, np.ndarray]) -> int:
        return int(sum(np.asarray(v).nbytes for v in parts.values()))


def narrowest_int(delta: np.ndarray) -> np.ndarray:
    """An integer delta in the narrowest of int8 / int16 / int32 that holds every element exactly."""
    delta = np.asarray(delta, dtype=np.int64)
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if delta.size == 0 or (delta.min() >= info.min and delta.max() <= info.max):
            return delta.astype(dtype)
    raise ValueError("an integer delta does not fit int32")


def encode_delta(trained: TrainedSet, new: Dict[str, np.ndarray], base: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A device's answer: ``new - base`` for every trained part (integers exact, floats as float32)."""
    out = {}
    for t in trained.tensors:
        if t.kind == "float":
            out[t.name] = (np.asarray(new[t.name], np.float64) - np.asarray(base[t.name], np.float64)).astype(np.float32)
        else:
            out[t.name] = narrowest_int(np.asarray(new[t.name], np.int64) - np.asarray(base[t.name], np.int64))
    return out
