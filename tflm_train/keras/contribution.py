"""Contribution analysis on the user's data: short fine-tuning runs of the int8 + QAS Keras
simulation, one per candidate, cached on disk per (model, data, settings).

As the paper defines it: the contribution of a candidate is what it adds, trained alone,
over training the classifier alone: the biases of the last ``k`` conv layers
(``SparseScheme(k, {})``), and one layer's weights at a ratio ``r`` of its channels
(``SparseScheme(1, {layer: r})``). Every run starts from the same weights and head, sees the
same images in the same order with the same learning rate and seed, and is scored on the
same held-out images of the user's data (never on what it trained on).

Metric: by default the paper's, the held-out accuracy gain (``metric="accuracy"``).
``metric="loss"`` uses the decrease of the held-out cross-entropy, capped at chance level
(``ln K``): at 30 steps of lr 0.01 on MCUNet-5FPS / MNIST at 48x48 the classifier alone
reached 43 % held-out accuracy with a cross-entropy of 3.8, above chance's 2.3 (an
over-confident new head; measured with the former random head init, before ``head_init``
made the new head start at zero), so the loss ranks runs by confidence as much as by accuracy.

Runs: one traced training step shared by every candidate, the scheme given as gradient
masks (``_set_masks``): Keras' ``fit`` with ``SparseUpdate`` re-traces the model for each
trainable set, about 20 s a run on a seed model against a fraction of that for the steps.

Cache: ``$TFLM_TRAIN_CACHE`` (default ``~/.cache/tflm_train``)``/contributions/<key>.json``,
``key`` = SHA-256 of the model's bytes, the data's bytes and the settings. Each run's result
is written as soon as it exists, so an interrupted analysis resumes, and a search for another
budget only runs the candidates it has not measured yet.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..graph import GraphError, QuantGraph
from ..training.scheme import SparseScheme
from ..training.search import DEFAULT_RATIOS, Contributions, cache_root


@dataclass(frozen=True)
class AnalysisSettings:
    """How each contribution run trains and is scored (part of the cache key).

    Defaults: 60 steps of batch 16 (960 images) of ``QAS(SGD(lr))`` without momentum, as the
    device trains; scored on ``val_images`` held-out images. ``lr`` 0.01: the rate
    benchmarks/transfer_accuracy.py selects for plain SGD on a seed model; at 0.03 runs of
    the benchmarks/scheme_search.py analysis (MCUNet-5FPS, batch 16) diverged; fine-tuning
    MCUNet-5FPS on Fashion-MNIST with the published 49kb scheme scattered over three seeds
    from 65.3 to 78.6 % at lr 0.03 (60 steps, 64x64), from 76.4 to 79.3 % at lr 0.01 (100
    steps, 48x48).
    """

    steps: int = 60
    batch_size: int = 16
    lr: float = 0.01
    val_images: int = 256
    head: str = "float"
    seed: int = 0
    #: "accuracy" (held-out accuracy gain) or "loss" (held-out cross-entropy decrease)
    metric: str = "accuracy"

    def cache_fields(self) -> dict:
        """What the runs depend on (the metric is not: both are stored)."""
        d = asdict(self)
        d.pop("metric")
        return d

    def __post_init__(self):
        if self.metric not in ("loss", "accuracy"):
            raise GraphError(f"analysis settings: metric must be 'loss' or 'accuracy', got {self.metric!r}")
        if self.steps < 1 or self.batch_size < 1 or self.val_images < 1:
            raise GraphError(f"analysis settings: steps, batch_size and val_images must be >= 1 ({self})")
        if not self.lr > 0:
            raise GraphError(f"analysis settings: lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class VerifySettings:
    """How the search measures its proposals (``ContributionAnalysis.verify``): ``seeds`` runs of
    ``steps`` steps of batch ``batch_size`` each, at the analysis' learning rate, scored on its
    held-out images. Defaults: the length of the fine-tuning benchmarks/scheme_search.py
    compares (100 steps of batch 32), two seeds."""

    steps: int = 100
    batch_size: int = 32
    seeds: Tuple[int, ...] = (0, 1)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not self.seeds:
            raise GraphError(f"verification settings: steps and batch_size must be >= 1 and seeds non-empty ({self})")


#: How a run trains (part of the cache key): one traced step, gradient masks per scheme, the head
#: as ``head_init`` makes it.
RUN_METHOD = "masked-step-2"  # 2: the new head starts at zero (head_init), so older runs do not count


def cache_dir() -> Path:
    return cache_root() / "contributions"


def cache_key(graph: QuantGraph, x: np.ndarray, y: np.ndarray, num_classes: int, settings: AnalysisSettings) -> str:
    h = hashlib.sha256()
    h.update(graph.to_tflite())
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y.astype(np.int64))):
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    h.update(json.dumps({"num_classes": int(num_classes), "runs": RUN_METHOD, **settings.cache_fields()},
                        sort_keys=True).encode())
    return h.hexdigest()[:32]


def candidate_name(scheme: SparseScheme) -> str:
    """The cache's name of a contribution run."""
    w = ",".join(f"{k}:{r:g}" for k, r in scheme.weight_update.items() if r > 0)
    return f"bias{scheme.n_bias_update}" + (f"+w{w}" if w else "")


