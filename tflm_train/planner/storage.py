"""Where each tensor of a schedule lives, and which steps run in place or fused.

Every rule below is a contract the C++ runtime honours when it executes a plan
(docs/training_file_format.md, "Execution rules"); none changes a single result bit,
so the NumPy reference trainer, which runs the op list plainly, stays the oracle.

Fusions (``fuse``):
- ``virtual_pad``: a forward PAD whose every reader is a forward CONV_2D /
  DEPTHWISE_CONV_2D with VALID padding (input 0) or a CONV_2D / DEPTHWISE_CONV_2D weight
  update (its ``x``, with ``pad_top == pad_left == 0``) is skipped; the readers read the
  PAD's input and skip the taps that fall in the padding (a padded element is the zero
  point, real value 0, so its products are 0). The padded copy never exists.
- ``virtual_crop``: a PAD_GRAD whose input (the gradient of a padded tensor) is written
  by a CONV_2D_GRAD_INPUT / DEPTHWISE_CONV_2D_GRAD_INPUT (``pad_top == pad_left == 0``)
  and read by nothing else is skipped; the GRAD_INPUT op computes only the interior
  positions and writes them straight into the PAD_GRAD's output.
- ``channel``: a forward 1x1 stride-1 CONV_2D whose output is read only by the forward
  DEPTHWISE_CONV_2D (depth multiplier 1) that runs next (possibly through a virtual PAD)
  runs inside it (mode ``fused``): for each channel ``c``, pointwise output channel ``c``
  is computed into a one-channel scratch, then depthwise channel ``c`` from there; where
  ``depthwise_group_channels`` is 4, four channels at a time into a four-channel scratch
  (the four channels interleaved, pixel by pixel).

Bitmask saves (``masks``): an activation that the backward reads only through one
CLAMP_GRAD is kept for the backward as a bitmask, bit ``i`` = ``act_min < y[i] < act_max``
(the CLAMP_GRAD's attrs), written right after the step that produces ``y``; CLAMP_GRAD
reads the bit instead of ``y``. ``y`` itself dies after its last forward reader.

Sharing bytes (``inplace``):
- ``alias``: RESHAPE / RESHAPE_GRAD outputs are their input's bytes (no copy).
- ``in_place``: output 0 is written over the buffer of an input whose last reader (over
  every tensor sharing that buffer) is this step, starting at the buffer's offset; the
  buffer is as large as the larger of the two:
  * per-channel ops, depth multiplier 1 (DEPTHWISE_CONV_2D forward,
    DEPTHWISE_CONV_2D_GRAD_INPUT): for each channel ``c`` the input channel is first
    copied to a one-channel scratch, then output element (pixel ``p``, channel ``c``) is
    written at element ``p*C + c``, a slot of channel ``c`` (C is the same for input and
    output), so no unread input is overwritten (a forward depthwise whose
    ``depthwise_group_channels`` is 4: four channels at a time, through a four-channel
    scratch, the same argument per channel);
  * per-pixel ops (1x1 stride-1 CONV_2D forward, CONV_2D_GRAD_INPUT): output pixel ``p``
    is computed from input pixel ``p`` into a one-pixel scratch, then stored; pixels go
    in ascending order when an output pixel is no larger than an input pixel, else in
    descending order, so no unread input pixel is overwritten;
  * per-row (any other forward CONV_2D): each output row is computed into a one-row
    scratch, then stored, rows in ascending or descending order, whichever ``row_order``
    proves never overwrites an input row a later output row reads;
  * elementwise ops: forward ADD (either input), RELU / RELU6 / LEAKY_RELU (input 0), CLAMP_GRAD,
    GRAD_SCALE and LEAKY_RELU_GRAD (input 0),
    GRAD_ACCUMULATE
    (either input), PAD_GRAD (input 0; a crop, copied in ascending order: every element
    moves to an address at or below its source).
A forward op whose output is a saved activation is never run in place (the saved buffer
would pin the large short-lived one to its offset); ``plan.refine_in_place`` further drops
in-place steps that make the arena larger.

Trained channels only (``sparse_params``): a weight whose update trains a subset of its
channels keeps only those in SRAM (``split``); kernels read the others from flash.

Persistent tensors (parameters, RNG state) live in a region at the bottom of the arena
kept across steps; constants stay in flash.

Band chains (``bands``: the chains the planner chose, ``(first step, last step, band rows)``;
``planner.bands`` has the execution rule): every step of a chain has mode ``band``; the
chain runs at its last step, so only that step reads the chain's input (and weights) and
writes its intermediate tensors (storage ``band``: a window of ``window_rows`` rows, its
arena bytes) and its output; each chain step's scratch (its requantization table) is
alive at that last step. A chain op is never fused or in place, but the chain's output
is written over its input's buffer (same offset, ``inplace_input`` of its last step) when
the input has no reader after the chain and ``bands.in_place_gap`` proves that the bands
never overwrite an input row before its last read there. With ``stream_input`` the graph
input (the image) that a chain's op 0 alone reads is a window too (``bands.input_window_rows``
rows, alive at the chain's last step only): the runtime fetches its rows from the caller.

Requantization tables: a forward int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
needs one int32 multiplier and one int32 shift per filter scale; the file does not store
them (they follow from the scales), the runtime computes them into the top of the step's
scratch, so the scratch of such a step grows by 8 bytes per filter scale (a fused
pointwise convolution's table is in the scratch of the depthwise step it runs in).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .bands import BAND_OPS, MAX_CHAIN_OPS, BandError, chain_geometry, in_place_gap, input_window_rows, window_rows
from .schedule import Step

MODES = ("normal", "in_place", "alias", "skip", "fused", "band")
STORAGES = ("arena", "persistent", "flash", "virtual_pad", "virtual_crop", "channel", "band", "none")

#: Ops (and the input position) that may read a virtual (never materialized) PAD output.
VIRTUAL_PAD_READERS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "CONV_2D_UPDATE": 1, "DEPTHWISE_CONV_2D_UPDATE": 1}
#: GRAD_INPUT ops that may write a PAD_GRAD's crop directly.
CROP_WRITERS = ("CONV_2D_GRAD_INPUT", "DEPTHWISE_CONV_2D_GRAD_INPUT")
ALIAS_OPS = ("RESHAPE", "RESHAPE_GRAD")
#: Weight updates whose trained channels (attrs["channels"], along this weight axis) may be held apart.
SPLIT_UPDATES = {"CONV_2D_UPDATE": 3, "DEPTHWISE_CONV_2D_UPDATE": 3, "FULLY_CONNECTED_UPDATE": 1}
#: In-place ops: input positions whose buffer output 0 may take, and the layout rule.
IN_PLACE = {
    "DEPTHWISE_CONV_2D": ((0,), "channel"),
    "DEPTHWISE_CONV_2D_GRAD_INPUT": ((0,), "channel"),
    "CONV_2D": ((0,), "pixel|row"),
    "CONV_2D_GRAD_INPUT": ((0,), "pixel"),
    "ADD": ((0, 1), "elementwise"),
    "RELU": ((0,), "elementwise"),
    "RELU6": ((0,), "elementwise"),
    "LEAKY_RELU": ((0,), "elementwise"),
    "LEAKY_RELU_GRAD": ((0,), "elementwise"),
    "CLAMP_GRAD": ((0,), "elementwise"),
    "GRAD_SCALE": ((0,), "elementwise"),
    "GRAD_ACCUMULATE": ((0, 1), "elementwise"),
    "PAD_GRAD": ((0,), "crop"),
}


#: Largest plane (height x width) whose forward depthwise runs four channels at a time.
DEPTHWISE_GROUP_MAX_PLANE = 256


def depthwise_group_channels(shape) -> int:
    """Channels a fused or in-place forward DEPTHWISE_CONV_2D over an input of ``shape``
    (NHWC) runs together, through a scratch of that many channel planes: 4 for planes of at
    most DEPTHWISE_GROUP_MAX_PLANE elements and at least four channels (the runtime's
    four-channel depthwise path then reads them interleaved; a small plane's per-channel
    set-up otherwise dominates its cost), else 1. The runtime groups exactly when the plan
    gives it that scratch."""
    h, w, c = int(shape[1]), int(shape[2]), int(shape[3])
    return 4 if h * w <= DEPTHWISE_GROUP_MAX_PLANE and c >= 4 else 1


def mask_name(tensor: str) -> str:
    return f"{tensor}/mask"


#: Forward int8 ops whose requantization the runtime computes per step (filter = input 1).
REQUANTIZED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def requantization_bytes(tg, op) -> int:
    """Scratch bytes of the requantization table of ``op`` (int32 multiplier + int32 shift
    per filter scale), 0 for an op that has none."""
    if op.type not in REQUANTIZED_OPS or op.phase != "forward" or len(op.inputs) < 2:
        return 0
    x, w, y = tg.tensors[op.inputs[0]], tg.tensors[op.inputs[1]], tg.tensors[op.outputs[0]]
    if y.dtype != "int8" or x.scale is None or w.scale is None or y.scale is None:
        return 0
    return 8 * int(np.size(w.scale))


@dataclass
class StorageDecisions:
    """Result of ``decide``: per step mode / in-place input / scratch, per tensor storage."""

    modes: List[str]
    inplace_input: List[Optional[str]]
    scratch: List[int]
    storage: Dict[str, str]
    root: Dict[str, str]  # arena tensor -> tensor owning its buffer
    virtual: Dict[str, Tuple[str, List[int]]]  # PAD output -> (source, [top, bottom, left, right])
    crop: Dict[str, Tuple[str, List[int]]]  # padded gradient -> (PAD_GRAD output written instead, pads)
    masks: Dict[str, Tuple[str, int, int]]  # saved activation -> (mask tensor, act_min, act_max)
    effective_reads: List[Tuple[str, ...]]  # per step, after all fusions
    effective_writes: List[Tuple[str, ...]]
    nbytes: Dict[str, int]  # bytes each tensor occupies where it lives (trained channels only, if split)
    kinds: Dict[str, str]
    extra: Dict[str, int] = field(default_factory=dict)
    layouts: List[Optional[str]] = field(default_factory=list)  # in-place order per step
    split: Dict[str, Tuple[int, List[int]]] = field(default_factory=dict)  # weight -> (axis, trained channels)
    #: per step, the step at which its scratch is alive (itself, or its band chain's last step)
    scratch_step: List[int] = field(default_factory=list)
    #: band chains: (first step, last step, band rows)
    bands: List[Tuple[int, int, int]] = field(default_factory=list)
    #: per band chain: the RowGeometry of each op, and its intermediate tensors in order
    band_geometry: List[Tuple[tuple, Tuple[str, ...]]] = field(default_factory=list)
    #: the graph input streamed row by row into a window (``stream_input``), or None
    streamed: Optional[str] = None


def _pad_amounts(tg, op) -> Optional[List[int]]:
    """[top, bottom, left, right] of a spatial-only NHWC PAD, else None."""
    if len(op.inputs) < 2 or tg.tensors[op.inputs[1]].data is None:
        return None
    pads = np.asarray(tg.tensors[op.inputs[1]].data).reshape(-1, 2).astype(int)
    if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
        return None
    return [int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1])]


def _is_1x1(tg, op) -> bool:
    """A 1x1, stride-1 convolution (forward CONV_2D or its GRAD_INPUT)."""
    if op.type == "CONV_2D":
        kh, kw = tg.tensors[op.inputs[1]].shape[1:3]
    elif op.type == "CONV_2D_GRAD_INPUT":
        kh, kw = tg.tensors[op.inputs[1]].shape[1:3]
    else:
        return False
    a = op.attrs
    return (kh, kw) == (1, 1) and a.get("stride_h", 1) == 1 and a.get("stride_w", 1) == 1


class _Decider:
    def __init__(self, tg, steps: Sequence[Step], extra: Dict[str, int]):
        self.tg, self.steps, self.n = tg, list(steps), len(steps)
        self.nbytes = {name: t.nbytes for name, t in tg.tensors.items()}
        self.kinds = {name: t.kind for name, t in tg.tensors.items()}
        self.dtypes = {name: t.dtype for name, t in tg.tensors.items()}
        for name, size in extra.items():
            self.nbytes[name], self.kinds[name], self.dtypes[name] = int(size), "gradient", "float32"
        self.extra = dict(extra)
        self.outputs = set(tg.outputs)
        self.modes = ["normal"] * self.n
        self.inplace_input: List[Optional[str]] = [None] * self.n
        self.layouts: List[Optional[str]] = [None] * self.n
        self.scratch = [0] * self.n
        self.split: Dict[str, Tuple[int, List[int]]] = {}
        self.virtual: Dict[str, Tuple[str, List[int]]] = {}
        self.crop: Dict[str, Tuple[str, List[int]]] = {}
        self.channel: Set[str] = set()
        self.masks: Dict[str, Tuple[str, int, int]] = {}
        self.reads: List[List[str]] = [list(s.reads) for s in steps]
        self.writes: List[List[str]] = [list(s.writes) for s in steps]
        self.root: Dict[str, str] = {}
        self.members: Dict[str, List[str]] = {}
        self.no_inplace: Set[int] = set()
        self.scratch_step = list(range(self.n))
        self.bands: List[Tuple[int, int, int]] = []
        self.band_geometry: List[Tuple[tuple, Tuple[str, ...]]] = []
        self.band_steps: Set[int] = set()
        self.windows: Set[str] = set()
        self.streamed: Optional[str] = None

    def resolve(self, t: str) -> str:
        """The tensor actually read for ``t`` (the source of a virtual PAD)."""
        while t in self.virtual:
            t = self.virtual[t][0]
        return t

    def op(self, k: int):
        return self.tg.ops[self.steps[k].op]

    def readers(self, t: str) -> List[int]:
        return [k for k in range(self.n) if t in self.reads[k]]

    def producer(self, t: str) -> Optional[int]:
        return next((k for k in range(self.n) if t in self.writes[k]), None)

    # ------------------------------------------------------------------ fusions
    def virtual_pads(self) -> None:
        for k in range(self.n):
            op = self.op(k)
            if self.steps[k].part or op.type != "PAD" or op.phase != "forward":
                continue
            out, pads = op.outputs[0], _pad_amounts(self.tg, op)
            readers = self.readers(out)
            if pads is None or out in self.outputs or not readers:
                continue
            if all(self._reads_virtual_ok(r, out) for r in readers):
                self.virtual[out] = (op.inputs[0], pads)
                self.modes[k] = "skip"
                self.reads[k], self.writes[k] = [], []
                for r in readers:
                    self.reads[r] = [op.inputs[0] if t == out else t for t in self.reads[r]]

    def _reads_virtual_ok(self, k: int, tensor: str) -> bool:
        op = self.op(k)
        pos = VIRTUAL_PAD_READERS.get(op.type)
        if pos is None or self.steps[k].part == "apply":
            return False
        if op.inputs.count(tensor) != 1 or op.inputs.index(tensor) != pos:
            return False
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return op.phase == "forward" and op.attrs.get("padding") == "VALID"
        return op.attrs.get("pad_top", 0) == 0 and op.attrs.get("pad_left", 0) == 0

    def virtual_crops(self) -> None:
        for k in range(self.n):
            op = self.op(k)
            if self.steps[k].part or op.type != "PAD_GRAD":
                continue
            g = op.inputs[0]
            p = self.producer(g)
            if p is None or self.readers(g) != [k] or g in self.outputs or self.steps[p].part:
                continue
            pop = self.op(p)
            pads = np.asarray(op.attrs.get("paddings", [])).reshape(-1, 2).astype(int)
            if (pop.type not in CROP_WRITERS or list(pop.outputs) != [g] or pop.attrs.get("pad_top", 0) != 0
                    or pop.attrs.get("pad_left", 0) != 0 or pads.shape != (4, 2) or pads[0].any() or pads[3].any()):
                continue
            out = op.outputs[0]
            self.crop[g] = (out, [int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1])])
            self.modes[k] = "skip"
            self.reads[k], self.writes[k] = [], []
            self.writes[p] = [out]

    def channel_fusions(self) -> None:
        for k in range(self.n):
            op = self.op(k)
            if self.steps[k].part or op.phase != "forward" or not _is_1x1(self.tg, op) or k in self.band_steps:
                continue
            out = op.outputs[0]
            k2 = k + 1
            while k2 < self.n and self.modes[k2] == "skip":
                k2 += 1
            if k2 >= self.n or out in self.outputs or self.kinds[out] != "activation":
                continue
            dw = self.op(k2)
            if (self.steps[k2].part or dw.type != "DEPTHWISE_CONV_2D" or dw.phase != "forward" or k2 in self.band_steps
                    or int(dw.attrs.get("depth_multiplier", 1)) != 1 or out not in self.reads[k2]):
                continue
            if self.readers(out) != [k2]:
                continue
            self.channel.add(out)
            self.modes[k] = "fused"
            t = self.tg.tensors[out]
            self.scratch[k2] += depthwise_group_channels(t.shape) * int(t.shape[1] * t.shape[2] *
                                                                        np.dtype(t.dtype).itemsize)
            self.reads[k2] = [x for x in self.reads[k2] if x != out] + self.reads[k]
            self.reads[k], self.writes[k] = [], []

    def requantization_tables(self) -> None:
        """Room for the requantization tables at the top of each step's scratch (4-aligned)."""
        for k in range(self.n):
            need = requantization_bytes(self.tg, self.op(k))
            if not need or self.steps[k].part:
                continue
            k2 = k
            if self.modes[k] == "fused":  # runs inside the next executed step
                k2 = k + 1
                while self.modes[k2] == "skip":
                    k2 += 1
            self.scratch[k2] = (self.scratch[k2] + 3) // 4 * 4 + need

    # ------------------------------------------------------------------ band chains
    def band_link(self, k: int, prev_out: Optional[str]) -> Optional[str]:
        """Why step ``k`` cannot be the next op of a band chain whose last output is
        ``prev_out`` (None: it can start one); None if it can."""
        op = self.op(k)
        if self.steps[k].part or self.modes[k] != "normal" or op.type not in BAND_OPS or op.phase != "forward":
            return "not a forward CONV_2D / DEPTHWISE_CONV_2D"
        x = self.resolve(op.inputs[0])
        y = op.outputs[0]
        ty = self.tg.tensors[y]
        if len(ty.shape) != 4 or ty.shape[0] != 1 or ty.dtype != "int8" or len(self.tg.tensors[x].shape) != 4:
            return "not a 1xHxWxC int8 convolution"
        if prev_out is not None:
            if x != prev_out:
                return f"it does not read {prev_out!r}"
            if (self.readers(prev_out) != [k] or prev_out in self.outputs or self.kinds[prev_out] != "activation"
                    or prev_out in self.virtual or prev_out in self.crop):
                return f"{prev_out!r} is read outside the chain"
        return None

    def band_candidates(self) -> List[Tuple[int, int]]:
        """Maximal runs ``(first step, last step)`` of at least two steps that may run as one band chain."""
        runs: List[Tuple[int, int]] = []
        k = 0
        while k < self.n:
            if self.band_link(k, None) is not None:
                k += 1
                continue
            first, last, out = k, k, self.op(k).outputs[0]
            j = k + 1
            while j < self.n and last - first + 1 < MAX_CHAIN_OPS:
                if self.modes[j] == "skip" and not self.reads[j] and not self.writes[j]:
                    j += 1
                    continue
                if self.band_link(j, out) is not None:
                    break
                last, out = j, self.op(j).outputs[0]
                j += 1
            if last > first:
                runs.append((first, last))
            k = last + 1
        return runs

    def band_chains(self, chains: Sequence[Tuple[int, int, int]]) -> None:
        """Run each chain ``(first, last, rows)`` in bands (raises BandError if it cannot)."""
        for first, last, rows in sorted(chains):
            if not 0 <= first < last < self.n:
                raise BandError(f"band chain [{first}, {last}] is outside the {self.n} steps")
            where = f"band chain of steps {first}-{last}"
            ks, out = [], None
            for k in range(first, last + 1):
                if k > first and self.modes[k] == "skip" and not self.reads[k] and not self.writes[k]:
                    continue
                why = self.band_link(k, out)
                if why is not None or k in self.band_steps:
                    raise BandError(f"{where}: step {k} ({self.op(k).name}) cannot be in it: {why or 'in a chain'}")
                ks.append(k)
                out = self.op(k).outputs[0]
            if ks[-1] != last or len(ks) < 2:
                raise BandError(f"{where}: it must end with an op and hold at least two")
            geoms, inner = [], []
            for i, k in enumerate(ks):
                op = self.op(k)
                x = op.inputs[0]
                pad = self.virtual[x][1] if x in self.virtual else None
                geoms.append(chain_geometry(self.tg, op, self.tg.tensors[self.resolve(x)].shape, pad))
                if i < len(ks) - 1:
                    inner.append(op.outputs[0])
            sizes = window_rows(geoms, rows)
            external_reads: List[str] = []
            for i, k in enumerate(ks):
                external_reads += [t for t in self.reads[k] if t not in inner and t not in external_reads]
            writes = inner + [self.op(last).outputs[0]]
            for k in ks:
                self.modes[k] = "band"
                self.band_steps.add(k)
                self.scratch_step[k] = last
                self.reads[k], self.writes[k] = [], []
            self.reads[last], self.writes[last] = external_reads, writes
            for t, r in zip(inner, sizes):
                shape = self.tg.tensors[t].shape
                self.nbytes[t] = int(r * shape[2] * shape[3] * np.dtype(self.dtypes[t]).itemsize)
                self.windows.add(t)
            self.bands.append((first, last, int(rows)))
            self.band_geometry.append((tuple(geoms), tuple(inner)))

    def stream_input(self) -> None:
        """The graph input (the image) arrives row by row: a window of ``input_window_rows``
        rows, when a band chain's op 0 reads it and no other step does (else it stays whole;
        the planner then says why)."""
        image = self.tg.inputs[0]
        for (first, last, rows), (geoms, _) in zip(self.bands, self.band_geometry):
            if self.resolve(self.op(first).inputs[0]) != image:
                continue
            if self.readers(image) != [last] or image in self.outputs:
                return
            shape = self.tg.tensors[image].shape
            self.nbytes[image] = int(input_window_rows(geoms, rows) * shape[2] * shape[3]
                                     * np.dtype(self.dtypes[image]).itemsize)
            self.windows.add(image)
            self.streamed = image
            return

    def bitmasks(self) -> None:
        for k in range(self.n):
            op = self.op(k)
            if self.steps[k].part or op.type != "CLAMP_GRAD":
                continue
            y = op.inputs[1]
            if self.kinds.get(y) != "activation" or y in self.outputs or y in self.masks:
                continue
            later = [r for r in self.readers(y) if self.op(r).phase in ("loss", "backward", "update")]
            p = self.producer(y)
            if later != [k] or p is None:
                continue
            m = mask_name(y)
            self.nbytes[m] = (self.tg.tensors[y].size + 7) // 8
            self.kinds[m], self.dtypes[m] = "activation", "uint8"
            self.masks[y] = (m, int(op.attrs["act_min"]), int(op.attrs["act_max"]))
            self.writes[p].append(m)
            self.reads[k] = [m if t == y else t for t in self.reads[k]]

    # ------------------------------------------------------------------ sharing bytes
    def owner(self, t: str) -> str:
        while self.root.get(t, t) != t:
            t = self.root[t]
        return t

    def arena_tensor(self, t: str) -> bool:
        return (self.kinds[t] not in ("parameter", "state", "constant") and t not in self.virtual
                and t not in self.channel and t not in self.crop and t not in self.windows)

    def group_last(self, r: str, last_read: Dict[str, int], first_write: Dict[str, int]) -> int:
        return max(self.n - 1 if m in self.outputs else last_read.get(m, first_write.get(m, 0))
                   for m in self.members.get(r, [r]))

    def group_bytes(self, r: str) -> int:
        return max(self.nbytes[m] for m in self.members.get(r, [r]))

    def join(self, out: str, r: str) -> None:
        self.root[out] = r
        self.members.setdefault(r, [r]).append(out)

    def share(self, inplace: bool) -> None:
        last_read: Dict[str, int] = {}
        for k, reads in enumerate(self.reads):
            for t in reads:
                last_read[t] = k
        first_write: Dict[str, int] = {}
        for k, writes in enumerate(self.writes):
            for t in writes:
                first_write.setdefault(t, k)
        for k in range(self.n):
            op = self.op(k)
            if inplace and self.modes[k] == "band":
                self._band_in_place(k, last_read, first_write)
            if self.modes[k] != "normal" or self.steps[k].part or not self.writes[k]:
                continue
            out = self.writes[k][0]
            if op.type in ALIAS_OPS:
                src = op.inputs[0]
                if inplace and self.arena_tensor(src) and self.arena_tensor(out):
                    self.join(out, self.owner(src))
                    self.modes[k], self.inplace_input[k] = "alias", src
                continue
            if not inplace or out in self.outputs or not self.arena_tensor(out):
                continue
            if op.phase == "forward" and self._saved(out, last_read):
                # a saved activation lives through the backward: sharing its offset with a large
                # short-lived forward buffer would pin that buffer high in the arena
                continue
            rule = self._in_place_rule(k)
            if rule is None:
                continue
            positions, layout = rule
            for pos in positions:
                src = self.resolve(op.inputs[pos]) if pos < len(op.inputs) else None
                if src is None or src not in self.reads[k] or not self.arena_tensor(src):
                    continue
                r = self.owner(src)
                if self.group_last(r, last_read, first_write) != k:
                    continue
                if layout in ("elementwise", "crop") and (self.nbytes[out] > self.group_bytes(r)
                                                           or self.dtypes[src] != self.dtypes[out]):
                    continue
                self.join(out, r)
                self.modes[k], self.inplace_input[k] = "in_place", src
                self.layouts[k] = self._layout_order(k, layout, src, out)
                self.scratch[k] += self._in_place_scratch(layout, src, out) * (
                    depthwise_group_channels(self.tg.tensors[src].shape)
                    if op.type == "DEPTHWISE_CONV_2D" and op.phase == "forward" else 1)
                break

    def _band_in_place(self, k: int, last_read: Dict[str, int], first_write: Dict[str, int]) -> None:
        """At a band chain's last step ``k``: write the chain's output over its input's buffer
        (same offset) when the input has no reader after the chain and the bands never
        overwrite an input row before its last read at that offset (``bands.in_place_gap``
        <= 0: the output may start at the input's first byte)."""
        chain = [i for i, (_, last, _) in enumerate(self.bands) if last == k]
        if not chain or k in self.no_inplace:
            return
        first, _, rows = self.bands[chain[0]]
        geoms = self.band_geometry[chain[0]][0]
        src = self.resolve(self.op(first).inputs[0])
        out = self.op(k).outputs[0]
        if (not self.arena_tensor(src) or not self.arena_tensor(out) or out in self.outputs or src in self.outputs
                or self.group_last(self.owner(src), last_read, first_write) != k):
            return
        x, y = self.tg.tensors[src], self.tg.tensors[out]
        in_row = int(x.shape[2] * x.shape[3] * np.dtype(self.dtypes[src]).itemsize)
        out_row = int(y.shape[2] * y.shape[3] * np.dtype(self.dtypes[out]).itemsize)
        gap = in_place_gap(geoms, rows, in_row, out_row)
        if gap is not None and gap > 0:  # the output would have to start below the input: not planned
            return
        self.join(out, self.owner(src))
        self.inplace_input[k] = src

    def _saved(self, t: str, last_read: Dict[str, int]) -> bool:
        k = last_read.get(t)
        return k is not None and self.op(k).phase in ("backward", "update")

    def _in_place_rule(self, k: int):
        if k in self.no_inplace:
            return None
        op = self.op(k)
        rule = IN_PLACE.get(op.type)
        if rule is None:
            return None
        if op.type in ("ADD", "DEPTHWISE_CONV_2D", "CONV_2D") and op.phase != "forward":
            return None
        if op.type.startswith("DEPTHWISE") and int(op.attrs.get("depth_multiplier", 1)) != 1:
            return None
        if rule[1] == "pixel|row":
            if _is_1x1(self.tg, op):
                return rule[0], "pixel"
            return (rule[0], "row") if self.row_order(k) else None
        if rule[1] == "pixel" and not _is_1x1(self.tg, op):
            return None
        return rule

    def row_order(self, k: int) -> Optional[str]:
        """"descending" / "ascending" if a forward CONV_2D can write its output rows over its
        input buffer (one output row computed into scratch, then stored) without clobbering
        an input row a later output row still reads; None if neither order is safe."""
        op = self.op(k)
        src = self.resolve(op.inputs[0])
        x, y = self.tg.tensors[src], self.tg.tensors[op.outputs[0]]
        if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[0] != 1:
            return None
        h, ho = x.shape[1], y.shape[1]
        kh = self.tg.tensors[op.inputs[1]].shape[1]
        s, dil = op.attrs.get("stride_h", 1), op.attrs.get("dilation_h", 1)
        if op.inputs[0] in self.virtual:
            pt = self.virtual[op.inputs[0]][1][0]
        elif op.attrs.get("padding") == "SAME":
            pt = max((ho - 1) * s + (kh - 1) * dil + 1 - h, 0) // 2
        else:
            pt = 0
        row_in = x.shape[2] * x.shape[3] * np.dtype(x.dtype).itemsize
        row_out = y.shape[2] * y.shape[3] * np.dtype(y.dtype).itemsize

        def top_row(r: int) -> int:  # last input row output row r reads
            return min(h - 1, r * s - pt + (kh - 1) * dil)

        def bottom_row(r: int) -> int:  # first input row output row r reads
            return max(0, r * s - pt)

        if all(r * row_out >= (top_row(r - 1) + 1) * row_in for r in range(1, ho)):
            return "descending"
        if all((r + 1) * row_out <= bottom_row(r + 1) * row_in for r in range(0, ho - 1)):
            return "ascending"
        return None

    def _layout_order(self, k: int, layout: str, src: str, out: str) -> str:
        """The layout rule with the traversal order the runtime must use."""
        if layout == "row":
            return "row_" + self.row_order(k)
        if layout == "pixel":
            x, y = self.tg.tensors[src], self.tg.tensors[out]
            px_in = x.shape[-1] * np.dtype(x.dtype).itemsize
            px_out = y.shape[-1] * np.dtype(y.dtype).itemsize
            return "pixel_ascending" if px_out <= px_in else "pixel_descending"
        if layout == "crop":
            return "crop_ascending"
        return layout

    def _in_place_scratch(self, layout: str, src: str, out: str) -> int:
        if layout == "channel":  # one channel of the input
            t = self.tg.tensors[src]
            return int(t.shape[1] * t.shape[2] * np.dtype(t.dtype).itemsize)
        if layout == "pixel":  # one pixel of the output
            t = self.tg.tensors[out]
            return int(t.shape[-1] * np.dtype(t.dtype).itemsize)
        if layout == "row":  # one row of the output
            t = self.tg.tensors[out]
            return int(t.shape[2] * t.shape[3] * np.dtype(t.dtype).itemsize)
        return 0

    # ------------------------------------------------------------------ trained channels only
    def sparse_parameters(self) -> None:
        """A weight whose update trains a subset of channels keeps only those channels in
        SRAM; the frozen channels are read from the model in flash."""
        for k in range(self.n):
            op = self.op(k)
            if op.type not in SPLIT_UPDATES or self.steps[k].part == "grad":
                continue
            w = op.inputs[2]
            t = self.tg.tensors[w]
            axis = SPLIT_UPDATES[op.type]
            channels = [int(c) for c in op.attrs.get("channels", [])]
            if self.kinds.get(w) != "parameter" or not channels or len(channels) >= t.shape[axis] or w in self.split:
                continue
            self.split[w] = (axis, channels)
            self.nbytes[w] = t.nbytes // t.shape[axis] * len(channels)

    # ------------------------------------------------------------------ result
    def result(self) -> StorageDecisions:
        written = {t for w in self.writes for t in w}
        read = {t for r in self.reads for t in r}
        storage: Dict[str, str] = {}
        for t in self.nbytes:
            if t in self.virtual:
                storage[t] = "virtual_pad"
            elif t in self.crop:
                storage[t] = "virtual_crop"
            elif t in self.channel:
                storage[t] = "channel"
            elif t in self.windows:
                storage[t] = "band"
            elif self.kinds[t] == "constant":
                storage[t] = "flash"
            elif self.kinds[t] in ("parameter", "state"):
                storage[t] = "persistent"
            elif t in written or t in read or t in self.tg.inputs:
                storage[t] = "arena"
            else:
                storage[t] = "none"
        roots = {t: self.owner(t) for t, st in storage.items() if st in ("arena", "band")}
        return StorageDecisions(self.modes, self.inplace_input, self.scratch, storage, roots, self.virtual, self.crop,
                                self.masks, [tuple(r) for r in self.reads], [tuple(w) for w in self.writes],
                                self.nbytes, self.kinds, self.extra, self.layouts, self.split, self.scratch_step,
                                self.bands, self.band_geometry, self.streamed)


