"""``tflm_train.search_scheme`` and ``tflm-train search``: a sparse-update scheme searched on the
user's data under an SRAM and a flash budget.

Pipeline: the data (an ``.npz`` with ``x`` / ``y``, or a folder with one sub-folder of images
per class) is resized and quantized to the model's int8 input; the candidates the budget
allows are measured by the contribution analysis (``tflm_train.keras.contribution``, cached
on disk); the knapsack + refinement search (``tflm_train.training.search``) picks the scheme,
whose planned peak and training-file size come from the planner and the exporter (memoized
on disk per model, head and package source, ``CostModel.cached``, so a warm search plans only
what it has not planned before).

Data rules: uint8 images are pixels 0..255; float images are pixels 0..255, or 0..1 when no
value exceeds 1 (scaled by 255); int8 images are taken as the model's int8 input as they are
(they must have its shape). Pixels map linearly onto the real range the model's int8 input
covers (``s * (q - zp)`` for q = -128..127: 0..1 for the bundled backbone, -1..1 for the seed
models), as ``tflm_train.datasets.to_int8_input`` quantizes. Grey images are replicated to
the model's channels; images are resized bilinearly to its input size.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .graph import GraphError, QuantGraph

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- data
def load_data(path: str) -> Tuple[np.ndarray, np.ndarray, Optional[list]]:
    """(images, labels, class names or None) from an ``.npz`` (``x``, ``y``) or a class-folder tree."""
    p = Path(path)
    if p.is_dir():
        return _load_folder(p)
    if not p.is_file():
        raise GraphError(f"data {path}: no such file or folder")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise GraphError(f"data {path}: the .npz has no {' / '.join(missing)} array (it has {sorted(z.files)}); "
                                 f"expected x (N x H x W x C images) and y (N integer labels)")
            return np.asarray(z["x"]), np.asarray(z["y"]), None
    except (OSError, ValueError) as e:
        raise GraphError(f"data {path}: not a readable .npz ({e})") from None


def _load_folder(root: Path):
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise GraphError(f"data {root}: expected one sub-folder of images per class (at least 2), found {len(classes)}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GraphError(f"data {root}: class folder {name!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    images.append(np.asarray(im.convert("RGB" if im.mode not in ("L", "I;16", "I") else "L")))
            except (UnidentifiedImageError, OSError) as e:
                raise GraphError(f"data {f}: not a readable image ({e})") from None
            labels.append(label)
    # a list: images of different sizes are resized one by one
    return images, np.asarray(labels, dtype=np.int64), classes


def prepare_inputs(graph: QuantGraph, images, labels, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """int8 model inputs and int64 labels, checked against the model and ``num_classes``."""
    inp = graph.tensors[graph.inputs[0]]
    if len(inp.shape) != 4:
        raise GraphError(f"{graph.name}: search needs an image model (NHWC input), its input is {list(inp.shape)}")
    _, h, w, c = inp.shape
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise GraphError(f"data: y must be a 1-D array of integer labels, got shape {labels.shape} {labels.dtype}")
    n = len(labels)
    if isinstance(images, list):
        if len(images) != n:
            raise GraphError(f"data: {len(images)} images but {n} labels")
        x = np.concatenate([_prepare_one(graph, _to_channels(a, c)[None], h, w, c)
                            for a in images]) if n else np.zeros((0, h, w, c), np.int8)
    else:
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise GraphError(f"data: x must be N x H x W x C images (or N x H x W), got shape {list(x.shape)}")
        if len(x) != n:
            raise GraphError(f"data: x holds {len(x)} images but y {n} labels")
        if x.shape[-1] not in (1, c):
            raise GraphError(f"data: images have {x.shape[-1]} channels; the model takes {c} (or 1, replicated)")
        if x.dtype == np.int8:
            if x.shape[1:] != (h, w, c):
                raise GraphError(f"data: int8 images are taken as the model's input and must be {h}x{w}x{c}, "
                                 f"got {'x'.join(map(str, x.shape[1:]))}")
        else:
            x = _prepare_one(graph, x, h, w, c)
    if n < 2:
        raise GraphError(f"data: {n} labelled images; a search needs more")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise GraphError(f"data: labels span {lo}..{hi}, outside 0..{num_classes - 1} for --num-classes {num_classes}")
    return x, labels.astype(np.int64)


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A decoded image file (H x W grey or H x W x 3 RGB) as H x W x 1 or x 3: RGB becomes grey
    for a one-channel model with PIL's "L" weights (299, 587, 114 / 1000), as
    ``color_mode="grayscale"`` of Keras' image_dataset_from_directory reads it."""
    if image.ndim == 2:
        return image[..., None]
    if channels == 1 and image.shape[-1] == 3:
        grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.rint(grey), 0, 255).astype(image.dtype)[..., None]
    return image