class ContributionAnalysis:
    """Runs (or reads from the cache) the contribution runs of one (model, data, settings).

    ``x``: int8 model inputs ``[N, H, W, C]``; ``y``: integer labels ``[N]``. The last
    ``settings.val_images`` images of a seeded permutation are held out for scoring.
    """

    def __init__(self, graph: QuantGraph, x: np.ndarray, y: np.ndarray, num_classes: int,
                 settings: AnalysisSettings = AnalysisSettings(), cache: bool = True):
        self.graph, self.num_classes, self.settings = graph, int(num_classes), settings
        n = len(y)
        n_val = min(settings.val_images, n // 5)
        if n_val < 1 or n - n_val < settings.batch_size:
            raise GraphError(f"data: {n} images are too few for a contribution analysis (need at least "
                             f"{max(5, settings.batch_size + 1)}: batch {settings.batch_size} + held-out images)")
        order = np.random.default_rng(settings.seed).permutation(n)
        val, tr = order[n - n_val:], order[:n - n_val]
        #: the training part (the held-out images are never trained on)
        self.x_part, self.y_part = x[tr].astype(np.float32), y[tr].astype(np.int64)
        # cycle through the training part for ``steps`` batches
        cycle = np.resize(np.arange(len(tr)), settings.steps * settings.batch_size)
        self.x_train, self.y_train = self.x_part[cycle], self.y_part[cycle]
        self.x_val, self.y_val = x[val].astype(np.float32), y[val].astype(np.int64)
        self.path = cache_dir() / f"{cache_key(graph, x, y, num_classes, settings)}.json" if cache else None
        #: run name -> {"accuracy": held-out accuracy, "loss": held-out mean cross-entropy}
        self.results: Dict[str, Dict[str, float]] = {}
        if self.path is not None and self.path.is_file():
            try:
                self.results = {str(k): {"accuracy": float(v["accuracy"]), "loss": float(v["loss"])}
                                for k, v in json.loads(self.path.read_text())["runs"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                self.results = {}  # an unreadable cache file is rebuilt, never trusted
        self.trainer: Optional["MaskedTrainer"] = None

    # ------------------------------------------------------------------ runs
    def _masked_trainer(self) -> "MaskedTrainer":
        if self.trainer is None:
            s = self.settings
            self.trainer = MaskedTrainer(self.graph, self.num_classes, head=s.head, lr=s.lr, seed=s.seed)
        return self.trainer

    def _train(self, scheme: SparseScheme) -> None:
        """``settings.steps`` steps training ``scheme`` from the initial weights and optimizer state."""
        self._masked_trainer().train(scheme, self.x_train, self.y_train, self.settings.batch_size)

    def score(self, scheme: SparseScheme) -> float:
        """The settings' metric after a short run training ``scheme``, larger is better.

        The loss is capped at chance level, ``ln(num_classes)`` (a uniform prediction; a
        non-finite loss counts as chance too): a run that diverged is worth no more than
        guessing, and no less, so one diverged candidate cannot enter the sums as a gain or
        a loss of hundreds (measured before the cap: -505 for MCUNet's conv 39 at lr 0.03)."""
        r = self.measure(scheme)
        if self.settings.metric == "accuracy":
            return r["accuracy"]
        chance = math.log(self.num_classes)
        return -min(r["loss"], chance) if math.isfinite(r["loss"]) else -chance

    def measure(self, scheme: SparseScheme) -> Dict[str, float]:
        """Held-out accuracy and mean cross-entropy after a short run training ``scheme`` (cached)."""
        name = candidate_name(scheme)
        if name in self.results:
            return self.results[name]
        self._train(scheme)
        result = self.trainer.evaluate(self.x_val, self.y_val)
        self.results[name] = result
        self._save()
        return result

    def verify(self, scheme: SparseScheme, verify: "VerifySettings") -> float:
        """Mean held-out accuracy of ``scheme`` over ``verify.seeds`` runs of ``verify.steps``
        steps of batch ``verify.batch_size`` on the training part (each seed: its own order of
        the images and stream of the stochastic rounding), each run cached.

        The search scores its proposals with this rather than with ``score``: runs as long as
        the fine-tuning the scheme is chosen for, averaged over seeds, because the analysis'
        short runs favour weights (they move the features fast) over deep biases (which pay
        off later), and one run's accuracy on a few hundred images scatters by points."""
        accs = []
        for seed in verify.seeds:
            name = f"verify{verify.steps}x{verify.batch_size}/seed{seed}/{candidate_name(scheme)}"
            if name not in self.results:
                order = np.random.default_rng(seed).permutation(len(self.y_part))
                idx = np.resize(order, verify.steps * verify.batch_size)
                self._masked_trainer().train(scheme, self.x_part[idx], self.y_part[idx], verify.batch_size, rounding_seed=seed)
                self.results[name] = self.trainer.evaluate(self.x_val, self.y_val)
                self._save()
            accs.append(self.results[name]["accuracy"])
        return float(np.mean(accs))

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"model": self.graph.name, "settings": asdict(self.settings),
                                   "num_classes": self.num_classes, "runs": self.results}, indent=1))
        os.replace(tmp, self.path)  # a reader never sees half a file

    def run(self, bias_depths: Iterable[int], weight_layers: Iterable[int], ratios: Sequence[float] = DEFAULT_RATIOS,
            progress: Optional[Callable[[str], None]] = None) -> Contributions:
        """Measure the baseline, each bias depth and each (layer, ratio); ``progress(name)``
        is called after each run (cached or not)."""
        def measure(scheme):
            value = self.score(scheme)
            if progress:
                progress(candidate_name(scheme))
            return value

        base = measure(SparseScheme(1, {}))
        bias = {int(k): measure(SparseScheme(int(k), {})) - base for k in bias_depths}
        weight: Dict[Tuple[int, float], float] = {}
        for layer in weight_layers:
            for r in ratios:
                if r > 0:
                    weight[(int(layer), float(r))] = measure(SparseScheme(1, {int(layer): float(r)})) - base
        return Contributions(self.measure(SparseScheme(1, {}))["accuracy"], bias, weight, self.settings.metric)

    def pending(self, bias_depths, weight_layers, ratios=DEFAULT_RATIOS) -> int:
        """How many of these runs are not cached yet."""
        names = {candidate_name(SparseScheme(1, {}))}
        names |= {candidate_name(SparseScheme(int(k), {})) for k in bias_depths}
        names |= {candidate_name(SparseScheme(1, {int(l): float(r)})) for l in weight_layers for r in ratios if r > 0}
        return len(names - set(self.results))


