"""Tensor lifetimes over an op sequence: the first step of every memory plan.

``lifetimes`` is the one liveness computation of the project: the planner calls it on its
schedule (each step's effective reads and writes, after fusions), ``inspect`` on a plain
QuantGraph (``inference_activation_peak``: live bytes with every tensor materialized).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Lifetime:
    """A tensor occupies memory from op ``first`` to op ``last`` inclusive."""

    name: str
    nbytes: int
    first: int
    last: int

    def overlaps(self, other: "Lifetime") -> bool:
        return self.first <= other.last and other.first <= self.last


def lifetimes(
    op_io: Sequence[Tuple[Sequence[Optional[str]], Sequence[str]]],
    nbytes: Dict[str, int],
    graph_inputs: Iterable[str] = (),
    graph_outputs: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> List[Lifetime]:
    """Lifetimes of every tensor in ``nbytes`` that the ops touch.

    ``op_io`` is one (inputs, outputs) pair per op in execution order. Graph inputs
    live from before op 0; graph outputs until after the last op. Tensors in
    ``exclude`` (constants kept in flash) get no lifetime.
    """
    exclude = set(exclude)
    first: Dict[str, int] = {}
    last: Dict[str, int] = {}
    n = len(op_io)
    for name in graph_inputs:
        first[name] = 0
        last[name] = 0
    for i, (ins, outs) in enumerate(op_io):
        for t in list(ins) + list(outs):
            if t is None or t in exclude:
                continue
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
    for name in graph_outputs:
        if name in first:
            last[name] = max(n - 1, 0)
    return [Lifetime(t, int(nbytes[t]), first[t], last[t]) for t in first if t not in exclude]


def live_bytes_per_op(lts: Sequence[Lifetime], n_ops: int) -> List[int]:
    """Sum of bytes of tensors alive at each op: a lower bound on any placement's peak."""
    live = [0] * max(n_ops, 1)
    for lt in lts:
        for i in range(lt.first, lt.last + 1):
            live[i] += lt.nbytes
    return live


def inference_lifetimes(graph) -> List[Lifetime]:
    """Lifetimes of a QuantGraph's non-constant tensors over its op order."""
    consts = [n for n, t in graph.tensors.items() if t.is_constant]
    return lifetimes(
        [(op.inputs, op.outputs) for op in graph.ops],
        {n: t.nbytes for n, t in graph.tensors.items()},
        graph.inputs,
        graph.outputs,
        exclude=consts,
    )


def inference_activation_peak(graph) -> int:
    """Peak bytes of activations alive at once during inference (no placement overhead)."""
    return max(live_bytes_per_op(inference_lifetimes(graph), len(graph.ops)))
