"""Sparse-update scheme search under a memory budget (the planner is the only cost model).

The method is the paper's ("On-Device Training Under 256KB Memory", section 2.3): the
*contribution* of each candidate alone is measured on the user's data (the accuracy gain,
over training the classifier alone, of the biases of the last ``k`` conv layers and of one
layer's weights at a ratio ``r`` of its channels; ``tflm_train.keras.contribution``), the
contributions are taken as additive, and the scheme of largest summed contribution whose
training step fits the SRAM budget and whose training file fits the flash budget is chosen.

Cost: the planner's planned peak of the training step, everything included
(``tflm_train.plan``), and the size of the exported training file
(``tflm_train.export`` to memory). Nothing here estimates memory on its own.

Search: multiple-choice knapsack plus local refinement, not an evolutionary search, because
(a) the objective is additive by the method's own assumption, so a knapsack solves it
exactly for additive costs; (b) the planned peak is a maximum over time and not additive,
but for a fixed bias depth ``k`` (which fixes how deep the backward reaches) it is close to
additive in the weights added (their SRAM copies are persistent), so each weight option's
cost is its *marginal* planned peak over the bias-only scheme of depth ``k``; (c) every
cost is a planner call (tens of milliseconds quick, about half a second exact on a seed
model), and a knapsack needs ``O(depths x layers x ratios)`` of them where an evolutionary
search needs thousands. The knapsack's pick is then refined against the planner itself:
options are dropped (lowest gain per byte first) until the quick plan fits, then upgrades are
added greedily while the plan still fits, and the final scheme is checked with the exact plan
and the exported file's size.

Verification: the additive sum is the method's approximation, and it fails where candidates
overlap (each alone mostly buys the same thing: a better fit of the new head's features), so
the knapsack is allowed to propose and measurement decides: with a ``measure`` (a short run
of the contribution analysis on the proposed scheme itself, cached like the others), the
picks of the bias depths are split into ``verify_top`` bands of depth, the best pick of each
band is measured on the held-out images, and so are two simple schemes that need no
analysis (``simple_proposals``: the deepest bias-only scheme that fits and the data-free
rule), and the best measured one is chosen. This costs ``verify_top + 2`` more measurements.
(The sum overestimates overlapping weight options: on MCUNet-5FPS /
Fashion-MNIST, seven layers' options each gained 2-6 points alone, so the sum favours
packing them in at a shallow bias depth; the bands let deep-bias schemes compete too.)

``default_scheme`` is the data-free rule ``SparseUpdate()`` uses (see its docstring).
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..graph import GraphError, QuantGraph
from .scheme import SparseScheme

#: The SRAM of the target MCU (KB = 1024 bytes).
SRAM_KB = 256
#: SRAM left to the application by default: its own stack, sensor / I/O buffers and
#: globals. The firmware of ``tflm-train mcu-run`` needs 3.5 KB of stack plus the runtime
#: state the planner already counts; 32 KB leaves room for a camera line buffer or an audio
#: frame besides.
APP_RESERVE_KB = 32
DEFAULT_BUDGET_KB = SRAM_KB - APP_RESERVE_KB
#: The flash of the target MCU, and what the firmware code and the application take of it
#: (the ``mcu-run`` firmware's code and data are about 84 KB; 96 KB leaves a margin).
FLASH_KB = 1024
FIRMWARE_RESERVE_KB = 96
DEFAULT_FLASH_KB = FLASH_KB - FIRMWARE_RESERVE_KB
#: Channel ratios the contribution analysis measures for a layer's weights (0 = frozen).
DEFAULT_RATIOS = (0.125, 0.25, 0.5, 1.0)


@dataclass
class Contributions:
    """Gains over training the classifier alone, in the analysis' ``metric``: ``"accuracy"``
    (fractions, 0.012 = 1.2 points) or ``"loss"`` (decrease of the held-out cross-entropy).

    ``baseline_accuracy``: held-out accuracy of the classifier alone. ``bias``: bias depth k -> gain of the biases of the last k conv layers (classifier counts);
    ``weight``: (conv index, ratio) -> gain of that layer's weights at that channel ratio.
    """

    baseline_accuracy: float
    bias: Dict[int, float] = field(default_factory=dict)
    weight: Dict[Tuple[int, float], float] = field(default_factory=dict)
    metric: str = "accuracy"

    def gain(self, scheme: SparseScheme) -> float:
        """The predicted gain of ``scheme``: the method's additive sum over what it trains."""
        return (self.bias_gain(scheme.n_bias_update)
                + sum(self.weight.get((k, r), 0.0) for k, r in scheme.weight_update.items() if r > 0))

    def bias_gain(self, depth: int) -> float:
        """Gain of bias depth ``depth``: the measured one at or below it (depth 1 = classifier = 0)."""
        below = [d for d in self.bias if d <= depth]
        return self.bias[max(below)] if below else 0.0


