"""Arena placement: give every buffer an offset so that buffers alive at the same time
never share bytes, keeping the arena small.

A ``Block`` is one buffer with a lifetime ``[first, last]`` in schedule steps (inclusive).
Several heuristics are implemented; ``place_best`` runs them all and keeps the smallest
arena (ties: the first in ``HEURISTICS`` order, so the result is deterministic):

- ``greedy_by_size``: largest block first, each at the lowest offset where it fits
  between the blocks already placed that overlap it in time (first fit). This is the
  classic greedy planner (TensorFlow Lite Micro's default planner works this way).
- ``greedy_by_breadth``: steps in decreasing order of their total live bytes, and within
  a step its still unplaced blocks largest first, each in the smallest gap that holds it
  (best fit): the busiest moments are packed first (Pisarchyk & Lee, 2020).
- ``greedy_by_duration`` / ``greedy_by_area`` / ``greedy_by_first_use``: first fit in other
  priority orders (longest lifetime, size x lifetime, earliest start).
- ``perturbed_greedy_by_size``: greedy by size with each size scaled by a random factor in
  [0.7, 1.3] (fixed seed, ``PERTURBED_TRIES`` tries, the smallest arena kept, stopping early
  at the live-bytes lower bound). Cheap (a placement takes milliseconds) and it closes most
  of the gap that plain greedy leaves when long-lived small buffers (saved activations)
  compete with large short-lived ones.
"""
from __future__ import annotations

import random
from typing import Callable, Dict, List, Sequence, Tuple

ALIGNMENT = 16
PERTURBED_TRIES = 32
PERTURBED_SEED = 20220


def align_up(n: int, alignment: int = ALIGNMENT) -> int:
    return (int(n) + alignment - 1) // alignment * alignment


class Block:
    """A buffer at one offset. ``segments``: (first, last, size) pieces of its life; a buffer
    whose tensors change size (in-place ops) occupies the size of the tensor alive then."""

    __slots__ = ("name", "segments", "size", "first", "last")

    def __init__(self, name: str, segments):
        self.name = name
        self.segments = tuple((int(f), int(l), int(s)) for f, l, s in segments)
        self.size = max(s for _, _, s in self.segments)
        self.first = min(f for f, _, _ in self.segments)
        self.last = max(l for _, l, _ in self.segments)

    @classmethod
    def simple(cls, name: str, size: int, first: int, last: int) -> "Block":
        return cls(name, ((first, last, size),))

    def size_at(self, step: int) -> int:
        return max([s for f, l, s in self.segments if f <= step <= l] or [0])

    def __repr__(self) -> str:
        return f"Block({self.name!r}, {self.segments})"


def _segment_conflicts(block: Block, placed, alignment: int):
    """Per segment of ``block``: (aligned size, [(offset, end)] of placed segments alive with it)."""
    out = []
    for f, l, s in block.segments:
        ivs = []
        for p_first, p_last, off, segs in placed:
            if p_first > l or f > p_last:
                continue
            for pf, pl, ps in segs:
                if pf <= l and f <= pl:
                    ivs.append((off, off + ps))
        out.append((align_up(s, alignment), ivs))
    return out


def _fits(offset: int, segs) -> bool:
    for size, ivs in segs:
        end = offset + size
        for o, e in ivs:
            if o < end and offset < e:
                return False
    return True


def _first_fit(segs, base: int, alignment: int) -> int:
    """Smallest aligned offset >= base where every segment misses every interval alive with it."""
    c = base
    moved = True
    while moved:
        moved = False
        for size, ivs in segs:
            for o, e in ivs:
                if o < c + size and c < e:
                    c = align_up(e, alignment)
                    moved = True
    return c


def _best_fit(segs, base: int, alignment: int, size: int) -> int:
    """Offset in the tightest gap that holds the block (ties: lowest), else first fit."""
    ends = sorted({base} | {align_up(e, alignment) for _, ivs in segs for _, e in ivs if e >= base})
    starts = sorted({o for _, ivs in segs for o, _ in ivs})
    best, best_gap = None, None
    for c in ends:
        if not _fits(c, segs):
            continue
        above = [o for o in starts if o >= c + size]
        gap = (above[0] - c - size) if above else None
        if gap is not None and (best_gap is None or gap < best_gap):
            best, best_gap = c, gap
    return best if best is not None else _first_fit(segs, base, alignment)


