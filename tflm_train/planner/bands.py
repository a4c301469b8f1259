"""Row-band execution of forward chains (MCUNetV2's patch idea, by rows).

A band chain is a run of consecutive forward CONV_2D / DEPTHWISE_CONV_2D steps (virtual
PADs between them allowed) whose intermediate tensors are read only by the next op of the
chain and are not saved for the backward (the frozen early blocks of a sparse scheme). The
chain runs at its last step, band by band of ``R`` output rows of its last op; each
intermediate tensor is a *window* of rows (storage ``band``) holding only the rows its
consumer still needs, so it never exists whole. The chain's input and output are whole
tensors.

Execution rule (the runtime's algorithm; docs/training_file_format.md, "Band chains"),
for ops ``0..m-1`` with output rows ``H_j``:

- bands ``o = 0, R, 2R, ...``: the last op computes output rows ``c_{m-1} = [o, min(o + R,
  H))``; going backwards, op ``j`` needs the rows of its output that op ``j+1``'s computed
  rows read, ``need_j = rows_read(op j+1, c_{j+1})`` (none if ``c_{j+1}`` is empty), where
  ``rows_read(op, [a, b)) = [max(0, a*s - pt), min(H_in, (b-1)*s - pt + (k-1)*d + 1))``
  (``pt``: the padding above the stored input, a virtual PAD's included), and computes
  ``c_j = [max(hi_j, need_lo), need_hi)``: the rows it does not hold yet;
- then forwards, op ``j < m-1`` with a ``need_j``: its window holds rows ``[lo, hi)`` of its
  output at buffer rows ``[0, hi - lo)``; rows below ``need_j``'s start are dropped (the kept
  rows ``[need_lo, hi)`` move to the buffer start, a memmove), rows ``c_j`` are computed
  after them: every row is computed exactly once (no halo recomputation; the price is the
  memmove of the kept overlap rows, and one kernel call per op and band). The last op
  writes its rows into its whole output. (Training metadata 2.1 sized the windows by
  ``rows_read(op j+1, need_{j+1})``, the rows op ``j+1``'s whole window reads: up to twice
  the rows behind a pointwise op; 2.2 readers refuse 2.1 band chains.)

Each output pixel is computed by the same core on the same input bytes as without bands,
so results are bit-identical. A window's size (``window_rows``, stored as its arena bytes)
is the largest ``need_j`` over the bands.

``verify_band_chain`` is the independent check the planner's ``verify`` runs: it replays
the schedule and checks, tap by tap, that every input row a computed output row reads is
in its producer's window at that moment, that no window exceeds its stored rows, and that
every row of every tensor of the chain is computed exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from ..graph import GraphError

#: Op types a band chain may contain (forward, int8).
BAND_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
#: Band heights the planner tries (output rows of a chain's last op per band).
BAND_ROWS = (1, 2, 4, 8)
#: Most ops in one chain (the runtime keeps one compute core per op on its stack).
MAX_CHAIN_OPS = 8


class BandError(GraphError):
    """A band chain that does not hold."""


@dataclass(frozen=True)
class RowGeometry:
    """Rows of one chain op: stored input rows, output rows, kernel / stride / dilation
    along H, and the padding above the stored input (SAME padding or a virtual PAD's top)."""

    h_in: int
    h_out: int
    kernel: int
    stride: int
    dilation: int
    pad_top: int

    def rows_read(self, a: int, b: int) -> Tuple[int, int]:
        """Stored input rows ``[lo, hi)`` that output rows ``[a, b)`` read (``lo == hi``: none)."""
        lo = max(0, a * self.stride - self.pad_top)
        hi = min(self.h_in, (b - 1) * self.stride - self.pad_top + (self.kernel - 1) * self.dilation + 1)
        return lo, max(lo, hi)

    def taps(self, row: int) -> List[int]:
        """Stored input rows output row ``row`` reads, one per kernel row inside the input."""
        out = []
        for ky in range(self.kernel):
            y = row * self.stride - self.pad_top + ky * self.dilation
            if 0 <= y < self.h_in:
                out.append(y)
        return out


@dataclass(frozen=True)
class BandStep:
    """One band: per op, the output rows computed ``[c0, c1)``; per intermediate (op
    ``j < m-1``), its window ``[lo, hi)`` after the op ran. A streamed chain input (rows
    from the caller's row source): the rows ``fetched`` in this band, before op 0 runs, and
    its window ``input_window`` then (None: the input is a whole tensor)."""

    computed: Tuple[Tuple[int, int], ...]
    windows: Tuple[Tuple[int, int], ...]
    fetched: Optional[Tuple[int, int]] = None
    input_window: Optional[Tuple[int, int]] = None


def band_schedule(geoms: Sequence[RowGeometry], band_rows: int, stream: bool = False) -> Iterator[BandStep]:
    """The runtime's band algorithm (module docstring) over the chain ``geoms``. ``stream``:
    the chain's input arrives row by row (a window, like an intermediate whose rows are
    fetched instead of computed: the rows op 0's computed rows read, each once, in order)."""
    m = len(geoms)
    if m < 2 or band_rows < 1:
        raise BandError(f"a band chain needs at least 2 ops and band_rows >= 1 (got {m} ops, {band_rows} rows)")
    lo, hi = [0] * (m - 1), [0] * (m - 1)
    in_lo = in_hi = 0
    h = geoms[-1].h_out
    for o in range(0, h, band_rows):
        computed: List[Tuple[int, int]] = [(0, 0)] * m
        need: List[Optional[Tuple[int, int]]] = [None] * (m - 1)
        computed[m - 1] = (o, min(o + band_rows, h))
        for j in range(m - 1, 0, -1):
            a, b = computed[j]
            if b > a:  # op j computes rows: op j - 1's window must hold the rows they read
                need[j - 1] = geoms[j].rows_read(a, b)
                start = max(hi[j - 1], need[j - 1][0])
                computed[j - 1] = (start, max(start, need[j - 1][1]))
            else:
                computed[j - 1] = (hi[j - 1], hi[j - 1])
        for j, rows in enumerate(need):
            if rows is not None:
                lo[j], hi[j] = rows[0], max(hi[j], rows[1], rows[0])
        fetched = window = None
        if stream:
            a, b = computed[0]
            fetched = (in_hi, in_hi)
            if b > a:
                n0, n1 = geoms[0].rows_read(a, b)
                start = max(in_hi, n0)
                fetched = (start, max(start, n1))
                in_lo, in_hi = n0, max(in_hi, n1, n0)
            window = (in_lo, in_hi)
        yield BandStep(tuple(computed), tuple(zip(lo, hi)), fetched, window)


def window_rows(geoms: Sequence[RowGeometry], band_rows: int) -> List[int]:
    """Rows each intermediate's window must hold: the largest window over the bands."""
    most = [0] * (len(geoms) - 1)
    for band in band_schedule(geoms, band_rows):
        for j, (lo, hi) in enumerate(band.windows):
            most[j] = max(most[j], hi - lo)
    return most


def input_window_rows(geoms: Sequence[RowGeometry], band_rows: int) -> int:
    """Rows a streamed chain input's window must hold: the largest over the bands."""
    return max(b.input_window[1] - b.input_window[0] for b in band_schedule(geoms, band_rows, stream=True))


def verify_band_chain(geoms: Sequence[RowGeometry], band_rows: int, stored_rows: Sequence[int],
                      where: str = "band chain", input_rows: Optional[int] = None) -> None:
    """Replay the chain's bands row by row; raise BandError where a read row is missing
    from its producer's window, a window outgrows its stored rows, or a row is computed
    twice or never. ``input_rows``: the chain's input is streamed into a window of that
    many rows (every input row fetched exactly once, in order, and present when op 0 reads it)."""
    m = len(geoms)
    if len(stored_rows) != m - 1:
        raise BandError(f"{where}: {len(stored_rows)} windows for {m - 1} intermediate tensors")
    for j in range(1, m):
        if geoms[j].h_in != geoms[j - 1].h_out:
            raise BandError(f"{where}: op {j} reads {geoms[j].h_in} rows, op {j - 1} writes {geoms[j - 1].h_out}")
    present: List[set] = [set() for _ in range(m - 1)]
    done: List[List[int]] = [[0] * g.h_out for g in geoms]
    stream = input_rows is not None
    streamed: set = set()
    fetched: List[int] = []
    for band in band_schedule(geoms, band_rows, stream=stream):
        if stream:
            lo, hi = band.input_window
            fetched += range(*band.fetched)
            streamed = {y for y in streamed | set(range(*band.fetched)) if lo <= y < hi}
            if streamed != set(range(lo, hi)):
                raise BandError(f"{where}: the streamed input's window is not rows [{lo}, {hi})")
            if hi - lo > input_rows:
                raise BandError(f"{where}: the streamed input's window needs {hi - lo} rows, {input_rows} are stored")
        for j, (c0, c1) in enumerate(band.computed):
            for r in range(c0, c1):
                if j > 0 or stream:
                    held = present[j - 1] if j > 0 else streamed
                    missing = [y for y in geoms[j].taps(r) if y not in held]
                    if missing:
                        source = f"op {j - 1}'s output" if j > 0 else "the streamed input"
                        raise BandError(f"{where}: op {j} output row {r} reads rows {missing} of {source}, "
                                        f"which are not in its window")
                done[j][r] += 1
            if j < m - 1:
                lo, hi = band.windows[j]
                present[j] = {y for y in present[j] | set(range(c0, c1)) if lo <= y < hi}
                if present[j] != set(range(lo, hi)):
                    raise BandError(f"{where}: the window of op {j}'s output is not rows [{lo}, {hi})")
                if hi - lo > stored_rows[j]:
                    raise BandError(f"{where}: op {j}'s output window needs {hi - lo} rows, "
                                    f"{stored_rows[j]} are stored")
    if stream and any(b <= a for a, b in zip(fetched, fetched[1:])):
        raise BandError(f"{where}: the streamed input's rows are not fetched once each, in ascending order")
    for j, counts in enumerate(done):
        bad = [r for r, c in enumerate(counts) if c != 1]
        if bad:
            raise BandError(f"{where}: op {j} computes row {bad[0]} {counts[bad[0]]} times (must be once)")


def chain_geometry(tg, op, stored_input_shape, virtual_pad: Optional[Sequence[int]]) -> RowGeometry:
    """RowGeometry of a forward CONV_2D / DEPTHWISE_CONV_2D reading a stored input of
    ``stored_input_shape`` (through a virtual PAD ``[top, bottom, left, right]`` if given)."""
    w = tg.tensors[op.inputs[1]]
    y = tg.tensors[op.outputs[0]]
    kh = int(w.shape[1])
    s, d = int(op.attrs.get("stride_h", 1)), int(op.attrs.get("dilation_h", 1))
    h_in = int(stored_input_shape[1])
    h_out = int(y.shape[1])
    if virtual_pad is not None:
        pt = int(virtual_pad[0])
    elif op.attrs.get("padding") == "SAME":
        pt = max((h_out - 1) * s + (kh - 1) * d + 1 - h_in, 0) // 2
    else:
        pt = 0
    return RowGeometry(h_in, h_out, kh, s, d, pt)


# --------------------------------------------------------------------------- output over the input
# A chain whose input has no reader after it (e.g. the image under frozen first layers) may
# write its output over the input rows no later band reads any more: op 0 consumes its input
# top to bottom, and within a band every op runs before the last op writes. With the output
# ``gap`` bytes below the input (``gap = input offset - output offset``, negative: above),
# the bytes the last op has written by the end of band ``b`` end at ``end_b * out_row - gap``
# (relative to the input's start) and must stay below the first input row a later band reads.


def _first_tap(geom: RowGeometry, c0: int, c1: int) -> Optional[int]:
    """The lowest stored input row that output rows ``[c0, c1)`` read (None: none)."""
    taps = [y for r in range(c0, c1) for y in geom.taps(r)]
    return min(taps) if taps else None


def in_place_gap(geoms: Sequence[RowGeometry], band_rows: int, in_row: int, out_row: int) -> Optional[int]:
    """The smallest ``gap = input offset - output offset`` (bytes) for which writing the
    chain's output at ``input offset - gap`` (or any lower offset) never overwrites an input
    row before its last read: ``max over bands i > 0 whose op 0 reads input of
    (end_{i-1} * out_row - first_i * in_row)``, ``end_{i-1}``: output rows written by the
    bands before ``i``, ``first_i``: the lowest input row band ``i`` reads (rows only grow,
    so the next reading band's first row is the first row any later band reads). None: no
    band reads input after another band wrote output (any gap)."""
    gap: Optional[int] = None
    end = 0
    for band in band_schedule(geoms, band_rows):
        first = _first_tap(geoms[0], *band.computed[0])
        if first is not None and end > 0:
            need = end * out_row - first * in_row
            gap = need if gap is None else max(gap, need)
        end = band.computed[-1][1]
    return gap


def verify_band_in_place(geoms: Sequence[RowGeometry], band_rows: int, in_offset: int, in_row: int,
                         out_offset: int, out_row: int, where: str = "band chain") -> None:
    """Replay the chain's bands row by row with its output at ``out_offset`` and its input
    at ``in_offset``: raise BandError if an output row the last op writes in band ``b``
    lies on bytes of an input row that op 0 still reads in a later band (the input's last
    read of each row from op 0's taps; independent of ``in_place_gap``)."""
    bands = list(band_schedule(geoms, band_rows))
    last_read = [-1] * geoms[0].h_in
    for i, band in enumerate(bands):
        for r in range(*band.computed[0]):
            for y in geoms[0].taps(r):
                last_read[y] = i
    for i, band in enumerate(bands):
        for o in range(*band.computed[-1]):
            start = out_offset + o * out_row - in_offset  # relative to the input's first byte
            lo, hi = max(0, start // in_row), min(geoms[0].h_in, -(-(start + out_row) // in_row))
            live = [y for y in range(lo, hi) if last_read[y] > i]
            if live:
                raise BandError(f"{where}: output row {o}, written in band {i}, overwrites input row {live[0]}, "
                                f"which band {last_read[live[0]]} still reads (the output is "
                                f"{in_offset - out_offset} bytes below the input; the bands need at least "
                                f"{in_place_gap(geoms, band_rows, in_row, out_row)})")