def cache_root() -> Path:
    """Where searches keep what they measured and planned: ``$TFLM_TRAIN_CACHE`` or ``~/.cache/tflm_train``."""
    return Path(os.environ.get("TFLM_TRAIN_CACHE", Path.home() / ".cache" / "tflm_train"))


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the package's Python sources: a planned number depends on the compiler, the
    planner and the exporter, so a cached one counts only for the code that computed it."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class CostModel:
    """Planner-backed costs of schemes of one graph, memoized (a search asks for many).

    With ``path`` (``CostModel.cached``) the memo also lives on disk (``load`` / ``save``), keyed
    by the model's bytes, the head and ``code_fingerprint()``: a search with a warm cache, or
    for another budget of the same model, plans nothing it has planned before (the planner is
    most of a warm search's time: on MbV2-w0.35 at 48x48, 0.45 s a quick plan, 2.1 s an exact
    one, 2.8 s an export, 150-160 of them per search)."""

    graph: QuantGraph
    num_classes: int = 10
    head: str = "float"
    path: Optional[Path] = None
    _quick: Dict[tuple, int] = field(default_factory=dict, repr=False)
    _exact: Dict[tuple, int] = field(default_factory=dict, repr=False)
    _flash: Dict[tuple, int] = field(default_factory=dict, repr=False)

    @classmethod
    def cached(cls, graph: QuantGraph, num_classes: int = 10, head: str = "float") -> "CostModel":
        """A cost model whose memo is read from, and ``save``d to, the plan cache."""
        h = hashlib.sha256(graph.to_tflite())
        h.update(json.dumps({"num_classes": int(num_classes), "head": head, "code": code_fingerprint()}).encode())
        model = cls(graph, int(num_classes), head, path=cache_root() / "plans" / f"{h.hexdigest()[:32]}.json")
        model.load()
        return model

    _MEMOS = ("quick", "exact", "flash")

    def load(self) -> None:
        """Read the memo from ``path`` (absent: nothing to read; unreadable: ignored, rebuilt on ``save``)."""
        if self.path is None or not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text())
            memos = {name: {(int(n), tuple((int(k), float(r)) for k, r in weights), str(sel)): int(v)
                            for (n, weights, sel), v in data[name]} for name in self._MEMOS}
        except (ValueError, KeyError, TypeError):
            return  # an unreadable cache file is rebuilt, never trusted
        for name, memo in memos.items():
            getattr(self, f"_{name}").update(memo)

    def save(self) -> None:
        """Write the memo to ``path`` (atomically: a reader never sees half a file)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {name: [[[k[0], [list(w) for w in k[1]], k[2]], v] for k, v in getattr(self, f"_{name}").items()]
                for name in self._MEMOS}
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"model": self.graph.name, **data}))
        os.replace(tmp, self.path)

    @staticmethod
    def key(scheme: SparseScheme) -> tuple:
        return (scheme.n_bias_update, tuple((k, r) for k, r in scheme.weight_update.items() if r > 0),
                scheme.channel_selection)

    def quick_peak(self, scheme: SparseScheme) -> int:
        """``plan_peak``: the planner's quick plan, an upper bound on the exact peak."""
        from ..planner.plan import plan_peak

        k = self.key(scheme)
        if k not in self._quick:
            self._quick[k] = plan_peak(self.graph, scheme, num_classes=self.num_classes, head=self.head)
        return self._quick[k]

    def exact_peak(self, scheme: SparseScheme) -> int:
        """``tflm_train.plan(...).peak_bytes``: what ``plan`` reports and ``export`` writes."""
        from ..planner.plan import plan

        k = self.key(scheme)
        if k not in self._exact:
            self._exact[k] = plan(self.graph, scheme, num_classes=self.num_classes, head=self.head).peak_bytes
        return self._exact[k]

    def flash_bytes(self, scheme: SparseScheme) -> int:
        """Size of the exported training ``.tflite`` (exported to memory)."""
        from ..io.train_export import export

        k = self.key(scheme)
        if k not in self._flash:
            r = export(self.graph, scheme, None, num_classes=self.num_classes, head=self.head)
            self._flash[k] = r.nbytes
            self._exact.setdefault(k, r.plan.peak_bytes)
        return self._flash[k]


