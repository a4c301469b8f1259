"""The memory planner: schedule, storage decisions, arena placement and the memory report.

``plan(graph, scheme)`` (or ``plan(train_graph)``) returns a ``MemoryPlan``: the operator
order the runtime executes, each step's execution mode (normal, in place, alias, skipped
PAD, fused pointwise) and scratch, every tensor's storage and arena offset, the arena
size, and a breakdown of the peak. The same plan is stored in the exported training file
(``tflm_train.io.train_export``); ``plan_peak`` is the cheap number a scheme search uses.

Memory model (everything that must be in SRAM during a training step):
- the arena: a persistent region ``[0, persistent_bytes)`` (trainable parameters copied
  out of flash, RNG state), then the step's buffers at planned offsets (image, label,
  activations, saved activations, gradients, loss, kernel scratch);
- runtime state outside the arena: ``RUNTIME_FIXED_BYTES`` for the interpreter and
  ``OP_DATA_BYTES`` per executed step (per-op data; op parameters are read from flash, and
  forward requantization tables are computed into the step's scratch, which is in the arena).
Constants (frozen weights) stay in flash.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..contract import check
from ..graph import DEFAULT_GRAD_DTYPE, GraphError, QuantGraph
from .liveness import lifetimes
from .placement import ALIGNMENT, HEURISTICS, Block, align_up, arena_end, live_lower_bound, place, place_best
from .schedule import Step, build_schedule
from .bands import BAND_ROWS, BandError, chain_geometry, verify_band_chain, verify_band_in_place
from .storage import StorageDecisions, band_candidates, decide

#: The training metadata version whose band-window rule ``planner.bands`` implements.
BAND_RULE_VERSION = (2, 2)
#: Interpreter state outside the arena (C++ runtime contract, checked by the firmware build).
RUNTIME_FIXED_BYTES = 512
#: Per executed step: op data (kernel state) the runtime keeps in SRAM.
OP_DATA_BYTES = 16

CATEGORIES = (
    "saved activations",
    "working activations",
    "gradients",
    "trainable parameters",
    "runtime state",
)


@dataclass
class StepPlan:
    """One executed step of the plan."""

    op: int
    part: str
    name: str
    type: str
    phase: str
    mode: str
    inplace_input: Optional[str]
    layout: Optional[str]
    scratch_bytes: int
    scratch_offset: Optional[int]
    reads: Tuple[str, ...]
    writes: Tuple[str, ...]
    #: the last step of a band chain: output rows of its op per band (0: not a chain's last step)
    band_rows: int = 0
    #: the step at which this step's scratch is alive (its band chain's last step, else itself)
    scratch_step: Optional[int] = None


@dataclass
class TensorPlan:
    """Where one tensor lives. ``first``/``last``: steps of its life (arena tensors)."""

    name: str
    nbytes: int
    kind: str
    storage: str
    offset: Optional[int] = None
    buffer: Optional[str] = None
    source: Optional[str] = None
    pad: Optional[List[int]] = None
    first: Optional[int] = None
    last: Optional[int] = None
    #: persistent weight holding only its trained channels: (axis, channels)
    split: Optional[Tuple[int, List[int]]] = None


@dataclass
class MemoryPlan:
    """A complete memory plan of a training step (or of an inference graph)."""

    graph: object = field(repr=False)
    steps: List[StepPlan]
    tensors: Dict[str, TensorPlan]
    arena_bytes: int
    persistent_bytes: int
    lower_bound_bytes: int
    runtime_state_bytes: int
    algorithm: str
    algorithm_bytes: Dict[str, int]
    reorder: bool
    fuse: bool
    inplace: bool
    masks: bool = True
    sparse_params: bool = True
    alignment: int = ALIGNMENT
    timeline: List[Dict[str, int]] = field(default_factory=list, repr=False)
    peak_step: int = 0
    #: saved activation -> (its bitmask tensor, act_min, act_max)
    bitmasks: Dict[str, Tuple[str, int, int]] = field(default_factory=dict)
    #: steps kept out of place by ``refine_in_place`` (the rules would allow in-place)
    no_inplace: List[int] = field(default_factory=list)
    #: band chains: (first step, last step, band rows) (``planner.bands``)
    bands: List[Tuple[int, int, int]] = field(default_factory=list)
    #: the graph input arrives row by row (a window of its first band chain), not whole
    stream_input: bool = False

    # ------------------------------------------------------------------ numbers
    @property
    def peak_bytes(self) -> int:
        """Everything included: arena + runtime state."""
        return self.arena_bytes + self.runtime_state_bytes

    @property
    def order(self) -> List[int]:
        seen, out = set(), []
        for s in self.steps:
            if s.op not in seen:
                seen.add(s.op)
                out.append(s.op)
        return out

    def offsets(self) -> Dict[str, int]:
        return {n: t.offset for n, t in self.tensors.items() if t.offset is not None}

    def live_at(self, step: int) -> List[TensorPlan]:
        return [t for t in self.tensors.values() if t.first is not None and t.first <= step <= t.last]

    def breakdown(self) -> Dict[str, int]:
        """Bytes per category at the peak step, plus placement slack and runtime state; sums to peak_bytes."""
        at = dict(self.timeline[self.peak_step]) if self.timeline else {c: 0 for c in CATEGORIES}
        live = sum(at.get(c, 0) for c in CATEGORIES)
        out = {c: at.get(c, 0) for c in CATEGORIES}
        out["runtime state"] += self.runtime_state_bytes
        out["placement slack"] = self.arena_bytes - live
        return out

    def peak_tensors(self, top: int = 8) -> List[Tuple[str, int, str]]:
        """The largest buffers live at the peak step: (name, bytes, kind)."""
        live = [t for t in self.live_at(self.peak_step) if t.storage in ("arena", "band", "persistent")]
        owners = {}
        for t in live:
            key = t.buffer or t.name
            if key not in owners or t.first > owners[key].first:
                owners[key] = t
        ranked = sorted(owners.values(), key=lambda t: -t.nbytes)[:top]
        scratch = self.steps[self.peak_step].scratch_bytes
        out = [(t.name, t.nbytes, t.kind) for t in ranked]
        if scratch:
            out.append((f"scratch of {self.steps[self.peak_step].name}", scratch, "scratch"))
        return out

    def summary(self) -> dict:
        s = self.steps[self.peak_step] if self.steps else None
        return dict(
            graph=getattr(self.graph, "name", ""),
            reorder=self.reorder,
            fuse=self.fuse,
            inplace=self.inplace,
            stream_input=self.stream_input,
            steps=len(self.steps),
            peak_bytes=self.peak_bytes,
            arena_bytes=self.arena_bytes,
            persistent_bytes=self.persistent_bytes,
            runtime_state_bytes=self.runtime_state_bytes,
            lower_bound_bytes=self.lower_bound_bytes,
            algorithm=self.algorithm,
            algorithm_bytes=dict(self.algorithm_bytes),
            peak_step=self.peak_step,
            peak_op=None if s is None else (s.name + (f" ({s.part})" if s.part else "")),
            peak_op_type=None if s is None else s.type,
            breakdown=self.breakdown(),
            peak_tensors=[dict(name=n, bytes=b, kind=k) for n, b, k in self.peak_tensors()],
        )

    def to_dict(self) -> dict:
        d = self.summary()
        d["schedule"] = [
            dict(op=s.op, part=s.part, name=s.name, type=s.type, mode=s.mode, inplace_input=s.inplace_input,
                 scratch_bytes=s.scratch_bytes, scratch_offset=s.scratch_offset, band_rows=s.band_rows)
            for s in self.steps
        ]
        d["tensors"] = [
            dict(name=t.name, bytes=t.nbytes, kind=t.kind, storage=t.storage, offset=t.offset, buffer=t.buffer,
                 source=t.source, pad=t.pad, first=t.first, last=t.last)
            for t in self.tensors.values() if t.storage not in ("flash", "none")
        ]
        d["timeline"] = self.timeline
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def verify(self) -> None:
        """Raise GraphError if any two buffers alive together share bytes (see ``verify``)."""
        verify(self)

    def plot(self, path: str, title: Optional[str] = None) -> str:
        from .plot import plot_plan

        return plot_plan(self, path, title)

    def describe(self) -> str:
        """Human-readable report (what ``tflm-train plan`` prints)."""
        s = self.summary()
        lines = [
            f"memory plan of {s['graph']}: {s['steps']} steps, reorder={'on' if self.reorder else 'off'}, "
            f"fuse={'on' if self.fuse else 'off'}, in-place={'on' if self.inplace else 'off'}"
            + (", image streamed in rows" if self.stream_input else ""),
            f"peak (everything included): {self.peak_bytes:,} bytes ({self.peak_bytes / 1024:.1f} KB)",
            f"  arena {self.arena_bytes:,} (persistent {self.persistent_bytes:,}), runtime state "
            f"{self.runtime_state_bytes:,}, live-bytes lower bound {self.lower_bound_bytes:,}",
            f"  placement: {self.algorithm} (" + ", ".join(f"{k} {v:,}" for k, v in self.algorithm_bytes.items()) + ")",
            f"  peak at step {self.peak_step}: {s['peak_op']} [{s['peak_op_type']}]",
        ]
        for c, b in s["breakdown"].items():
            lines.append(f"    {c:<22} {b:>10,}")
        lines.append("  largest buffers at the peak:")
        for t in s["peak_tensors"]:
            lines.append(f"    {t['bytes']:>10,}  {t['kind']:<10} {t['name']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- building a plan
def inference_train_graph(graph: QuantGraph):
    """A QuantGraph's forward pass as a TrainGraph (inputs / activations / constants)."""
    from ..training.train_graph import TrainGraph, TrainOp, TrainTensor

    tensors = {}
    for n, t in graph.tensors.items():
        kind = "input" if n in graph.inputs else ("constant" if t.is_constant else "activation")
        tensors[n] = TrainTensor(n, t.shape, t.dtype, kind, t.scale, t.zero_point, t.quantized_dim, t.data)
    ops = [TrainOp(op.type, [t for t in op.inputs if t is not None], list(op.outputs), dict(op.attrs), op.name,
                   "forward") for op in graph.ops]
    return TrainGraph(tensors, ops, graph.inputs, graph.outputs, name=graph.name)


