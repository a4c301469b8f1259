"""Operator order of a training step: the reordered schedule and the conventional one.

A schedule is a list of ``Step``: one op of the TrainGraph (``part == ""``), or, in the
conventional (non-reordered) memory model, one half of a split update op:

- ``reorder=True``: every update op runs as soon as its inputs exist and every op that
  reads the old parameter value has run. The weight gradient is fused into the update
  (docs/training_graph.md), so it never exists as a tensor, and the output gradient and
  saved input it reads die right after.
- ``reorder=False``: what a framework without reordering does: each update's weight /
  bias gradient is computed where the reordered schedule would apply it (``part ==
  "grad"``, written into a float32 gradient buffer of the trained elements), and all
  updates are applied after the full backward (``part == "apply"``), so every weight
  gradient stays alive until then. This is a memory model for comparison; the split
  halves are not ops of the training-op catalogue, so only reordered plans are exported.

Dependencies come from the op list alone: read-after-write, write-after-read (an update
must follow every reader of the old parameter) and write-after-write on tensor names;
in-place updates list the parameter as input and output, and weight updates chain
through ``rng/state``, which fixes the random-number consumption order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Set, Tuple

from ..graph import GraphError

#: Update ops whose weight gradient a conventional framework would materialize.
WEIGHT_UPDATE_OPS = ("CONV_2D_UPDATE", "DEPTHWISE_CONV_2D_UPDATE", "FULLY_CONNECTED_UPDATE")
SPLIT_PARTS = ("", "grad", "apply")


@dataclass(frozen=True)
class Step:
    """One executed unit of the schedule: op ``op`` of the TrainGraph (or half of it)."""

    op: int
    part: str = ""
    reads: Tuple[str, ...] = ()
    writes: Tuple[str, ...] = ()


def gradient_buffer_name(tensor: str) -> str:
    """Name of the (non-reordered model's) gradient buffer of a trained tensor."""
    return f"grad/{tensor}/weight_grad"


def dependencies(op_io: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> List[Set[int]]:
    """Predecessors of each op in list order (RAW, WAR and WAW hazards on tensor names)."""
    last_writer: Dict[str, int] = {}
    readers_since_write: Dict[str, List[int]] = {}
    preds: List[Set[int]] = []
    for i, (ins, outs) in enumerate(op_io):
        p: Set[int] = set()
        for t in ins:
            if t in last_writer:
                p.add(last_writer[t])
        for t in outs:
            if t in last_writer:
                p.add(last_writer[t])
            p.update(r for r in readers_since_write.get(t, ()) if r != i)
        p.discard(i)
        preds.append(p)
        for t in ins:
            readers_since_write.setdefault(t, []).append(i)
        for t in outs:
            last_writer[t] = i
            readers_since_write[t] = []
    return preds


def _is_update(op) -> bool:
    return op.phase == "update"


def reordered_order(tg) -> List[int]:
    """Op indices with each update as early as its dependencies allow, other ops in list order."""
    ops = tg.ops
    preds = dependencies([(op.inputs, op.outputs) for op in ops])
    done = [False] * len(ops)
    remaining = [len(p) for p in preds]
    succs: List[List[int]] = [[] for _ in ops]
    for i, p in enumerate(preds):
        for j in p:
            succs[j].append(i)
    ready_updates: List[int] = []
    ready_other: List[int] = []
    for i in range(len(ops)):
        if remaining[i] == 0:
            (ready_updates if _is_update(ops[i]) else ready_other).append(i)
    order: List[int] = []
    while ready_updates or ready_other:
        pool = ready_updates if ready_updates else ready_other
        pool.sort()
        i = pool.pop(0)
        order.append(i)
        done[i] = True
        for s in succs[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                (ready_updates if _is_update(ops[s]) else ready_other).append(s)
    if len(order) != len(ops):
        raise GraphError(f"{tg.name}: the op list has a dependency cycle")
    return order


def check_order(tg, order: Sequence[int]) -> None:
    """Raise GraphError unless ``order`` is a permutation of the ops that respects every hazard."""
    n = len(tg.ops)
    if sorted(order) != list(range(n)):
        raise GraphError(f"{tg.name}: an operator order must run each of the {n} ops exactly once")
    pos = {op: k for k, op in enumerate(order)}
    preds = dependencies([(op.inputs, op.outputs) for op in tg.ops])
    for i, p in enumerate(preds):
        for j in p:
            if pos[j] > pos[i]:
                raise GraphError(
                    f"{tg.name}: op {i} ({tg.ops[i].name or tg.ops[i].type}) must run after op {j} "
                    f"({tg.ops[j].name or tg.ops[j].type})"
                )


def split_update(tg, index: int) -> Tuple[Step, Step]:
    """The two halves of update op ``index`` in the conventional memory model."""
    op = tg.ops[index]
    params = [t for t in op.outputs if t in op.inputs and tg.tensors[t].kind == "parameter"]
    persistent = set(op.updates)
    data_in = tuple(t for t in op.inputs if t not in persistent)
    grads = tuple(gradient_buffer_name(p) for p in params)
    grad = Step(index, "grad", data_in, grads)
    apply = Step(index, "apply", grads + tuple(op.updates), tuple(op.updates))
    return grad, apply


def gradient_buffer_bytes(tg, index: int, param: str) -> int:
    """float32 bytes of the trained elements of ``param`` (selected channels only)."""
    op = tg.ops[index]
    t = tg.tensors[param]
    channels = op.attrs.get("channels")
    if op.type in WEIGHT_UPDATE_OPS and param == op.inputs[2] and channels is not None:
        axis = 1 if op.type == "FULLY_CONNECTED_UPDATE" else 3
        per_channel = t.size // max(t.shape[axis], 1)
        return 4 * per_channel * len(channels)
    return 4 * t.size


def build_schedule(tg, reorder: bool = True) -> Tuple[List[Step], Dict[str, int]]:
    """The step list and the sizes of any gradient buffers it introduces."""
    if reorder:
        order = reordered_order(tg)
        return [Step(i, "", tuple(tg.ops[i].inputs), tuple(tg.ops[i].outputs)) for i in order], {}
    order = reordered_order(tg)
    steps: List[Step] = []
    applies: List[Step] = []
    extra: Dict[str, int] = {}
    for i in order:
        op = tg.ops[i]
        if _is_update(op) and any(tg.tensors[t].kind == "parameter" for t in op.updates):
            grad, apply = split_update(tg, i)
            for p, g in zip([t for t in op.outputs if t in op.inputs and tg.tensors[t].kind == "parameter"],
                            grad.writes):
                extra[g] = gradient_buffer_bytes(tg, i, p)
            steps.append(grad)
            applies.append(apply)
        else:
            steps.append(Step(i, "", tuple(op.inputs), tuple(op.outputs)))
    # applies keep their relative (list) order: the random-number stream is consumed in that order
    applies.sort(key=lambda s: s.op)
    return steps + applies, extra


def order_of(steps: Sequence[Step]) -> List[int]:
    """Op indices in the order their (first) step runs."""
    seen: Set[int] = set()
    out = []
    for s in steps:
        if s.op not in seen:
            seen.add(s.op)
            out.append(s.op)
    return out