# --------------------------------------------------------------------------- candidates
def conv_count(graph: QuantGraph) -> int:
    return len(graph.conv_op_indices())


def is_depthwise(graph: QuantGraph, conv_index: int) -> bool:
    return graph.ops[graph.conv_op_indices()[conv_index]].type == "DEPTHWISE_CONV_2D"


def is_expanding_pointwise(graph: QuantGraph, conv_index: int) -> bool:
    """A 1x1 CONV_2D with more output than input channels: an inverted-residual block's first
    pointwise conv (the layer the published schemes update)."""
    op = graph.ops[graph.conv_op_indices()[conv_index]]
    if op.type != "CONV_2D":
        return False
    o, kh, kw, i = graph.tensors[op.inputs[1]].shape
    return kh == 1 and kw == 1 and o > i


def minimum_scheme(graph: QuantGraph) -> SparseScheme:
    """The smallest scheme there is: the classifier alone (a new task always trains it)."""
    return SparseScheme(1, {}, name="classifier-only")


def check_budget(cost: CostModel, budget_bytes: int) -> int:
    """The smallest feasible scheme's exact planned peak; GraphError naming it if over budget."""
    smallest = cost.exact_peak(minimum_scheme(cost.graph))
    if smallest > budget_bytes:
        raise GraphError(f"{cost.graph.name}: budget {budget_bytes / 1024:.1f} KB is below the smallest feasible "
                         f"scheme (classifier only): planned peak {smallest / 1024:.1f} KB ({smallest:,} bytes)")
    return smallest


def feasible_bias_depths(cost: CostModel, budget_bytes: int) -> List[int]:
    """Bias depths k (1..n) whose bias-only scheme's quick plan fits the budget: 1..k_max, found
    by bisection (the planned peak grows with the depth: a deeper backward keeps more), which
    takes ~6 planner calls where a scan takes one per conv layer (a planner call is 0.1-1 s on
    a seed model)."""
    n = conv_count(cost.graph)
    if cost.quick_peak(SparseScheme(1, {})) > budget_bytes:
        return []
    lo, hi = 1, n + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost.quick_peak(SparseScheme(mid, {})) <= budget_bytes else (lo, mid)
    return list(range(1, lo + 1))