def _decider(tg, steps: Sequence[Step], extra: Dict[str, int], fuse: bool, sparse_params: bool) -> _Decider:
    d = _Decider(tg, steps, extra)
    if sparse_params:
        d.sparse_parameters()
    if fuse:
        d.virtual_pads()
        d.virtual_crops()
    return d


def band_candidates(tg, steps: Sequence[Step], extra: Dict[str, int], fuse: bool = True,
                    sparse_params: bool = True) -> List[Tuple[int, int]]:
    """Runs of steps ``(first, last)`` that may run as band chains (``_Decider.band_candidates``)."""
    return _decider(tg, steps, extra, fuse, sparse_params).band_candidates()


def decide(tg, steps: Sequence[Step], extra: Dict[str, int], fuse: bool = True, inplace: bool = True,
           masks: bool = True, sparse_params: bool = True, no_inplace: Sequence[int] = (),
           bands: Sequence[Tuple[int, int, int]] = (), stream_input: bool = False) -> StorageDecisions:
    """Storage decisions for ``steps``; ``no_inplace``: steps that must not run in place;
    ``bands``: chains ``(first step, last step, band rows)`` that run in bands;
    ``stream_input``: the image arrives in rows where a chain's op 0 alone reads it."""
    d = _decider(tg, steps, extra, fuse, sparse_params)
    d.no_inplace = set(no_inplace)
    d.band_chains(bands)
    if stream_input:
        d.stream_input()
    if fuse:
        d.channel_fusions()
    if masks:
        d.bitmasks()
    d.share(inplace)
    d.requantization_tables()
    return d.result()