def _prepare_one(graph, x, h, w, c) -> np.ndarray:
    from .datasets import input_range, prepare_images, to_int8_input

    inp = graph.tensors[graph.inputs[0]]
    if x.dtype != np.uint8:
        if x.dtype.kind not in "fiu":
            raise GraphError(f"data: images must be uint8, int8 or float, got {x.dtype}")
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise GraphError("data: images hold NaN or infinite values")
        if xf.min() < 0 or xf.max() > 255:
            raise GraphError(f"data: image values span {xf.min():g}..{xf.max():g}; expected pixels 0..255 or 0..1")
        x = np.clip(np.rint(xf * 255.0 if xf.max() <= 1.0 else xf), 0, 255).astype(np.uint8)
    s, zp = inp.scalar_scale(), inp.scalar_zero_point()
    x = prepare_images(x, (h, w), c)
    return to_int8_input(x, s, zp, input_range=input_range(s, zp))


# --------------------------------------------------------------------------- the search
class _Progress:
    """A tqdm bar on stderr (or nothing)."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def start(self, total: int, desc: str):
        self.close()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", file=sys.stderr, leave=True, dynamic_ncols=True)

    def step(self, label: str):
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def search_scheme(graph: QuantGraph, x, y, budget_kb: Optional[float] = None, *, flash_kb: Optional[float] = None,
                  num_classes: Optional[int] = None, head: str = "float", settings=None, ratios=None,
                  bias_points: int = 6, max_weight_layers: int = 16, depthwise: bool = False,
                  expanding_only: bool = False, cache: bool = True,
                  verify_top: int = 4, verify=None, progress: bool = False, return_result: bool = False):
    """The sparse-update scheme of largest predicted accuracy gain on (x, y) whose training step's
    planned peak fits ``budget_kb`` (default 256 KB minus the application reserve,
    ``tflm_train.training.search.DEFAULT_BUDGET_KB``) and whose training file fits ``flash_kb``.

    ``x``: images (see the module docstring), ``y``: integer labels; ``num_classes`` defaults to
    ``max(y) + 1``. ``settings``: ``tflm_train.keras.contribution.AnalysisSettings``.
    ``verify_top``: how many of the search's proposals (the best pick of each of that many bias
    depths, plus the deepest bias-only scheme and the data-free rule) are measured before one
    is chosen (0: the largest predicted gain is taken as it is); ``verify``:
    ``tflm_train.keras.contribution.VerifySettings``, how they are measured (default: two
    seeds of 100 steps of batch 32 on the training part, scored on the held-out images). ``cache``:
    read and write the contribution cache and the plan cache (``$TFLM_TRAIN_CACHE`` or
    ``~/.cache/tflm_train``). Returns a ``SparseScheme`` (with ``return_result``:
    ``(scheme, SearchResult, Contributions)``).
    """
    from .keras.contribution import AnalysisSettings, ContributionAnalysis, VerifySettings
    from .training.search import (DEFAULT_BUDGET_KB, DEFAULT_RATIOS, CostModel, analysis_candidates, check_budget,
                                  search)

    if not isinstance(graph, QuantGraph):
        raise GraphError(f"search_scheme: expected a QuantGraph, got {type(graph).__name__}")
    budget_kb = DEFAULT_BUDGET_KB if budget_kb is None else budget_kb
    if not budget_kb > 0:
        raise GraphError(f"budget {budget_kb} KB: must be positive")
    if flash_kb is not None and not flash_kb > 0:
        raise GraphError(f"flash budget {flash_kb} KB: must be positive")
    labels = np.asarray(y)
    if num_classes is None:
        if labels.ndim != 1 or labels.dtype.kind not in "iub" or labels.size == 0:
            raise GraphError(f"data: y must be a non-empty 1-D array of integer labels, got shape {labels.shape} "
                             f"{labels.dtype}")
        num_classes = max(2, int(labels.max()) + 1)
    x, labels = prepare_inputs(graph, x, labels, int(num_classes))
    ratios = tuple(float(r) for r in (DEFAULT_RATIOS if ratios is None else ratios))
    if not ratios or not all(0 < r <= 1 for r in ratios):
        raise GraphError(f"ratios {list(ratios)}: each must be in (0, 1]")
    if bias_points < 1 or max_weight_layers < 0 or verify_top < 0:
        raise GraphError(f"bias_points ({bias_points}) must be >= 1, max_weight_layers ({max_weight_layers}) and "
                         f"verify_top ({verify_top}) >= 0")
    settings = settings or AnalysisSettings(head=head)
    budget = int(budget_kb * 1024)
    flash = None if flash_kb is None else int(flash_kb * 1024)
    cost = CostModel.cached(graph, int(num_classes), head) if cache else CostModel(graph, int(num_classes), head)
    bar = _Progress(progress)
    check_budget(cost, budget)
    depths, layers = analysis_candidates(cost, budget, ratios, bias_points, max_weight_layers, depthwise,
                                         expanding_only)
    analysis = ContributionAnalysis(graph, x, labels, int(num_classes), settings, cache=cache)
    total = 1 + len(depths) + len(layers) * len([r for r in ratios if r > 0])
    bar.start(total, f"contribution analysis ({analysis.pending(depths, layers, ratios)} to run)")
    try:
        contrib = analysis.run(depths, layers, ratios, progress=bar.step)
        verify = verify or VerifySettings()
        bar.start(len(contrib.bias) + 3 + verify_top + 2, "search")
        result = search(graph, contrib, budget, flash, num_classes=int(num_classes), head=head, cost=cost,
                        progress=bar.step, measure=(lambda s: analysis.verify(s, verify)) if verify_top > 0 else None,
                        verify_top=verify_top)
    finally:
        bar.close()
        cost.save()  # what was planned so far, also after an interruption
    return (result.scheme, result, contrib) if return_result else result.scheme


# --------------------------------------------------------------------------- the command
def add_parser(sub) -> None:
    """The ``search`` sub-command (``tflm_train.cli`` calls this)."""
    from .training.search import APP_RESERVE_KB, DEFAULT_BUDGET_KB, DEFAULT_FLASH_KB, FIRMWARE_RESERVE_KB

    s = sub.add_parser("search", help="search a sparse-update scheme on your data under an SRAM / flash budget")
    s.add_argument("model", help=".tflite or seed .npz/.json")
    s.add_argument("--data", required=True, help=".npz with x (N x H x W x C images) and y (labels), or a folder "
                                                 "with one sub-folder of images per class")
    s.add_argument("--budget-kb", type=float, default=DEFAULT_BUDGET_KB,
                   help=f"planned peak SRAM of the training step (default {DEFAULT_BUDGET_KB}: 256 KB minus "
                        f"{APP_RESERVE_KB} KB for the application)")
    s.add_argument("--flash-kb", type=float, default=DEFAULT_FLASH_KB,
                   help=f"size of the training .tflite (default {DEFAULT_FLASH_KB}: 1 MB minus {FIRMWARE_RESERVE_KB} "
                        f"KB for the firmware)")
    s.add_argument("-o", "--output", required=True, help="scheme JSON to write (takes --scheme as it is)")
    s.add_argument("--num-classes", type=int, default=None, help="classes of the new head (default: max label + 1)")
    s.add_argument("--input-size", type=int, help="input resolution for seed models (default: as stored)")
    s.add_argument("--steps", type=int, default=60, help="training steps of each contribution run (default 60)")
    s.add_argument("--batch-size", type=int, default=16, help="batch of each contribution run (default 16)")
    s.add_argument("--lr", type=float, default=0.01, help="SGD learning rate of the contribution runs (default 0.01)")
    s.add_argument("--metric", choices=("loss", "accuracy"), default="accuracy",
                   help="contribution metric: held-out accuracy gain (default, the paper's) or cross-entropy "
                        "decrease (capped at chance)")
    s.add_argument("--max-layers", type=int, default=16, help="weight layers analysed, the last that fit (default 16)")
    s.add_argument("--ratios", type=float, nargs="+", default=None,
                   help="channel ratios analysed per layer (default 0.125 0.25 0.5 1)")
    s.add_argument("--bias-points", type=int, default=6, help="bias depths analysed (default 6)")
    s.add_argument("--expanding-only", action="store_true",
                   help="analyse only expanding pointwise convs (a block's first 1x1 conv): half the runs")
    s.add_argument("--verify-top", type=int, default=4,
                   help="proposals (best pick of that many bands of bias depths; with the deepest bias-only scheme "
                        "and the data-free rule) measured before one is chosen; 0 takes the largest predicted gain "
                        "as it is (default 4)")
    s.add_argument("--verify-steps", type=int, default=100,
                   help="training steps of each proposal's measurement, as long as the fine-tuning to come "
                        "(default 100, batch 32)")
    s.add_argument("--verify-seeds", type=int, default=2, help="seeds each proposal is measured over (default 2)")
    s.add_argument("--no-cache", action="store_true", help="neither read nor write the contribution and plan caches")
    s.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    from . import load
    from .keras.contribution import AnalysisSettings, VerifySettings

    t0 = time.time()
    graph = load(args.model, **({"input_size": args.input_size} if args.input_size else {}))
    images, labels, classes = load_data(args.data)
    if args.num_classes is not None and args.num_classes < 2:
        raise GraphError(f"--num-classes {args.num_classes}: must be at least 2")
    settings = AnalysisSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, metric=args.metric)
    scheme, result, contrib = search_scheme(graph, images, labels, args.budget_kb, flash_kb=args.flash_kb,
                                            num_classes=args.num_classes, settings=settings,
                                            max_weight_layers=args.max_layers, ratios=args.ratios,
                                            bias_points=args.bias_points, cache=not args.no_cache,
                                            verify_top=args.verify_top, expanding_only=args.expanding_only,
                                            verify=VerifySettings(steps=args.verify_steps,
                                                                  seeds=tuple(range(args.verify_seeds))),
                                            progress=True, return_result=True)
    scheme.to_json(args.output)
    elapsed = time.time() - t0
    print(f"scheme for {graph.name} on {args.data}"
          + (f" ({len(classes)} classes: {', '.join(classes[:6])}{'...' if len(classes) > 6 else ''})" if classes else ""))
    rows = result.rows(graph)
    w = max(len(r[0]) for r in rows)
    print(f"{'layer':<{w}}  {'trains':<14} ratio")
    for layer, what, ratio in rows:
        print(f"{layer:<{w}}  {what:<14} {ratio}")
    print(f"planned peak      {result.planned_peak_bytes / 1024:8.1f} KB  (budget {args.budget_kb:g} KB)")
    print(f"training file     {result.flash_bytes / 1024:8.1f} KB  (flash budget {args.flash_kb:g} KB)")
    gain = (f"{100 * result.predicted_gain:+.2f} accuracy points" if contrib.metric == "accuracy"
            else f"{result.predicted_gain:+.4f} held-out cross-entropy decrease")
    print(f"predicted gain    {gain} over the classifier alone "
          f"({100 * contrib.baseline_accuracy:.1f} % held-out accuracy)")
    for proposal, measured in result.proposals:
        chosen = " <- chosen" if proposal.to_dict() == scheme.to_dict() else ""
        what = ", ".join(f"{k}:{r:g}" for k, r in proposal.weight_update.items()) or "no weights"
        print(f"proposal          bias {proposal.n_bias_update}; {what}: measured "
              + (f"{100 * measured:.1f} % held-out" if contrib.metric == "accuracy" else f"{measured:.4f}") + chosen)
    print(f"time              {elapsed:8.1f} s")
    print(f"wrote {args.output}")
    return 0