def analysis_candidates(cost: CostModel, budget_bytes: int, ratios: Sequence[float] = DEFAULT_RATIOS,
                        bias_points: int = 6, max_weight_layers: int = 16, depthwise: bool = False,
                        expanding_only: bool = False):
    """What a contribution analysis measures under ``budget_bytes``: (bias depths, weight layers).

    Bias depths: ``bias_points`` depths spread evenly over the feasible ones (the deepest
    feasible included). Weight layers: non-classifier conv layers whose weights alone, at the
    smallest ratio, fit the budget (quick plan), the last ``max_weight_layers`` of them;
    depthwise layers only with ``depthwise=True`` (their few weights contribute little in the
    paper's analysis and the published schemes never update them); with ``expanding_only``,
    only expanding pointwise convs (an inverted-residual block's first 1x1 conv, the layer the
    paper finds contributes most and the published MCUNet schemes update), which halves the
    runs for the same reach into the network.
    """
    n = conv_count(cost.graph)
    depths = [k for k in feasible_bias_depths(cost, budget_bytes) if k >= 2]
    if len(depths) > bias_points:
        step = (len(depths) - 1) / max(1, bias_points - 1)
        depths = sorted({depths[round(i * step)] for i in range(bias_points)})
    r_min = min(ratios)
    layers = []
    for i in range(n - 2, -1, -1):
        if not depthwise and is_depthwise(cost.graph, i):
            continue
        if expanding_only and not is_expanding_pointwise(cost.graph, i):
            continue
        if cost.quick_peak(SparseScheme(1, {i: r_min})) <= budget_bytes:
            layers.append(i)
        if len(layers) >= max_weight_layers:
            break
    return depths, sorted(layers)


# --------------------------------------------------------------------------- the search
@dataclass
class SearchResult:
    scheme: SparseScheme
    planned_peak_bytes: int
    flash_bytes: int
    predicted_gain: float
    budget_bytes: int
    flash_budget_bytes: int
    #: per bias depth tried: (depth, predicted gain, quick peak) of its refined pick
    per_depth: List[Tuple[int, float, int]] = field(default_factory=list)
    planner_calls: int = 0
    #: with a ``measure``: (proposed scheme, its measured score), the chosen one among them
    proposals: List[Tuple[SparseScheme, float]] = field(default_factory=list)

    def rows(self, graph: QuantGraph) -> List[Tuple[str, str, str]]:
        """(layer, what trains, ratio) rows for a table."""
        conv_ops = graph.conv_op_indices()
        n = len(conv_ops)
        out = [(f"last {self.scheme.n_bias_update} conv layers (conv {n - self.scheme.n_bias_update}..{n - 1})",
                "biases", "")]
        for k, r in self.scheme.weight_update.items():
            if r > 0:
                op = graph.ops[conv_ops[k]]
                out.append((f"conv {k} {op.type} {op.name}", "weights", f"{r:g}"))
        out.append((f"conv {n - 1} classifier", "weights + bias", "1"))
        return out


def _knapsack(options: Dict[int, List[Tuple[float, float, int]]], capacity: int) -> Dict[int, float]:
    """Multiple-choice knapsack: at most one (ratio, gain, cost) per layer, summed cost within
    ``capacity`` bytes, largest summed gain. Costs are rounded up to a unit so the table stays
    small (at most 1024 cells); rounding up keeps the pick within capacity."""
    if capacity <= 0 or not options:
        return {}
    unit = max(16, math.ceil(capacity / 1024))
    cells = capacity // unit
    best = [0.0] * (cells + 1)
    choice: List[Dict[int, float]] = [dict() for _ in range(cells + 1)]
    for layer, opts in options.items():
        new_best, new_choice = list(best), list(choice)
        for ratio, gain, cost in opts:
            c = math.ceil(cost / unit)
            for cap in range(c, cells + 1):
                g = best[cap - c] + gain
                if g > new_best[cap] + 1e-12:
                    new_best[cap] = g
                    new_choice[cap] = {**choice[cap - c], layer: ratio}
        best, choice = new_best, new_choice
    return choice[max(range(cells + 1), key=lambda c: (best[c], -c))]


