"""Flower apps of a fleet: the device (ClientApp) and the server (ServerApp with its strategy).

Device side (``DeviceClient``): each Flower node is one device holding one partition of the
data. A train message carries the round's global trained parts; the device writes them into
its C++ runtime (the host build of the firmware's runtime: ``tflm_train.micro.Interpreter``,
``tt_parameter_set_data``), runs its local epochs of ``train_step`` (batch 1, the device's
exact int8 + QAS arithmetic), and answers with the deltas of its trained parts
(``payload.encode_delta``) and its sample count. Nothing else leaves the device.

Server side (``QuantizedFedAvg``): Flower's message-based ``FedAvgM`` (FedAvg with a server
learning rate and momentum; 1 and 0 are plain FedAvg) whose aggregation is the real-unit mean
of ``aggregate`` with the server step of ``aggregate.ServerMomentum``, requantized by the
device's rounding rules, and whose global arrays are the trained parts only.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from .aggregate import ServerMomentum, mean_delta, requantize, round_seed
from .payload import TrainedSet, encode_delta


def to_arrays(parts: Dict[str, np.ndarray]):
    from flwr.app import Array, ArrayRecord

    return ArrayRecord({name: Array.from_numpy_ndarray(np.ascontiguousarray(v)) for name, v in parts.items()})


def from_arrays(record) -> Dict[str, np.ndarray]:
    return {name: record[name].numpy() for name in record.keys()}


def device_seed(seed: int, server_round: int, partition: int) -> int:
    """The stochastic-rounding seed of one device in one round (reruns give the same bytes)."""
    return (int(seed) * 7919 + int(server_round) * 104_729 + int(partition) * 15_485_863) & 0xFFFFFFFF or 1


def device_with(model: bytes, trained: TrainedSet, parts: Dict[str, np.ndarray], seed: int = 1):
    """A device runtime (``tflm_train.micro.Interpreter``) of ``model`` holding the trained ``parts``
    (everything else stays the model's bytes) and the stochastic-rounding RNG state ``seed``."""
    from ..micro import Interpreter

    it = Interpreter(model)
    params = it.parameters()
    values = trained.whole(params, parts)
    if "rng/state" in params:
        values["rng/state"] = np.array([seed], dtype=np.uint32)
    it.set_parameters(values)
    return it


@dataclass
class FleetData:
    """Every device's samples: int8 inputs ``x``, labels ``y``, and the device each sample lives on."""

    x: np.ndarray
    y: np.ndarray
    device: np.ndarray

    def partition(self, k: int):
        sel = self.device == k
        return self.x[sel], self.y[sel]

    @property
    def num_devices(self) -> int:
        return int(self.device.max()) + 1

    def save(self, path: str) -> None:
        np.savez(path, x=self.x, y=self.y, device=self.device)

    @classmethod
    def load(cls, path: str) -> "FleetData":
        with np.load(path) as f:
            return cls(f["x"], f["y"], f["device"])


class DeviceClient:
    """One device's local training, run by the ClientApp in whichever worker hosts the node."""

    def __init__(self, model_path: str, data_path: str, local_epochs: int, seed: int):
        self.model_path, self.data_path = model_path, data_path
        self.local_epochs, self.seed = int(local_epochs), int(seed)
        self._model: Optional[bytes] = None
        self._data: Optional[FleetData] = None
        self._trained: Optional[TrainedSet] = None

    def _model_and_trained(self):
        if self._model is None:
            with open(self.model_path, "rb") as f:
                self._model = f.read()
            self._trained = TrainedSet.of_training_file(self._model)
        return self._model, self._trained

    def _fleet_data(self) -> FleetData:
        if self._data is None:
            self._data = FleetData.load(self.data_path)
        return self._data

    def device(self, parts: Dict[str, np.ndarray], seed: int):
        """A device runtime holding the global ``parts`` (and its own RNG seed)."""
        model, trained = self._model_and_trained()
        return device_with(model, trained, parts, seed)

    def train(self, partition: int, server_round: int, parts: Dict[str, np.ndarray]):
        """(deltas, sample count, mean loss) of one round's local training."""
        _, trained = self._model_and_trained()
        x, y = self._fleet_data().partition(partition)
        if len(x) == 0:
            raise ValueError(f"device {partition} holds no samples")
        it = self.device(parts, device_seed(self.seed, server_round, partition))
        order = np.random.default_rng(device_seed(self.seed, server_round, partition)).permutation(len(x))
        losses = [it.train_step(x[i], int(y[i])) for _ in range(self.local_epochs) for i in order]
        new = trained.values(it.parameters())
        return encode_delta(trained, new, parts), len(x), float(np.mean(losses))

    def handle_train(self, msg, context):
        from flwr.app import Message, MetricRecord, RecordDict

        partition = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        parts = from_arrays(msg.content["arrays"])
        cpu = time.thread_time()
        deltas, n, loss = self.train(partition, server_round, parts)
        cpu = time.thread_time() - cpu  # this device's compute (CPU time of the thread), not Flower's transport
        content = RecordDict({"arrays": to_arrays(deltas),
                              "metrics": MetricRecord({"num-examples": n, "train-loss": loss, "train-cpu-s": cpu})})
        return Message(content=content, reply_to=msg)


def make_client_app(client: DeviceClient):
    from flwr.clientapp import ClientApp

    app = ClientApp()
    app.train()(client.handle_train)
    return app


@dataclass
class RoundRecord:
    server_round: int
    devices: int
    bytes_down_per_device: int
    bytes_up_per_device: float
    train_loss: float
    accuracy: Optional[float] = None
    seconds: float = 0.0
    samples: int = 0  # samples the round's devices hold (each trains local_epochs passes over them)
    device_cpu_seconds: float = 0.0  # CPU time of the devices' local training (setup + train_step), summed
    evaluate_cpu_seconds: float = 0.0  # CPU time of the server's scoring of the global parts


def _strategy_class():
    from flwr.serverapp.strategy import FedAvgM

    class QuantizedFedAvg(FedAvgM):
        """FedAvgM over the trained parts only: the devices' deltas averaged in real units, the
        server's step (``server_learning_rate``, ``server_momentum``, Flower's FedAvgM rule) taken
        in float64 and requantized with the device's rounding; clients answer with deltas."""

        def __init__(self, trained: TrainedSet, seed: int, on_round: Optional[Callable] = None,
                     server_learning_rate: float = 1.0, server_momentum: float = 0.0,
                     server_final_lr: Optional[float] = None, num_rounds: int = 1, **kwargs):
            super().__init__(fraction_evaluate=0.0, server_learning_rate=server_learning_rate,
                             server_momentum=server_momentum, **kwargs)
            self.trained, self.seed, self.on_round = trained, int(seed), on_round
            self.server_step = ServerMomentum(server_learning_rate, server_momentum, server_final_lr, num_rounds)
            self.rounds: List[RoundRecord] = []
            self._current: Dict[str, np.ndarray] = {}
            self._t0 = time.time()

        def configure_train(self, server_round, arrays, config, grid):
            self._current = from_arrays(arrays)
            self._t0 = time.time()
            return super().configure_train(server_round, arrays, config, grid)

        def aggregate_train(self, server_round, replies: Iterable):
            valid, failed = self._check_and_log_replies(list(replies), is_train=True)
            if failed:
                reasons = "; ".join(str(m.error.reason) for m in failed[:3])
                raise RuntimeError(f"round {server_round}: {len(failed)} device(s) failed: {reasons}")
            if not valid:
                return None, None
            deltas = [from_arrays(m.content["arrays"]) for m in valid]
            weights = [float(m.content["metrics"]["num-examples"]) for m in valid]
            step = self.server_step.step(mean_delta(self.trained, deltas, weights), server_round)
            new = requantize(self.trained, self._current, step, round_seed(self.seed, server_round))
            up = float(np.mean([self.trained.nbytes(d) for d in deltas]))
            loss = float(np.average([float(m.content["metrics"]["train-loss"]) for m in valid], weights=weights))
            self.rounds.append(RoundRecord(server_round, len(valid), self.trained.nbytes(self._current), up, loss,
                                           seconds=time.time() - self._t0, samples=int(sum(weights)),
                                           device_cpu_seconds=float(sum(float(m.content["metrics"]["train-cpu-s"])
                                                                        for m in valid))))
            if self.on_round:
                self.on_round(self.rounds[-1])
            from flwr.app import MetricRecord

            return to_arrays(new), MetricRecord({"train-loss": loss, "num-examples": float(sum(weights))})

    return QuantizedFedAvg


@dataclass
class FleetResult:
    """What a fleet run produced: the global trained parts per round and the history."""

    initial: Dict[str, np.ndarray]
    final: Dict[str, np.ndarray]
    rounds: List[RoundRecord] = field(default_factory=list)
    history: List[Dict[str, np.ndarray]] = field(default_factory=list)  # global parts after each round
    initial_accuracy: Optional[float] = None


def make_server_app(trained: TrainedSet, initial: Dict[str, np.ndarray], num_rounds: int, num_devices: int,
                    seed: int, result: FleetResult, evaluate: Optional[Callable[[Dict[str, np.ndarray]], float]] = None,
                    on_round: Optional[Callable[[RoundRecord], None]] = None, server_lr: float = 1.0,
                    server_momentum: float = 0.0, devices_per_round: Optional[int] = None, evaluate_every: int = 1,
                    server_final_lr: Optional[float] = None):
    """A ServerApp running ``num_rounds`` rounds over ``num_devices`` devices; fills ``result``.
    ``server_lr`` / ``server_momentum``: the server's step on the averaged delta (FedAvgM; decaying to
    ``server_final_lr`` over the rounds when given);
    ``devices_per_round``: devices Flower samples each round (None: all); ``evaluate``: scores the
    global parts before round 1, every ``evaluate_every`` rounds and after the last."""
    per_round = num_devices if devices_per_round is None else int(devices_per_round)
    if not 1 <= per_round <= num_devices or evaluate_every < 1:
        raise ValueError(f"devices per round must be in [1, {num_devices}] and evaluate_every >= 1, "
                         f"got {devices_per_round} and {evaluate_every}")
    from flwr.app import MetricRecord
    from flwr.serverapp import ServerApp

    app = ServerApp()
    strategy_cls = _strategy_class()

    def evaluate_fn(server_round, arrays):
        parts = from_arrays(arrays)
        if server_round > 0:
            result.history.append(parts)
        if evaluate is None:
            return None
        if 0 < server_round < num_rounds and server_round % evaluate_every:
            if on_round:
                on_round(strategy.rounds[-1])
            return None
        cpu = time.thread_time()
        acc = float(evaluate(parts))
        cpu = time.thread_time() - cpu
        if server_round == 0:
            result.initial_accuracy = acc
        else:
            strategy.rounds[-1].accuracy, strategy.rounds[-1].evaluate_cpu_seconds = acc, cpu
            if on_round:
                on_round(strategy.rounds[-1])
        return MetricRecord({"accuracy": acc})

    strategy = strategy_cls(trained, seed, on_round=None if evaluate else on_round, fraction_train=per_round / num_devices,
                            min_train_nodes=per_round, min_available_nodes=num_devices, server_learning_rate=server_lr,
                            server_momentum=server_momentum, server_final_lr=server_final_lr, num_rounds=num_rounds)

    @app.main()
    def main(grid, context):
        random.seed(seed)  # Flower samples the round's devices with Python's random: a rerun picks the same
        out = strategy.start(grid=grid, initial_arrays=to_arrays(initial), num_rounds=num_rounds,
                             evaluate_fn=evaluate_fn)
        result.final = from_arrays(out.arrays)
        result.rounds = strategy.rounds

    return app
