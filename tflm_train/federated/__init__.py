"""Fleet learning with Flower: many devices fine-tune one model without sharing their data.

Each device trains with the C++ runtime's exact ``train_step`` on its own samples and sends
only what its scheme trains, as deltas (``payload``); the server averages them in real units
and requantizes with the device's rounding (``aggregate``; FedAvgM's server step:
``ServerMomentum``), so a device that applies the aggregate holds exactly the server's bytes. ``run_fleet`` runs a fleet on Flower's
simulation engine; ``tflm-train fleet`` is its command line.
"""
from .aggregate import ServerMomentum, aggregate, mean_delta, requantize, round_seed
from .apps import DeviceClient, device_with, FleetData, FleetResult, RoundRecord, make_client_app, make_server_app
from .payload import TrainedSet, TrainedTensor, encode_delta
from .simulation import accuracy, centralized, run_fleet, split_by_class, split_dirichlet

__all__ = ["ServerMomentum", "aggregate", "mean_delta", "requantize", "round_seed", "DeviceClient", "device_with", "FleetData", "FleetResult", "RoundRecord", "make_client_app",
           "make_server_app", "TrainedSet", "TrainedTensor", "encode_delta", "accuracy", "centralized", "run_fleet",
           "split_by_class", "split_dirichlet"]