def _as_train_graph(graph, scheme, force_scheme: bool = False, **build_kwargs):
    from ..training.train_graph import TrainGraph

    if isinstance(graph, TrainGraph):
        if scheme is not None:
            raise GraphError("plan: a TrainGraph already has its scheme; pass scheme=None")
        return graph
    if not isinstance(graph, QuantGraph):
        if hasattr(graph, "layers") and hasattr(graph, "fit"):
            from ..io.train_export import graph_of

            graph = graph_of(graph)
        else:
            raise GraphError(f"plan needs a QuantGraph or a TrainGraph, not {type(graph).__name__}")
    if scheme is None:
        check(graph, training=False)
        return inference_train_graph(graph)
    from ..training.autodiff import build_train_graph
    from ..training.scheme import scheme_of

    return build_train_graph(graph, scheme_of(scheme, graph, force=force_scheme), **build_kwargs)


def _tensor_spans(tg, steps: Sequence[Step], d: StorageDecisions) -> Dict[str, Tuple[int, int]]:
    """(first, last) step of every arena tensor: written (graph inputs: step 0) to last read."""
    arena = [t for t, st in d.storage.items() if st in ("arena", "band")]
    lts = lifetimes(list(zip(d.effective_reads, d.effective_writes)), d.nbytes,
                    [t for t in tg.inputs if t != d.streamed],  # a streamed input lives in its chain's step
                    [t for t in tg.outputs if t in d.storage], exclude=[t for t in d.storage if t not in arena])
    spans = {lt.name: (lt.first, lt.last) for lt in lts}
    for t in arena:  # e.g. an input no step reads
        spans.setdefault(t, (0, 0))
    return spans


