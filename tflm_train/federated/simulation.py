"""A fleet on one machine: Flower's simulation engine runs every device as a virtual node.

``run_fleet`` writes the training file and the devices' data where the workers can read them,
runs ``flwr.simulation.run_simulation`` with the apps of ``apps.py`` and returns the global
trained parts of every round. ``centralized`` trains one device runtime on the union of the
data (the same arithmetic, a given number of sample steps) as the reference point.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from .apps import DeviceClient, FleetData, device_with, FleetResult, RoundRecord, make_client_app, make_server_app
from .payload import TrainedSet


def split_by_class(y: np.ndarray, num_devices: int, classes_per_device: int = 2, seed: int = 0) -> np.ndarray:
    """Non-IID split (McMahan et al.'s shards): samples sorted by label are cut into
    ``num_devices * classes_per_device`` shards and every device gets ``classes_per_device`` of
    them, so each device sees mostly that many classes. Returns the device of every sample."""
    y = np.asarray(y)
    if num_devices < 1 or classes_per_device < 1:
        raise ValueError(f"need >= 1 device and >= 1 class per device, got {num_devices} and {classes_per_device}")
    shards = num_devices * classes_per_device
    if len(y) < shards:
        raise ValueError(f"{len(y)} samples cannot fill {num_devices} devices x {classes_per_device} shards")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(y)), y))  # by label, shuffled within a label
    device_of_shard = rng.permutation(np.repeat(np.arange(num_devices), classes_per_device))
    device = np.empty(len(y), dtype=np.int32)
    for s, idx in enumerate(np.array_split(order, shards)):
        device[idx] = device_of_shard[s]
    return device


def split_dirichlet(y: np.ndarray, num_devices: int, alpha: float = 0.5, seed: int = 0,
                    min_samples: int = 10) -> np.ndarray:
    """Non-IID split by class proportions (Hsu et al., 2019): every class is spread over the
    devices with proportions drawn from Dirichlet(``alpha``); small ``alpha`` gives each device a
    few dominant classes. Redrawn until every device holds at least ``min_samples``."""
    y = np.asarray(y)
    if num_devices < 1 or not alpha > 0:
        raise ValueError(f"need >= 1 device and alpha > 0, got {num_devices} and {alpha}")
    if len(y) < num_devices * min_samples:
        raise ValueError(f"{len(y)} samples cannot give {num_devices} devices {min_samples} each")
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        device = np.empty(len(y), dtype=np.int32)
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_devices, alpha))) * len(idx)).astype(int)[:-1]
            for k, part in enumerate(np.split(idx, cuts)):
                device[part] = k
        if np.bincount(device, minlength=num_devices).min() >= min_samples:
            return device
    raise ValueError(f"no Dirichlet({alpha}) split gave every one of {num_devices} devices {min_samples} samples")


def accuracy(model: bytes, trained: TrainedSet, parts: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a device holding ``parts`` (its C++ runtime's forward pass)."""
    it = device_with(model, trained, parts)
    hits = sum(int(np.argmax(it.predict(xi))) == int(yi) for xi, yi in zip(x, y))
    return hits / max(1, len(x))


def initial_parts(model: bytes) -> Tuple[TrainedSet, Dict[str, np.ndarray]]:
    from ..micro import Interpreter

    trained = TrainedSet.of_training_file(model)
    return trained, trained.values(Interpreter(model).parameters())


def run_fleet(model: bytes, data: FleetData, rounds: int, *, local_epochs: int = 1, seed: int = 0,
              test: Optional[Tuple[np.ndarray, np.ndarray]] = None, workers: Optional[int] = None,
              on_round: Optional[Callable[[RoundRecord], None]] = None, workdir: Optional[str] = None,
              verbose: bool = False, server_lr: float = 1.0, server_momentum: float = 0.0,
              devices_per_round: Optional[int] = None, evaluate_every: int = 1,
              server_final_lr: Optional[float] = None) -> FleetResult:
    """Train a fleet of ``data.num_devices`` devices for ``rounds`` Flower rounds, ``devices_per_round``
    of them (Flower's sampling; None: all) each round; the server steps ``server_lr`` times its
    momentum-averaged (``server_momentum``) mean delta (FedAvgM; the rate decays to ``server_final_lr``
    over the rounds when given). ``test`` is scored before round 1,
    every ``evaluate_every`` rounds and after the last."""
    from flwr.simulation import run_simulation

    if rounds < 1 or local_epochs < 1:
        raise ValueError(f"rounds and local epochs must be >= 1, got {rounds} and {local_epochs}")
    trained, initial = initial_parts(model)
    owned = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="tflm_fleet_") if owned else None
    root = tmp.name if owned else workdir
    try:
        model_path, data_path = os.path.join(root, "train.tflite"), os.path.join(root, "devices.npz")
        with open(model_path, "wb") as f:
            f.write(model)
        data.save(data_path)
        client = DeviceClient(model_path, data_path, local_epochs, seed)
        result = FleetResult(initial=initial, final=initial)
        evaluate = None if test is None else (lambda parts: accuracy(model, trained, parts, *test))
        server_app = make_server_app(trained, initial, rounds, data.num_devices, seed, result, evaluate, on_round,
                                     server_lr=server_lr, server_momentum=server_momentum,
                                     devices_per_round=devices_per_round, evaluate_every=evaluate_every,
                                     server_final_lr=server_final_lr)
        workers = workers or max(1, min(os.cpu_count() or 1, 4))
        backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                   "init_args": {"num_cpus": workers, "num_gpus": 0, "include_dashboard": False,
                                 "logging_level": logging.INFO if verbose else logging.ERROR,
                                 "log_to_driver": verbose}}
        flwr_logger = logging.getLogger("flwr")
        level = flwr_logger.level
        if not verbose:
            flwr_logger.setLevel(logging.WARNING)
        try:
            run_simulation(server_app=server_app, client_app=make_client_app(client), num_supernodes=data.num_devices,
                           backend_config=backend, verbose_logging=verbose)
        finally:
            flwr_logger.setLevel(level)
        if len(result.rounds) != rounds:
            raise RuntimeError(f"the Flower simulation stopped after {len(result.rounds)} of {rounds} rounds "
                               f"(run with verbose=True / -v to see Flower's log)")
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def centralized(model: bytes, x: np.ndarray, y: np.ndarray, steps: int, *, seed: int = 0,
                test: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                evaluate_every: Optional[int] = None) -> Tuple[Dict[str, np.ndarray], list]:
    """The same scheme trained by one device runtime on the union of the data: ``steps`` sample
    steps, in seeded passes over the data (a new permutation per pass); returns the final trained
    parts and the test accuracy every ``evaluate_every`` steps (default: every pass) and at the end."""
    from ..micro import Interpreter

    trained = TrainedSet.of_training_file(model)
    it = Interpreter(model)
    rng = np.random.default_rng(seed)
    every = len(x) if evaluate_every is None else int(evaluate_every)
    accs, order = [], np.empty(0, dtype=np.int64)
    for step in range(1, int(steps) + 1):
        if len(order) == 0:
            order = rng.permutation(len(x))
        i, order = order[0], order[1:]
        it.train_step(x[i], int(y[i]))
        if test is not None and (step % every == 0 or step == steps):
            accs.append(accuracy(model, trained, trained.values(it.parameters()), *test))
    return trained.values(it.parameters()), accs
