"""``tflm-train fleet``: fine-tune one model across a simulated fleet of devices with Flower."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from ..graph import GraphError

BUILTIN_DATA = ("mnist", "fashion-mnist")


def fleet_data(spec: str):
    """(images, labels) of ``mnist`` (MNIST 5k), ``fashion-mnist`` (its test split) or a user's .npz / class folder."""
    from .. import datasets

    if spec == "mnist":
        return datasets.mnist_5k()
    if spec == "fashion-mnist":
        return datasets.fashion_mnist("test")
    from ..scheme_search import load_data

    images, labels, _ = load_data(spec)
    return images, labels


def add_parser(sub) -> None:
    s = sub.add_parser("fleet", help="federated fine-tuning of many simulated devices with Flower: each trains on its "
                                     "own data with the device runtime and sends only what the scheme trains")
    s.add_argument("model", help="int8 .tflite or seed .npz/.json")
    s.add_argument("--scheme", required=True, help="FILE[:KEY], full, bias-only or last-K (what every device trains)")
    s.add_argument("--data", default="mnist",
                   help="mnist (MNIST 5k, default), fashion-mnist, an .npz with x / y, or a folder of class folders")
    s.add_argument("--clients", type=int, default=10, help="simulated devices (default 10)")
    s.add_argument("--rounds", type=int, default=5, help="Flower rounds (default 5)")
    s.add_argument("--local-epochs", type=int, default=1, help="passes over its own samples per device per round")
    s.add_argument("--devices-per-round", type=int, default=None,
                   help="devices Flower samples each round (default: all)")
    s.add_argument("--server-lr", type=float, default=1.0, help="FedAvgM server learning rate (default 1: FedAvg)")
    s.add_argument("--server-momentum", type=float, default=0.0,
                   help="FedAvgM server momentum in [0, 1) (default 0: FedAvg)")
    s.add_argument("--server-final-lr", type=float, default=None,
                   help="decay the server learning rate to this over the rounds (cosine; default: constant)")
    s.add_argument("--classes-per-client", type=int, default=2,
                   help="non-IID split: each device holds mostly this many classes (default 2)")
    s.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of the data (default 0.2)")
    s.add_argument("--num-classes", type=int, default=10, help="classes of the new head (default 10)")
    s.add_argument("--head", choices=("float", "int8", "keep"), default="int8",
                   help="classifier head every device trains (default int8: a 4x smaller payload than float)")
    s.add_argument("--lr", type=float, default=None, help="device SGD learning rate (default: per head mode)")
    s.add_argument("--seed", type=int, default=0, help="split, order and rounding seed (default 0)")
    s.add_argument("--workers", type=int, default=None, help="simulation worker processes (default: CPUs, at most 4)")
    s.add_argument("-o", "--output", default="fleet_global.tflite", help="the global model as an inference .tflite")
    s.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    s.set_defaults(func=cmd_fleet)


def _check_args(args) -> None:
    if args.clients < 1:
        raise GraphError(f"--clients must be >= 1, got {args.clients}")
    if args.rounds < 1 or args.local_epochs < 1:
        raise GraphError(f"--rounds and --local-epochs must be >= 1, got {args.rounds} and {args.local_epochs}")
    if not 0.0 < args.test_fraction < 1.0:
        raise GraphError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    if args.classes_per_client < 1:
        raise GraphError(f"--classes-per-client must be >= 1, got {args.classes_per_client}")
    if args.devices_per_round is not None and not 1 <= args.devices_per_round <= args.clients:
        raise GraphError(f"--devices-per-round must be between 1 and --clients ({args.clients}), "
                         f"got {args.devices_per_round}")
    if not (np.isfinite(args.server_lr) and args.server_lr > 0) or not 0.0 <= args.server_momentum < 1.0:
        raise GraphError(f"--server-lr must be > 0 and --server-momentum in [0, 1), got {args.server_lr} "
                         f"and {args.server_momentum}")
    if args.server_final_lr is not None and not (np.isfinite(args.server_final_lr) and args.server_final_lr > 0):
        raise GraphError(f"--server-final-lr must be > 0, got {args.server_final_lr}")


def cmd_fleet(args) -> int:
    from .. import export, load
    from ..scheme_search import prepare_inputs
    from .apps import FleetData, device_with
    from .payload import TrainedSet
    from .simulation import run_fleet, split_by_class

    _check_args(args)
    graph = load(args.model)
    images, labels = fleet_data(args.data)
    x, y = prepare_inputs(graph, images, labels, args.num_classes)
    order = np.random.default_rng(args.seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * args.test_fraction)))
    test, train = order[:n_test], order[n_test:]
    if len(train) < args.clients * args.classes_per_client:
        raise GraphError(f"data {args.data}: {len(train)} training samples cannot be split over {args.clients} devices "
                         f"x {args.classes_per_client} classes")
    device = split_by_class(y[train], args.clients, args.classes_per_client, seed=args.seed)
    data = FleetData(x[train], y[train], device)
    result = export(graph, args.scheme, None, num_classes=args.num_classes, head=args.head, lr=args.lr, seed=1)
    model = result.data
    inference_bytes = len(graph.to_tflite())
    log = sys.stderr if args.json else sys.stdout
    print(f"fleet: {args.clients} devices x {args.rounds} rounds, {len(train)} samples ({args.classes_per_client} "
          f"classes per device), {len(test)} held out; training file {len(model):,} bytes", file=log, flush=True)

    def on_round(r):
        acc = "" if r.accuracy is None else f", accuracy {r.accuracy:.1%}"
        print(f"round {r.server_round}/{args.rounds}: {r.devices} devices, loss {r.train_loss:.3f}{acc}, "
              f"sent {r.bytes_up_per_device / 1024:.1f} KB up / {r.bytes_down_per_device / 1024:.1f} KB down per "
              f"device ({r.bytes_up_per_device / inference_bytes:.1%} of the model), {r.seconds:.1f} s",
              file=log, flush=True)

    t0 = time.time()
    fleet = run_fleet(model, data, args.rounds, local_epochs=args.local_epochs, seed=args.seed,
                      test=(x[test], y[test]), workers=args.workers, on_round=on_round, verbose=args.verbose,
                      server_lr=args.server_lr, server_momentum=args.server_momentum,
                      devices_per_round=args.devices_per_round, server_final_lr=args.server_final_lr)
    device_rt = device_with(model, TrainedSet.of_training_file(model), fleet.final)
    with open(args.output, "wb") as f:
        f.write(device_rt.to_tflite(calibration=x[train][:64]))
    report = dict(command="tflm-train fleet", model=args.model, scheme=args.scheme, clients=args.clients,
                  rounds=[r.__dict__ for r in fleet.rounds], seconds=round(time.time() - t0, 1),
                  inference_model_bytes=inference_bytes, output=args.output)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print(f"wrote {args.output}: the global model ({os.path.getsize(args.output):,} bytes), "
              f"{report['seconds']:.0f} s in all")
    return 0