def _category(tg, kinds: Dict[str, str], name: str, saved: set) -> str:
    kind = kinds[name]
    if kind == "parameter":
        return "trainable parameters"
    if kind == "gradient":
        return "gradients"
    if kind in ("state", "loss", "scratch"):
        return "runtime state"
    if kind in ("activation", "input") and name in saved:
        return "saved activations"
    return "working activations"


def assemble(tg, steps: Sequence[Step], d: StorageDecisions, offsets: Dict[str, int], scratch_offsets: Dict[int, int],
             persistent_bytes: int, arena_bytes: int, algorithm: str, algorithm_bytes: Dict[str, int],
             lower_bound: int, reorder: bool, fuse: bool, inplace: bool, masks: bool,
             sparse_params: bool, no_inplace: Sequence[int] = ()) -> MemoryPlan:
    """A MemoryPlan from decisions and offsets (also used to rebuild a plan read from a file)."""
    n = len(steps)
    spans = _tensor_spans(tg, steps, d)
    saved = set()
    for k, s in enumerate(steps):
        if tg.ops[s.op].phase in ("backward", "update"):
            saved.update(d.effective_reads[k])
    step_plans = []
    band_rows = {last: rows for _, last, rows in d.bands}
    for k, s in enumerate(steps):
        op = tg.ops[s.op]
        step_plans.append(StepPlan(s.op, s.part, op.name or op.type, op.type, op.phase, d.modes[k], d.inplace_input[k],
                                   d.layouts[k], d.scratch[k], scratch_offsets.get(k), tuple(d.effective_reads[k]),
                                   tuple(d.effective_writes[k]), band_rows.get(k, 0), d.scratch_step[k]))
    tensors: Dict[str, TensorPlan] = {}
    for t, st in d.storage.items():
        tp = TensorPlan(t, d.nbytes[t], d.kinds[t], st)
        if st in ("arena", "band"):
            tp.buffer = d.root.get(t, t)
            tp.offset = offsets[tp.buffer]
            tp.first, tp.last = spans[t]
        elif st == "persistent":
            tp.offset = offsets[t]
            tp.split = d.split.get(t)
            tp.first, tp.last = 0, max(n - 1, 0)
        elif st == "virtual_pad":
            tp.source, tp.pad = d.virtual[t][0], list(d.virtual[t][1])
        elif st == "virtual_crop":
            tp.source, tp.pad = d.crop[t][0], list(d.crop[t][1])
        tensors[t] = tp

    # timeline: per step, bytes per category; each buffer counted once (its newest live tensor)
    timeline: List[Dict[str, int]] = []
    high_water: List[int] = []
    by_buffer: Dict[str, List[TensorPlan]] = {}
    for tp in tensors.values():
        if tp.storage in ("arena", "band", "persistent"):
            by_buffer.setdefault(tp.buffer or tp.name, []).append(tp)
    scratch_at: Dict[int, List[int]] = {}  # step -> steps whose scratch is alive then
    for j in range(n):
        if d.scratch[j]:
            scratch_at.setdefault(d.scratch_step[j], []).append(j)
    for k in range(n):
        row = {c: 0 for c in CATEGORIES}
        top = persistent_bytes
        for b, ms in by_buffer.items():
            live = [m for m in ms if m.first <= k <= m.last]
            if not live:
                continue
            newest = max(live, key=lambda m: (m.first, m.nbytes))
            size = max(align_up(m.nbytes) for m in live)
            row[_category(tg, d.kinds, newest.name, saved)] += size
            top = max(top, offsets[b] + size)
        for j in scratch_at.get(k, ()):
            row["runtime state"] += align_up(d.scratch[j])
            top = max(top, scratch_offsets[j] + align_up(d.scratch[j]))
        timeline.append(row)
        high_water.append(top)
    peak_step = 0
    if n:
        totals = [sum(r.values()) for r in timeline]
        # the step that needs the most bytes (ties: the highest arena mark, then the earliest)
        peak_step = max(range(n), key=lambda k: (totals[k], high_water[k], -k))
    runtime = RUNTIME_FIXED_BYTES + OP_DATA_BYTES * sum(1 for m in d.modes if m not in ("skip", "fused", "alias"))
    return MemoryPlan(tg, step_plans, tensors, arena_bytes, persistent_bytes, lower_bound, runtime, algorithm,
                      dict(algorithm_bytes), reorder, fuse, inplace, masks, sparse_params, ALIGNMENT, timeline, peak_step,
                      dict(d.masks), sorted(no_inplace), list(d.bands), d.streamed is not None)