def _place_in_order(blocks: Sequence[Block], order: Sequence[int], base: int, alignment: int, best: bool) -> Dict[str, int]:
    offsets: Dict[str, int] = {}
    placed = []
    for i in order:
        b = blocks[i]
        segs = _segment_conflicts(b, placed, alignment)
        off = _best_fit(segs, base, alignment, align_up(b.size, alignment)) if best else _first_fit(segs, base, alignment)
        offsets[b.name] = off
        placed.append((b.first, b.last, off, tuple((f, l, align_up(s, alignment)) for f, l, s in b.segments)))
    return offsets


def _order_by(blocks: Sequence[Block], key: Callable[[Block], tuple]) -> List[int]:
    return sorted(range(len(blocks)), key=lambda i: key(blocks[i]) + (i,))


def _breadth_order(blocks: Sequence[Block]) -> List[int]:
    if not blocks:
        return []
    n_steps = max(b.last for b in blocks) + 1
    breadth = [0] * n_steps
    live: List[List[int]] = [[] for _ in range(n_steps)]
    for i, b in enumerate(blocks):
        for s in range(b.first, b.last + 1):
            breadth[s] += b.size_at(s)
            live[s].append(i)
    order: List[int] = []
    seen = set()
    for s in sorted(range(n_steps), key=lambda s: (-breadth[s], s)):
        for i in sorted(live[s], key=lambda i: (-blocks[i].size, blocks[i].first, i)):
            if i not in seen:
                seen.add(i)
                order.append(i)
    return order


HEURISTICS = {
    "greedy_by_size": (lambda bl: _order_by(bl, lambda b: (-b.size, -(b.last - b.first), b.first)), False),
    "greedy_by_breadth": (_breadth_order, True),
    "greedy_by_duration": (lambda bl: _order_by(bl, lambda b: (-(b.last - b.first), -b.size, b.first)), False),
    "greedy_by_area": (lambda bl: _order_by(bl, lambda b: (-b.size * (b.last - b.first + 1), b.first)), False),
    "greedy_by_first_use": (lambda bl: _order_by(bl, lambda b: (b.first, -b.size)), False),
    "perturbed_greedy_by_size": (None, False),
}


def _perturbed(blocks: Sequence[Block], base: int, alignment: int) -> Dict[str, int]:
    rng = random.Random(PERTURBED_SEED)
    floor = live_lower_bound(blocks, base, alignment)
    best, best_end = None, None
    for _ in range(PERTURBED_TRIES):
        noise = [rng.uniform(0.7, 1.3) for _ in blocks]
        order = sorted(range(len(blocks)), key=lambda i: (-blocks[i].size * noise[i], i))
        offsets = _place_in_order(blocks, order, base, alignment, False)
        end = arena_end(blocks, offsets, base, alignment)
        if best_end is None or end < best_end:
            best, best_end = offsets, end
        if best_end <= floor:
            break
    return best if best is not None else {}


def place(blocks: Sequence[Block], heuristic: str, base: int = 0, alignment: int = ALIGNMENT) -> Dict[str, int]:
    """Offsets (>= ``base``) of ``blocks`` under one named heuristic."""
    if heuristic == "perturbed_greedy_by_size":
        return _perturbed(blocks, base, alignment)
    if heuristic not in HEURISTICS:
        raise ValueError(f"unknown placement heuristic {heuristic!r}; one of {sorted(HEURISTICS)}")
    order_fn, best = HEURISTICS[heuristic]
    return _place_in_order(blocks, order_fn(blocks), base, alignment, best)


def arena_end(blocks: Sequence[Block], offsets: Dict[str, int], base: int = 0, alignment: int = ALIGNMENT) -> int:
    return max([base] + [offsets[b.name] + align_up(b.size, alignment) for b in blocks])


def place_best(blocks: Sequence[Block], base: int = 0, alignment: int = ALIGNMENT,
               heuristics: Sequence[str] = tuple(HEURISTICS)) -> Tuple[str, Dict[str, int], Dict[str, int]]:
    """Run every heuristic; return (winner, its offsets, arena end of each heuristic)."""
    results: Dict[str, int] = {}
    best_name, best_offsets = None, None
    for name in heuristics:
        offsets = place(blocks, name, base, alignment)
        end = arena_end(blocks, offsets, base, alignment)
        results[name] = end
        if best_name is None or end < results[best_name]:
            best_name, best_offsets = name, offsets
    return best_name, best_offsets, results


def live_lower_bound(blocks: Sequence[Block], base: int = 0, alignment: int = ALIGNMENT) -> int:
    """No placement can beat the largest sum of (aligned) sizes alive at one step."""
    if not blocks:
        return base
    n_steps = max(b.last for b in blocks) + 1
    live = [0] * n_steps
    for b in blocks:
        for s in range(b.first, b.last + 1):
            live[s] += align_up(b.size_at(s), alignment)
    return base + max(live)