def _weight_options(contrib: Contributions) -> Dict[int, List[Tuple[float, float]]]:
    """layer -> [(ratio, gain)] with a positive gain, ascending ratio."""
    out: Dict[int, List[Tuple[float, float]]] = {}
    for (layer, ratio), gain in sorted(contrib.weight.items()):
        if ratio > 0 and gain > 0:
            out.setdefault(layer, []).append((ratio, gain))
    return out


def _refine(cost: CostModel, contrib: Contributions, depth: int, picked: Dict[int, float],
            options: Dict[int, List[Tuple[float, float]]], marginal: Dict[Tuple[int, float], int],
            budget_bytes: int, peak: Callable[[SparseScheme], int]) -> Tuple[Dict[int, float], int]:
    """Make ``picked`` fit under ``peak`` (drop lowest gain per byte first), then add the best
    single upgrades while it still fits."""
    picked = dict(picked)

    def scheme_of(p):
        return SparseScheme(depth, p)

    current = peak(scheme_of(picked))
    while current > budget_bytes and picked:
        worst = min(picked, key=lambda l: contrib.weight[(l, picked[l])] / max(1, marginal[(l, picked[l])]))
        lower = [r for r, _ in options[worst] if r < picked[worst]]
        if lower:
            picked[worst] = lower[-1]
        else:
            del picked[worst]
        current = peak(scheme_of(picked))
    improved = True
    while improved:
        improved = False
        ups = []
        for layer, opts in options.items():
            have = contrib.weight.get((layer, picked[layer]), 0.0) if layer in picked else 0.0
            for r, g in opts:
                if g > have + 1e-12 and (layer not in picked or r > picked[layer]):
                    ups.append((g - have, layer, r))
        for _, layer, r in sorted(ups, reverse=True):
            trial = {**picked, layer: r}
            p = peak(scheme_of(trial))
            if p <= budget_bytes:
                picked, current, improved = trial, p, True
                break
    return picked, current