def blocks_of(tg, steps: Sequence[Step], d: StorageDecisions) -> List[Block]:
    """One Block per arena buffer (its tensors' lives as segments) and per step scratch."""
    spans = _tensor_spans(tg, steps, d)
    buffers: Dict[str, List[str]] = {}
    for t in spans:
        buffers.setdefault(d.root.get(t, t), []).append(t)
    blocks = [Block(b, tuple((spans[m][0], spans[m][1], d.nbytes[m]) for m in ms)) for b, ms in buffers.items()]
    for k, size in enumerate(d.scratch):
        if size:
            blocks.append(Block.simple(f"scratch/{k}", size, d.scratch_step[k], d.scratch_step[k]))
    return blocks


def _persistent_offsets(d: StorageDecisions) -> Tuple[Dict[str, int], int]:
    """Persistent tensors packed at the bottom: they are alive at every step, so that is optimal."""
    offsets: Dict[str, int] = {}
    base = 0
    for t, st in d.storage.items():
        if st == "persistent":
            offsets[t] = base
            base += align_up(d.nbytes[t])
    return offsets, base


def _quick_arena(tg, steps, d: StorageDecisions) -> int:
    _, base = _persistent_offsets(d)
    blocks = blocks_of(tg, steps, d)
    return arena_end(blocks, place(blocks, "greedy_by_size", base), base)


class _Decisions:
    """``decide`` and the quick arena of its result for one schedule and one set of flags,
    memoized per (band chains, steps kept out of place).

    Why: ``plan_train_graph`` chooses band chains twice (with and without chain outputs over
    their inputs), and the two greedy passes try mostly the same decisions; a scheme search
    plans hundreds of times. Decisions are never modified once made, so sharing them is safe."""

    def __init__(self, tg, steps, extra, flags):
        self.tg, self.steps, self.extra = tg, steps, extra
        self.flags = {k: v for k, v in flags.items() if k != "bands"}
        self._memo: Dict[tuple, list] = {}

    def _entry(self, bands, no_inplace) -> list:
        key = (tuple(tuple(int(v) for v in c) for c in bands), tuple(sorted(set(no_inplace))))
        if key not in self._memo:
            d = decide(self.tg, self.steps, self.extra, bands=list(key[0]), no_inplace=list(key[1]), **self.flags)
            self._memo[key] = [d, None]
        return self._memo[key]

    def get(self, bands=(), no_inplace=()) -> StorageDecisions:
        return self._entry(bands, no_inplace)[0]

    def arena(self, bands=(), no_inplace=()) -> int:
        """The quick (greedy by size) arena of ``get(bands, no_inplace)``."""
        entry = self._entry(bands, no_inplace)
        if entry[1] is None:
            entry[1] = _quick_arena(self.tg, self.steps, entry[0])
        return entry[1]


def refine_in_place(tg, steps, extra, d: StorageDecisions, forbid: Sequence[int] = (), memo: Optional[_Decisions] = None,
                    **flags) -> Tuple[StorageDecisions, List[int]]:
    """Drop in-place steps that make the arena larger.

    Running in place saves the smaller buffer at that one step, but ties the output's
    offset to the input's for both lifetimes, which can force a long-lived buffer (or a
    large short one) high in the arena. Greedy pass in step order: an in-place step is
    kept unless planning without it (greedy by size) gives a smaller arena. ``forbid``:
    steps already kept out of place (``choose_bands``); ``d`` must be the decisions for
    ``flags`` (its ``bands``) and ``forbid``."""
    memo = memo or _Decisions(tg, steps, extra, flags)
    chains = flags.get("bands", ())
    forbid = list(forbid)
    best = memo.arena(chains, forbid)
    for k in [k for k, m in enumerate(d.modes) if m == "in_place"]:
        size = memo.arena(chains, forbid + [k])
        if size < best:
            best, d = size, memo.get(chains, forbid + [k])
            forbid.append(k)
    return d, forbid


def _source(d: StorageDecisions, t: str) -> str:
    """The tensor read for ``t`` (the source of a virtual PAD)."""
    while t in d.virtual:
        t = d.virtual[t][0]
    return t


def _not_streamed(tg, steps, d: StorageDecisions) -> str:
    """Why the graph input of ``d`` is not streamed (``stream_input``)."""
    image = tg.inputs[0]
    readers = [k for k, r in enumerate(d.effective_reads) if image in r]

    def name(k: int) -> str:
        op = tg.ops[steps[k].op]
        return f"step {k} ({op.name or op.type}, {op.type})"

    if not readers:
        return "no step reads it"
    chain = next(((f, last) for f, last, _ in d.bands if _source(d, tg.ops[steps[f].op].inputs[0]) == image), None)
    others = [k for k in readers if k != (chain[1] if chain else readers[0])]
    if others:  # e.g. the weight update of a trained first layer
        return f"{name(others[0])} reads it outside {'its band chain' if chain else name(readers[0])}"
    if chain is None:
        return (f"its reader, {name(readers[0])}, does not start a band chain (a forward int8 CONV_2D / "
                f"DEPTHWISE_CONV_2D followed by another that alone reads its output)")
    return "it is a graph output"