class MaskedTrainer:
    """Fine-tuning runs of many schemes on one model with one traced training step.

    ``from_graph(graph, num_classes, head)`` (a new head at zero) trained by ``QAS(SGD(lr))`` without momentum
    (as the device trains), the scheme given as gradient masks: a masked element gets a zero
    gradient, so plain SGD leaves it as it is and QAS' rounding of an integer keeps it (the
    frozen parameters stay byte-identical, as with ``SparseUpdate``'s trainable flags), and
    every run shares the traced step (Keras' ``fit`` with ``SparseUpdate`` re-traces the model
    for each trainable set: about 20 s a run on a seed model, against a fraction of that for
    the steps of a short run). Each run starts from the same weights and optimizer state; the
    stochastic rounding's stream starts from ``rounding_seed``.
    """

    def __init__(self, graph: QuantGraph, num_classes: int, head: str = "float", lr=0.01, seed: int = 0):
        import keras
        import tensorflow as tf

        from .convert import from_graph
        from .optimizer import QAS

        self.graph = graph
        keras.utils.set_random_seed(seed)
        self.model = model = from_graph(graph, num_classes, head=head)
        self.initial = model.get_weights()
        self._variables = list(model.trainable_variables)
        # one gradient mask per trainable variable: a run sets them, the traced step stays
        self._masks = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self._variables]
        self._optimizer = opt = QAS(keras.optimizers.SGD(lr), seed=seed)
        opt.build(self._variables)
        self._state = list(opt.variables) + ([opt._seed_generator.state] if opt._seed_generator is not None else [])
        self._initial_state = [v.numpy() for v in self._state]
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        variables, masks = self._variables, self._masks

        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, variables)
            opt.apply([g * m for g, m in zip(grads, masks)], variables)
            return loss

        self._step = step
        # one traced scorer for every run: the variables are shared, only their values change
        self._logits = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def _set_masks(self, scheme: SparseScheme) -> None:
        """What ``SparseUpdate(scheme)`` trains, as one gradient mask per variable."""
        from .callbacks import channel_mask
        from .layers import FloatHead, QuantConv

        plan = {u.op_index: u for u in scheme.resolve(self.graph)}
        wanted = {}
        for layer in self.model.layers:
            if not isinstance(layer, (QuantConv, FloatHead)):
                continue
            if getattr(layer, "is_new_head", False):
                wanted[id(layer.kernel)] = wanted[id(layer.bias)] = 1.0
                continue
            update = plan.get(layer.op_index)
            if layer.bias is not None:
                wanted[id(layer.bias)] = 1.0 if update is not None and update.update_bias else 0.0
            channels = update.weight_channels if update is not None else ()
            wanted[id(layer.kernel)] = (channel_mask(layer.kernel_shape, layer.op_type, channels).astype(np.float32)
                                        if len(channels) else 0.0)
        for v, m in zip(self._variables, self._masks):
            if id(v) not in wanted:
                raise GraphError(f"masked training: trainable variable {v.path} belongs to no conv layer or head")
            m.assign(np.broadcast_to(np.asarray(wanted[id(v)], np.float32), v.shape))

    def train(self, scheme: SparseScheme, x: np.ndarray, y: np.ndarray, batch_size: int,
              rounding_seed: Optional[int] = None) -> None:
        """Train ``scheme`` on ``x``, ``y`` in order, ``batch_size`` at a time, from the initial state."""
        import keras
        import tensorflow as tf

        self.model.set_weights(self.initial)
        for v, value in zip(self._state, self._initial_state):
            v.assign(value)
        if rounding_seed is not None and self._optimizer._seed_generator is not None:
            self._optimizer._seed_generator.state.assign(keras.random.SeedGenerator(rounding_seed).state.numpy())
        self._set_masks(scheme)
        for i in range(0, len(y) - batch_size + 1, batch_size):
            self._step(tf.constant(x[i:i + batch_size], tf.float32), tf.constant(y[i:i + batch_size]))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> Dict[str, float]:
        """Accuracy and mean cross-entropy of the current weights on ``x``, ``y``."""
        hits, loss = 0, 0.0
        for i in range(0, len(y), 256):
            logits = np.asarray(self._logits(np.asarray(x[i:i + 256], np.float32)), dtype=np.float64)
            labels = y[i:i + 256]
            hits += int(np.sum(np.argmax(logits, axis=1) == labels))
            z = logits - logits.max(axis=1, keepdims=True)
            loss += float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))
        return {"accuracy": hits / len(y), "loss": loss / len(y)}