def search(graph: QuantGraph, contrib: Contributions, budget_bytes: int, flash_budget_bytes: Optional[int] = None,
           *, num_classes: int = 10, head: str = "float", cost: Optional[CostModel] = None,
           progress: Optional[Callable[[str], None]] = None,
           measure: Optional[Callable[[SparseScheme], float]] = None, verify_top: int = 4) -> SearchResult:
    """The scheme of largest predicted gain within ``budget_bytes`` (exact planned peak) and
    ``flash_budget_bytes`` (training-file size); see the module docstring for the algorithm.

    ``measure``: when given (a short fine-tuning run scored on held-out data, larger is better),
    the best pick of each of ``verify_top`` bands of bias depths is made to fit the exact plan
    and the flash budget and measured, with the ``simple_proposals``, and the best measured
    one is chosen:
    the sum of contributions is an approximation (candidates trained together do not add up),
    and this step checks it on the schemes it actually proposes."""
    cost = cost or CostModel(graph, num_classes, head)
    flash_budget_bytes = DEFAULT_FLASH_KB * 1024 if flash_budget_bytes is None else int(flash_budget_bytes)
    check_budget(cost, budget_bytes)
    options = _weight_options(contrib)
    depths = sorted({1, *contrib.bias})
    picks, per_depth = [], []
    for depth in depths:
        if progress:
            progress(f"bias depth {depth}")
        base_scheme = SparseScheme(depth, {})
        base = cost.quick_peak(base_scheme)
        if base > budget_bytes:
            continue
        marginal, priced = {}, {}
        for layer, opts in options.items():
            for r, g in opts:
                extra = cost.quick_peak(SparseScheme(depth, {layer: r})) - base
                if base + extra <= budget_bytes:
                    marginal[(layer, r)] = max(0, extra)
                    priced.setdefault(layer, []).append((r, g, max(0, extra)))
        picked = _knapsack(priced, budget_bytes - base)
        feasible = {l: [(r, g) for r, g, _ in opts] for l, opts in priced.items()}
        picked, quick = _refine(cost, contrib, depth, picked, feasible, marginal, budget_bytes, cost.quick_peak)
        gain = contrib.bias_gain(depth) + sum(contrib.weight[(l, r)] for l, r in picked.items())
        per_depth.append((depth, gain, quick))
        picks.append((gain, -quick, depth, picked, feasible, marginal))
    if not picks:  # only the exact plan of the classifier alone fits (the quick one is an upper bound)
        picks = [(0.0, -budget_bytes, 1, {}, {}, {})]
    picks.sort(key=lambda p: (p[0], p[1]), reverse=True)
    if progress:
        progress("exact plan")

    def finalize(pick):
        _, _, depth, picked, feasible, marginal = pick
        # the quick plan is an upper bound: with the exact one, more upgrades may fit
        picked, _ = _refine(cost, contrib, depth, picked, feasible, marginal, budget_bytes, cost.exact_peak)
        return _fit_flash(cost, contrib, SparseScheme(depth, picked, name="searched"), flash_budget_bytes)

    proposals = []
    candidates = [finalize(pick) for pick in (_spread(picks, verify_top) if measure is not None else picks[:1])]
    if measure is not None:
        candidates += [_fit_flash(cost, contrib, s, flash_budget_bytes) for s in simple_proposals(cost, budget_bytes)]
    for scheme in candidates:
        if all(CostModel.key(scheme) != CostModel.key(p) for p in proposals):
            proposals.append(scheme)
    measured = []
    if measure is not None:
        for scheme in proposals:
            measured.append(measure(scheme))
            if progress:
                progress(f"measured bias {scheme.n_bias_update} + {len(scheme.weight_update)} weights")
        # the best measured; on a tie the smaller planned peak
        best = max(range(len(proposals)), key=lambda i: (measured[i], -cost.exact_peak(proposals[i])))
    else:
        best = 0
    scheme = proposals[best]
    if progress:
        progress("flash")
    return SearchResult(scheme, cost.exact_peak(scheme), cost.flash_bytes(scheme), contrib.gain(scheme),
                        int(budget_bytes), flash_budget_bytes, per_depth,
                        len(cost._quick) + len(cost._exact) + len(cost._flash),
                        proposals=[(p, m) for p, m in zip(proposals, measured)] if measured else [])