def choose_bands(tg, steps, extra, d: StorageDecisions, over_input: bool = True, memo: Optional[_Decisions] = None,
                 **flags) -> Tuple[StorageDecisions, List[Tuple[int, int, int]], List[int]]:
    """Band chains that make the arena smaller, and the chains' last steps kept from writing
    their output over their input.

    Greedy in step order over the candidate runs (``storage.band_candidates``): each run is
    planned (greedy by size) with every band height of ``bands.BAND_ROWS``, each without and
    (where the rules allow it) with its output over its input, and kept with the variant
    giving the smallest arena (ties: not over the input, whose pinned offset the final
    placement pays for more often than the quick one shows; then the taller band, fewer
    kernel calls) if that arena is smaller than without it. The smallest band (the
    smallest windows) is tried first: when it does not pay, no taller one is tried (a
    scheme search plans often). ``over_input=False``: no chain output over its input.
    With ``stream_input`` in ``flags`` the run starting at the image is kept in any case
    (its best band height), since a streamed image must be read by a chain. Last, each
    chosen chain's band height is tried again with the others fixed (a chain chosen later
    can make an earlier one's step the peak), kept where the arena gets smaller.
    ``d``: the decisions without band chains and with no step kept out of place."""
    memo = memo or _Decisions(tg, steps, extra, flags)
    best = memo.arena()
    chosen: List[Tuple[int, int, int]] = []
    forbid: List[int] = []
    for first, last in band_candidates(tg, steps, extra, fuse=flags.get("fuse", True),
                                       sparse_params=flags.get("sparse_params", True)):
        # a streamed image must be read by a chain: the run starting at it is kept whatever it costs
        must = flags.get("stream_input", False) and _source(d, tg.ops[steps[first].op].inputs[0]) == tg.inputs[0]
        sizes, possible = {}, False
        for rows in sorted(BAND_ROWS):
            chains = chosen + [(first, last, rows)]
            over = memo.get(chains, forbid)
            variants = [((chains, forbid), False)]
            if over.inplace_input[last] is not None:  # the rules allow the output over the input
                possible = True
                variants = [((chains, forbid + [last]), False)]
                if over_input:
                    variants.append(((chains, forbid), True))
            for trial, kept in variants:
                sizes[(memo.arena(*trial), kept, -rows)] = trial
            if min(size for size, _, r in sizes if r == -rows) >= best and not must:
                break
        key = min(sizes)
        if key[0] < best or must:
            best, d = key[0], memo.get(*sizes[key])
            chosen.append((first, last, -key[2]))
            if possible and not key[1]:
                forbid.append(last)
    # a later chain can move the peak onto an earlier one: revisit each chain's band height once
    for i in range(len(chosen)):
        first, last, rows = chosen[i]
        for r in sorted(BAND_ROWS):
            if r == rows:
                continue
            chains = chosen[:i] + [(first, last, r)] + chosen[i + 1:]
            size = memo.arena(chains, forbid)
            if size < best:
                best, d, chosen = size, memo.get(chains, forbid), chains
    return d, chosen, forbid


def plan_train_graph(tg, reorder: bool = True, fuse: bool = True, inplace: bool = True, masks: bool = True,
                     sparse_params: bool = True, algorithm: str = "best", refine: bool = True,
                     bands=True, stream_input: bool = False) -> MemoryPlan:
    """``bands``: True (``choose_bands``), False, or the chains ``(first step, last step,
    band rows)`` to run in bands. With True and ``inplace``, the chains are chosen twice,
    with and without chain outputs written over their inputs (greedy choices on the quick
    arena differ), and the plan with the smaller peak is kept (placed once when both choose
    the same chains: the same decisions give the same plan). ``stream_input``: the image
    arrives row by row (``tt_train_step_rows``) into a window of the band chain that starts
    at it; GraphError if no chain can (the image read by a trained layer, ...)."""
    steps, extra = build_schedule(tg, reorder)
    flags = dict(fuse=fuse, inplace=inplace, masks=masks, sparse_params=sparse_params, stream_input=stream_input)
    memo = _Decisions(tg, steps, extra, flags)
    if bands is True and inplace:
        choices = [_choose_storage(memo, flags, True, over) for over in (False, True)]
        if choices[1][1:] == choices[0][1:]:
            choices = choices[:1]
        plans = [_place_plan(memo, *c, reorder, algorithm, refine) for c in choices]
        return min(plans, key=lambda p: (p.peak_bytes, p.arena_bytes))  # ties: no output over an input
    return _place_plan(memo, *_choose_storage(memo, flags, bands, True), reorder, algorithm, refine)


def _choose_storage(memo: _Decisions, flags, bands, over_input: bool):
    """(decisions, flags with the band chains, steps kept out of place) before the in-place refinement."""
    flags = dict(flags)
    d = memo.get()
    forbid: List[int] = []  # steps kept out of place although the rules allow it
    if bands is True:
        d, chosen, forbid = choose_bands(memo.tg, memo.steps, memo.extra, d, over_input=over_input, memo=memo,
                                         **flags)
        flags["bands"] = chosen
    elif bands:
        flags["bands"] = [tuple(int(v) for v in c) for c in bands]
        d = memo.get(flags["bands"])
    if flags["stream_input"] and d.streamed is None:
        raise GraphError(f"stream_input: {memo.tg.name or 'the model'}'s input {memo.tg.inputs[0]!r} cannot arrive "
                         f"in rows: {_not_streamed(memo.tg, memo.steps, d)}")
    return d, flags, forbid


def _place_plan(memo: _Decisions, d: StorageDecisions, flags, forbid, reorder, algorithm, refine) -> MemoryPlan:
    tg, steps = memo.tg, memo.steps
    if refine and flags["inplace"]:
        d, forbid = refine_in_place(tg, steps, memo.extra, d, forbid, memo=memo, **flags)
    offsets, base = _persistent_offsets(d)
    blocks = blocks_of(tg, steps, d)
    if algorithm == "best":
        name, placed, results = place_best(blocks, base)
    elif algorithm in HEURISTICS:
        placed = place(blocks, algorithm, base)
        name, results = algorithm, {algorithm: arena_end(blocks, placed, base)}
    else:
        raise GraphError(f"unknown placement algorithm {algorithm!r}; use 'best' or one of {sorted(HEURISTICS)}")
    scratch_offsets = {int(b.name.split("/")[1]): placed[b.name] for b in blocks if b.name.startswith("scratch/")}
    offsets.update({b.name: placed[b.name] for b in blocks if not b.name.startswith("scratch/")})
    arena = arena_end(blocks, placed, base)
    lower = live_lower_bound(blocks, base)
    return assemble(tg, steps, d, offsets, scratch_offsets, base, arena, name, results, lower, reorder,
                    flags["fuse"], flags["inplace"], flags["masks"], flags["sparse_params"], forbid)


def verify_bands(plan: MemoryPlan) -> None:
    """Raise GraphError unless every band chain of the plan holds: its steps are band steps
    of forward convolutions each reading the previous one's output, its intermediate tensors
    are windows touched only by its last step, and replaying its bands
    (``bands.verify_band_chain``) finds every row a consumer reads in its producer's window
    with no more rows than stored."""
    tg = plan.graph
    in_chain = set()
    windows = set()
    for first, last, rows in plan.bands:
        where = f"plan: band chain of steps {first}-{last}"
        ks = [k for k in range(first, last + 1) if plan.steps[k].mode == "band"]
        if not ks or ks[-1] != last or plan.steps[last].band_rows != rows or rows < 1:
            raise GraphError(f"{where}: its last step is not a band step with {rows} band rows")
        if any(plan.steps[k].mode not in ("band", "skip") for k in range(first, last + 1)):
            raise GraphError(f"{where}: a step inside it is neither a band step nor skipped")
        geoms, stored, inner = [], [], []
        input_rows = None
        for i, k in enumerate(ks):
            op = tg.ops[plan.steps[k].op]
            x = plan.tensors[op.inputs[0]]
            src, pad = (x.source, x.pad) if x.storage == "virtual_pad" else (x.name, None)
            if i and src != inner[-1]:
                raise GraphError(f"{where}: step {k} does not read the previous op's output")
            if not i and plan.tensors[src].storage == "band":  # a streamed input: a window fetched row by row
                xs, xt = tg.tensors[src].shape, plan.tensors[src]
                row = int(xs[2]) * int(xs[3])  # int8
                if not plan.stream_input or src != tg.inputs[0] or xt.nbytes % row or (xt.first, xt.last) != (last, last):
                    raise GraphError(f"{where}: its input {src!r} is a window but not the streamed graph input "
                                     f"alive at step {last} only")
                input_rows = xt.nbytes // row
                windows.add(src)
            geoms.append(chain_geometry(tg, op, tg.tensors[src].shape, pad))
            y = plan.tensors[op.outputs[0]]
            if i < len(ks) - 1:
                shape = tg.tensors[y.name].shape
                row = int(shape[2]) * int(shape[3])  # int8
                if y.storage != "band" or y.nbytes % row or (y.first, y.last) != (last, last):
                    raise GraphError(f"{where}: {y.name!r} is not a window written at step {last}")
                stored.append(y.nbytes // row)
                inner.append(y.name)
            elif y.storage != "arena" or y.first != last:
                raise GraphError(f"{where}: its output {y.name!r} is not an arena tensor written at step {last}")
        verify_band_chain(geoms, rows, stored, where, input_rows)
        if plan.steps[last].inplace_input is not None:
            _verify_band_in_place(plan, ks, geoms, rows, where)
        in_chain.update(ks)
        windows.update(inner)
    for k, s in enumerate(plan.steps):
        if (s.mode == "band") != (k in in_chain):
            raise GraphError(f"plan: step {k} ({s.name}) is a band step outside a band chain" if s.mode == "band"
                             else f"plan: step {k} ({s.name}) lies in a band chain but is not a band step")
        touched = windows.intersection(s.reads + s.writes)
        if touched and not (s.mode == "band" and s.band_rows):
            raise GraphError(f"plan: step {k} ({s.name}) touches the window {sorted(touched)[0]!r} "
                             f"outside its band chain")
    stray = [t.name for t in plan.tensors.values() if t.storage == "band" and t.name not in windows]
    if stray:
        raise GraphError(f"plan: tensor {stray[0]!r} is a window of no band chain")
    if plan.stream_input and tg.inputs[0] not in windows:
        raise GraphError(f"plan: it streams its input {tg.inputs[0]!r}, but no band chain reads it as a window")


def _verify_band_in_place(plan: MemoryPlan, ks: Sequence[int], geoms, rows: int, where: str) -> None:
    """A chain writing its output over its input: the input is op 0's stored input, no step
    after the chain reads it, it is no graph output, and the row-by-row replay
    (``bands.verify_band_in_place``) finds no input row overwritten before its last read."""
    tg = plan.graph
    x0 = plan.tensors[tg.ops[plan.steps[ks[0]].op].inputs[0]]
    src = plan.tensors[x0.source if x0.storage == "virtual_pad" else x0.name]
    out = plan.tensors[tg.ops[plan.steps[ks[-1]].op].outputs[0]]
    if plan.steps[ks[-1]].inplace_input != src.name or src.storage != "arena":
        raise GraphError(f"{where}: it writes over {plan.steps[ks[-1]].inplace_input!r}, not its input {src.name!r}")
    if src.last != ks[-1] or src.name in tg.outputs:
        raise GraphError(f"{where}: its output overwrites its input {src.name!r}, which is read after the chain "
                         f"(its last step is {src.last})")
    xs, ys = tg.tensors[src.name].shape, tg.tensors[out.name].shape
    verify_band_in_place(geoms, rows, src.offset, int(xs[2] * xs[3]), out.offset, int(ys[2] * ys[3]), where)


def plan(graph, scheme=None, *, reorder: bool = True, fuse: bool = True, inplace: bool = True,
         masks: bool = True, sparse_params: bool = True, algorithm: str = "best", refine: bool = True,
         num_classes: int = 10, head: str = "float", lr: Optional[float] = None,
         seed: int = 1, force_scheme: bool = False, bands: Optional[bool] = None,
         grad_dtype: str = DEFAULT_GRAD_DTYPE, stream_input: bool = False) -> MemoryPlan:
    """Memory plan of one training step of ``graph`` under ``scheme``.

    ``graph``: a QuantGraph (with ``scheme``: a SparseScheme or ``"FILE[:KEY]"``; without:
    the inference pass is planned), a TrainGraph (``scheme=None``), or a Keras model from
    ``tflm_train.keras``. ``reorder``: apply each update as soon as its gradient exists
    (False: the conventional model, all updates after the backward, weight gradients kept).
    ``fuse``: virtual PADs / crops and channel-fused pointwise convs; ``inplace``: aliases and
    in-place ops; ``masks``: activations the backward only clamps with are saved as bitmasks;
    ``sparse_params``: a weight trained on a subset of channels keeps only those in SRAM.
    ``algorithm``: ``"best"`` (every heuristic, smallest arena) or one heuristic name.
    ``refine``: drop in-place steps that enlarge the arena (``refine_in_place``).
    ``bands``: run forward chains in row bands where that makes the arena smaller (``choose_bands``);
    ``None``: for a training step, not for the inference pass of a QuantGraph, whose offsets are for the
    inference interpreter (``tt_init_planned``), which runs no band chains.
    ``scheme`` takes every spelling of ``tflm_train.training.scheme.scheme_of``; a scheme made
    for another model is refused unless ``force_scheme``. ``lr=None``: the head mode's default.
    ``grad_dtype``: storage of the activation gradients, ``"float32"`` or ``"float16"``.
    ``stream_input``: the image arrives row by row into its first band chain (``plan_train_graph``).
    """
    if bands is None:
        bands = not (scheme is None and isinstance(graph, QuantGraph))
    tg = _as_train_graph(graph, scheme, force_scheme, num_classes=num_classes, head=head, lr=lr, seed=seed,
                         grad_dtype=grad_dtype)
    return plan_train_graph(tg, reorder=reorder, fuse=fuse, inplace=inplace, masks=masks,
                            sparse_params=sparse_params, algorithm=algorithm, refine=refine, bands=bands,
                            stream_input=stream_input)


def plan_peak(graph, scheme=None, **kwargs) -> int:
    """Peak SRAM bytes (everything included) of a quick plan, for a scheme search.

    Defaults to ``refine=False, algorithm="greedy_by_size"`` (tens of milliseconds after
    the training graph is built): the same rules and schedule as ``plan``, so it is an
    upper bound on ``plan(...).peak_bytes``, usually within a few percent; pass
    ``refine=True, algorithm="best"`` for the exact exported number."""
    kwargs.setdefault("refine", False)
    kwargs.setdefault("algorithm", "greedy_by_size")
    return plan(graph, scheme, **kwargs).peak_bytes


# --------------------------------------------------------------------------- checking and reading back
def verify(plan: MemoryPlan) -> None:
    """Raise GraphError unless the plan's offsets are consistent: every buffer inside the
    arena (persistent ones below ``persistent_bytes``, the others above), tensors sharing a
    buffer at one offset, and no two buffers (or a step's scratch) alive at the same step on
    overlapping bytes."""
    spans = []  # (name, buffer, offset, end, first, last)
    buffer_offset: Dict[str, int] = {}
    for t in plan.tensors.values():
        if t.storage not in ("arena", "band", "persistent"):
            continue
        if t.offset is None or t.offset < 0:
            raise GraphError(f"plan: tensor {t.name!r} has no arena offset")
        end = t.offset + t.nbytes
        if end > plan.arena_bytes:
            raise GraphError(f"plan: tensor {t.name!r} [{t.offset}, {end}) is outside the {plan.arena_bytes}-byte arena")
        if t.storage == "persistent" and end > plan.persistent_bytes:
            raise GraphError(f"plan: persistent tensor {t.name!r} ends at {end}, past the persistent region")
        if t.storage in ("arena", "band") and t.offset < plan.persistent_bytes:
            raise GraphError(f"plan: tensor {t.name!r} at {t.offset} is inside the persistent region")
        key = t.buffer or t.name
        if buffer_offset.setdefault(key, t.offset) != t.offset:
            raise GraphError(f"plan: tensors of buffer {key!r} are at different offsets")
        spans.append((t.name, key, t.offset, end, t.first, t.last))
    for k, s in enumerate(plan.steps):
        if s.scratch_bytes:
            if s.scratch_offset is None or s.scratch_offset < plan.persistent_bytes \
                    or s.scratch_offset + s.scratch_bytes > plan.arena_bytes:
                raise GraphError(f"plan: scratch of step {k} ({s.name}) is outside the arena")
            at = k if s.scratch_step is None else s.scratch_step
            spans.append((f"scratch of step {k}", f"scratch/{k}", s.scratch_offset,
                          s.scratch_offset + s.scratch_bytes, at, at))
    # a band chain's output written over its input: verify_bands replays that row by row
    replayed = {frozenset((plan.steps[last].inplace_input, plan.graph.ops[plan.steps[last].op].outputs[0]))
                for _, last, _ in plan.bands if plan.steps[last].inplace_input is not None}
    spans.sort(key=lambda x: x[2])
    for i, a in enumerate(spans):
        for b in spans[i + 1:]:
            if b[2] >= a[3]:
                break
            if a[1] != b[1] and a[4] <= b[5] and b[4] <= a[5] and frozenset((a[0], b[0])) not in replayed:
                raise GraphError(f"plan: {a[0]!r} and {b[0]!r} are alive together on overlapping bytes")
    verify_bands(plan)


def plan_from_file(tg, meta, names: Sequence[str], masks: Dict[str, Tuple[str, int, int]]) -> MemoryPlan:
    """Rebuild the MemoryPlan stored in training metadata (``TrainModelT``) for ``tg``.

    The execution modes are recomputed from the stored order and flags and must match the
    stored ones; offsets come from the file and are verified."""
    from .schedule import check_order

    p = meta.plan
    if p is None or p.steps is None:
        raise GraphError("malformed training metadata: no memory plan")
    order = [int(s.op) for s in p.steps]
    check_order(tg, order)
    steps = [Step(i, "", tuple(tg.ops[i].inputs), tuple(tg.ops[i].outputs)) for i in order]
    no_inplace = [int(k) for k in (p.noInplaceSteps if p.noInplaceSteps is not None else [])]
    mode_names = ("normal", "in_place", "alias", "skip", "fused", "band")
    chains = []  # (first, last, rows): a band step with band rows closes the chain of the band steps before it
    for k, st in enumerate(p.steps):
        if int(st.bandRows) < 0 or (int(st.bandRows) and st.mode != mode_names.index("band")):
            raise GraphError(f"training metadata: step {k} has {int(st.bandRows)} band rows but is not a band step")
        if int(st.bandRows):
            first = k
            while first > 0 and p.steps[first - 1].mode in (3, 5) and not int(p.steps[first - 1].bandRows):
                first -= 1
            while p.steps[first].mode != mode_names.index("band"):
                first += 1
            chains.append((first, k, int(st.bandRows)))
    if chains and (int(meta.versionMajor), int(meta.versionMinor)) < BAND_RULE_VERSION:
        raise GraphError(f"training metadata {meta.versionMajor}.{meta.versionMinor}: its band chains size their "
                         f"windows by the older rule; this reader runs the rule of version "
                         f"{BAND_RULE_VERSION[0]}.{BAND_RULE_VERSION[1]} (export the model again)")
    d = decide(tg, steps, {}, fuse=bool(p.fuse), inplace=bool(p.inplace), masks=bool(p.masks),
               sparse_params=bool(p.sparseParams), no_inplace=no_inplace, bands=chains,
               stream_input=bool(p.streamInput))
    if bool(p.streamInput) and d.streamed is None:
        raise GraphError(f"training metadata: the plan streams its input, but {_not_streamed(tg, steps, d)}")
    entries = {n: e for n, e in zip(names, meta.tensors or [])}

    def name_of(i: int) -> Optional[str]:
        return None if i < 0 else (names[i] if i < len(names) else "?")

    for k, st in enumerate(p.steps):
        layout = st.layout.decode() if isinstance(st.layout, bytes) else (st.layout or None)
        stored = (mode_names[st.mode] if 0 <= st.mode < len(mode_names) else "?", name_of(st.inplaceInput),
                  layout or None, int(st.scratchBytes), int(st.bandRows))
        planned = (d.modes[k], d.inplace_input[k], d.layouts[k], d.scratch[k],
                   next((r for _, last, r in d.bands if last == k), 0))
        if stored != planned:
            raise GraphError(f"training metadata: step {k} ({tg.ops[order[k]].name}) is stored as {stored}, "
                             f"but the plan's rules give {planned}")
    if {y: m for y, m in masks.items()} != dict(d.masks):
        raise GraphError("training metadata: the stored bitmasks differ from the plan's rules")
    storage_names = {v: k for k, v in {"none": 0, "arena": 1, "persistent": 2, "flash": 3, "virtual_pad": 4,
                                        "virtual_crop": 5, "channel": 6, "band": 7}.items()}
    offsets: Dict[str, int] = {}
    for t, st in d.storage.items():
        e = entries.get(t)
        if e is None:
            raise GraphError(f"training metadata: tensor {t!r} of the plan is missing")
        # arena_bytes -1: the tensor's data bytes (a bitmask's data is its arena bytes)
        stored = int(e.arenaBytes) if e.arenaBytes >= 0 else \
            (tg.tensors[t].nbytes if t in tg.tensors else d.nbytes[t])
        if storage_names.get(e.storage) != st or (st in ("arena", "band", "persistent") and stored != d.nbytes[t]):
            raise GraphError(f"training metadata: tensor {t!r} is stored as {storage_names.get(e.storage)} "
                             f"({stored} bytes), the plan's rules give {st} ({d.nbytes[t]} bytes)")
        if st == "persistent":
            offsets[t] = int(e.arenaOffset)
        elif st in ("arena", "band"):
            offsets.setdefault(d.root.get(t, t), int(e.arenaOffset))
    scratch_offsets = {k: int(st.scratchOffset) for k, st in enumerate(p.steps) if st.scratchBytes}
    blocks = blocks_of(tg, steps, d)
    persistent = int(p.persistentBytes)
    algorithm = p.algorithm.decode() if isinstance(p.algorithm, bytes) else (p.algorithm or "")
    result = assemble(tg, steps, d, offsets, scratch_offsets, persistent, int(p.arenaBytes), algorithm,
                      {algorithm: int(p.arenaBytes)}, live_lower_bound(blocks, persistent), bool(p.reorder),
                      bool(p.fuse), bool(p.inplace), bool(p.masks), bool(p.sparseParams), no_inplace)
    for t, tp in result.tensors.items():
        if tp.storage in ("arena", "band") and int(entries[t].arenaOffset) != tp.offset:
            raise GraphError(f"training metadata: tensor {t!r} shares a buffer but has its own offset")
    verify(result)
    return result