def _spread(picks: list, count: int) -> list:
    """The best pick (largest predicted gain) of each of ``count`` bands of bias depths, best first.

    Not simply the ``count`` best: single candidates' gains overlap (each alone mostly buys
    a better fit of the new head's features), so the sum favours packing in many weight
    options at a shallow bias depth; measuring the best of each band of depths lets deep-bias
    schemes with fewer weights compete on what they do rather than on the sum."""
    count = max(1, count)
    by_depth = sorted(picks, key=lambda p: p[2])
    bands = [by_depth[i * len(by_depth) // count:(i + 1) * len(by_depth) // count] for i in range(count)]
    best = [max(band, key=lambda p: (p[0], p[1])) for band in bands if band]
    return sorted(best, key=lambda p: (p[0], p[1]), reverse=True)


def _fit_flash(cost: CostModel, contrib: Contributions, scheme: SparseScheme, flash_budget_bytes: int) -> SparseScheme:
    """Drop the weight option of lowest gain until the training file fits the flash budget."""
    flash = cost.flash_bytes(scheme)
    while flash > flash_budget_bytes and (scheme.weight_update or scheme.n_bias_update > 1):
        if scheme.weight_update:
            worst = min(scheme.weight_update, key=lambda l: contrib.weight.get((l, scheme.weight_update[l]), 0.0))
            picked = {l: r for l, r in scheme.weight_update.items() if l != worst}
            scheme = SparseScheme(scheme.n_bias_update, picked, name="searched")
        else:
            scheme = SparseScheme(1, {}, name="searched")
        flash = cost.flash_bytes(scheme)
    if flash > flash_budget_bytes:
        raise GraphError(f"{cost.graph.name}: flash budget {flash_budget_bytes / 1024:.1f} KB is below the smallest "
                         f"training file (classifier only): {flash / 1024:.1f} KB ({flash:,} bytes)")
    return scheme


# --------------------------------------------------------------------------- the data-free default
DEFAULT_RULE_RATIO = 0.5


def default_scheme(graph: QuantGraph, budget_kb: float = DEFAULT_BUDGET_KB, *, num_classes: int = 10,
                   head: str = "float", cost: Optional[CostModel] = None) -> SparseScheme:
    """The scheme ``SparseUpdate()`` trains when no scheme (and no data) is given.

    Rule: the biases of the last ``k`` conv layers, plus half of the input channels
    (largest magnitude) of every expanding pointwise conv (an inverted-residual block's first
    1x1 conv) among them, with ``k`` the deepest whose exact planned peak fits ``budget_kb``
    (found by bisection: the rule's peak grows with ``k``). Its form is the published schemes' (biases of the last ~20 layers plus
    part of the first pointwise conv of late blocks) and what our contribution analyses
    rank first (benchmarks/scheme_search.py); the budget alone chooses ``k``. Raises
    GraphError naming the minimum if even the classifier alone does not fit.
    """
    cost = cost or CostModel(graph, num_classes, head)
    budget = int(budget_kb * 1024)
    check_budget(cost, budget)
    n = conv_count(graph)

    def rule(k):
        return SparseScheme(k, {i: DEFAULT_RULE_RATIO for i in range(n - k, n - 1) if is_expanding_pointwise(graph, i)},
                            name=f"default-{budget_kb:g}kb")

    return deepest_fitting(cost, budget, rule)


def deepest_fitting(cost: CostModel, budget_bytes: int, rule: Callable[[int], SparseScheme]) -> SparseScheme:
    """``rule(k)`` for the deepest ``k`` (1..n) whose exact planned peak fits ``budget_bytes``
    (``rule(1)`` is assumed to fit: ``check_budget``). The rule's planned peak grows with ``k``
    (a deeper backward keeps more), so this bisects: first with the quick plan, an upper
    bound, then deeper with the exact one."""
    n = conv_count(cost.graph)
    k, hi = 1, n + 1
    while hi - k > 1:
        mid = (k + hi) // 2
        k, hi = (mid, hi) if cost.quick_peak(rule(mid)) <= budget_bytes else (k, mid)
    hi = n + 1
    while hi - k > 1:
        mid = (k + hi) // 2
        k, hi = (mid, hi) if cost.exact_peak(rule(mid)) <= budget_bytes else (k, mid)
    return rule(k)


def simple_proposals(cost: CostModel, budget_bytes: int) -> List[SparseScheme]:
    """Schemes that ``search`` measures besides the knapsack's picks: the deepest bias-only
    scheme that fits, and the data-free rule (``default_scheme``) at the budget.

    Why: the knapsack ranks by the sum of single candidates' gains from short runs, and
    short runs favour weights (they move the features fast) over deep biases (which pay off
    later): on MCUNet-5FPS / MNIST at the 49kb scheme's 53.1 KB the picks (2 bias layers
    plus six 1/4 pointwise convs) reached 81.9 % after 100 steps where the bias-only
    scheme of depth 31 reached 84.1 % (benchmarks/scheme_search.py, first version). With
    these among the measured proposals, the search is never worse, on its own held-out
    measurement, than these two strong simple schemes."""
    bias_only = deepest_fitting(cost, budget_bytes, lambda k: SparseScheme(k, {}, name="searched"))
    rule = default_scheme(cost.graph, budget_bytes / 1024, num_classes=cost.num_classes, head=cost.head, cost=cost)
    rule = SparseScheme(rule.n_bias_update, dict(rule.weight_update), name="searched")
    return [bias_only, rule]
