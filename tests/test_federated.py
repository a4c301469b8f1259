"""Fleet learning with Flower (tflm_train.federated): payload, aggregation, and a real simulation.

The simulation test runs Flower's simulation engine (Ray backend) with 3 devices for 2 rounds
on MNIST digits; each device trains with the C++ runtime. It checks that the server's global
parameters, applied on a device, are its bytes exactly, and that every round's aggregate is
what the aggregation rule gives on the devices' own (recomputed) deltas.
"""
import os

import numpy as np
import pytest

import tflm_train
from tflm_train import datasets
from tflm_train.federated import (DeviceClient, FleetData, TrainedSet, aggregate, device_with,
                                  encode_delta, round_seed, run_fleet, split_by_class)
from tflm_train.federated.aggregate import ServerMomentum, mean_delta, requantize
from tflm_train.micro import Interpreter, MicroRuntimeError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKBONE = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
FLEET_SCHEME = os.path.join(REPO, "examples", "schemes", "fmnist_backbone.json") + ":fleet"


@pytest.fixture(scope="module")
def fleet_model():
    graph = tflm_train.load(BACKBONE)
    model = tflm_train.export(graph, FLEET_SCHEME, None, num_classes=10, head="int8", lr=0.02).data
    images, labels = datasets.mnist_5k()
    inp = graph.tensors[graph.inputs[0]]
    x = datasets.to_int8_input(datasets.prepare_images(images, inp.shape[1], inp.shape[3]), inp.scalar_scale(),
                               inp.scalar_zero_point())
    order = np.random.default_rng(0).permutation(len(x))
    return graph, model, x[order], labels[order].astype(np.int64)


def test_trained_set_is_exactly_what_a_step_changes(fleet_model):
    _, model, x, y = fleet_model
    trained = TrainedSet.of_training_file(model)
    it = Interpreter(model)
    before = it.parameters()
    for i in range(20):
        it.train_step(x[i], int(y[i]))
    after = it.parameters()
    changed_outside = []
    for name, value in after.items():
        if name == "rng/state":
            continue
        if name not in trained.by_name:
            changed_outside.append(name) if not np.array_equal(value, before[name]) else None
            continue
        t = trained.by_name[name]
        frozen = np.ones(value.shape[-1], bool)
        frozen[list(t.channels) if t.channels is not None else slice(None)] = False
        if frozen.any():
            assert np.array_equal(value[..., frozen], before[name][..., frozen]), name
    assert not changed_outside
    # ... and the trained parts did move (the test could not pass with an empty set)
    moved = [n for n in trained.names() if not np.array_equal(trained.by_name[n].select(after[n]),
                                                               trained.by_name[n].select(before[n]))]
    assert len(moved) >= len(trained.names()) // 2
    payload = trained.nbytes(trained.values(after))
    assert payload * 10 <= len(tflm_train.load(BACKBONE).to_tflite())  # at most 1/10 of the model


def test_set_parameters_round_trip_and_refusals(fleet_model):
    _, model, x, y = fleet_model
    trained = TrainedSet.of_training_file(model)
    src = Interpreter(model)
    for i in range(5):
        src.train_step(x[i], int(y[i]))
    parts = trained.values(src.parameters())
    dst = device_with(model, trained, parts)
    got = trained.values(dst.parameters())
    assert all(got[n].tobytes() == parts[n].tobytes() for n in parts)
    # a frozen channel of a split weight may not change: refused, and nothing written
    split = next(t for t in trained.tensors if t.kind == "weight" and t.channels is not None)
    whole = dst.parameters()
    bad = {n: v.copy() for n, v in whole.items() if n in trained.by_name}
    frozen_c = next(c for c in range(split.shape[-1]) if c not in split.channels)
    bad[split.name][..., frozen_c] = np.where(bad[split.name][..., frozen_c] == 5, 6, 5)
    first = trained.tensors[0].name  # a valid change to another tensor, written before the refusal
    bad[first] = bad[first].copy()
    bad[first].flat[0] = bad[first].flat[0] + 1 if bad[first].flat[0] < 100 else bad[first].flat[0] - 1
    with pytest.raises(MicroRuntimeError, match="frozen"):
        dst.set_parameters(bad)
    assert all(np.array_equal(v, whole[n]) for n, v in dst.parameters().items())
    with pytest.raises(ValueError, match="no trainable parameter"):
        dst.set_parameters({"nope": np.zeros(1)})


def test_aggregation_rules():
    from tflm_train.federated.payload import TrainedTensor

    trained = TrainedSet([TrainedTensor("w", "weight", (2, 3), "int8", None),
                          TrainedTensor("b", "bias", (2,), "int32", None),
                          TrainedTensor("h", "float", (2,), "float32", None)])
    current = {"w": np.array([[0, 126, -127], [10, 0, 1]], np.int8), "b": np.array([100, (1 << 30)], np.int32),
               "h": np.array([0.5, -1.0], np.float32)}
    d1 = {"w": np.array([[1, 5, -3], [0, 0, 0]], np.int8), "b": np.array([3, 1], np.int8),
          "h": np.array([0.25, 0.0], np.float32)}
    d2 = {"w": np.array([[0, 5, -3], [2, 0, 0]], np.int8), "b": np.array([-2, 2], np.int8),
          "h": np.array([-0.25, 1.0], np.float32)}
    new = aggregate(trained, current, [d1, d2], [3, 1], round_seed(0, 1))
    # int8 weights: weighted mean delta, device stochastic rounding, clamp to [-127, 127]
    mean = (3 * d1["w"].astype(float) + d2["w"]) / 4
    v = current["w"] + mean
    assert np.all((new["w"] == np.floor(v)) | (new["w"] == np.ceil(v)) | (np.abs(v) > 127))
    assert new["w"][0, 1] == 127 and new["w"][0, 2] == -127 and new["w"][1, 1] == 0
    assert np.array_equal(aggregate(trained, current, [d1, d2], [3, 1], round_seed(0, 1))["w"], new["w"])
    # int32 bias: the mean step rounded half away from zero: (9 - 2) / 4 = 1.75 -> 2, (3 + 2) / 4 = 1.25 -> 1
    assert new["b"].tolist() == [102, (1 << 30) + 1]
    # float head: weighted mean in float64
    assert np.allclose(new["h"], [0.5 + (0.75 - 0.25) / 4, -1.0 + 0.25])
    with pytest.raises(ValueError, match="positive sample count"):
        aggregate(trained, current, [d1], [0], 1)


def test_server_momentum_steps_like_flowers_fedavgm():
    from tflm_train.federated.aggregate import ServerMomentum

    server = ServerMomentum(lr=2.0, momentum=0.5)
    assert server.step({"w": np.array([1.0, -2.0])})["w"].tolist() == [2.0, -4.0]  # round 1: m = mean
    assert server.step({"w": np.array([1.0, 0.0])})["w"].tolist() == [3.0, -2.0]   # m = 0.5 m + mean
    assert ServerMomentum().step({"w": np.array([0.25])})["w"].tolist() == [0.25]  # lr 1, no momentum: FedAvg
    with pytest.raises(ValueError, match="momentum"):
        ServerMomentum(lr=1.0, momentum=1.0)
    decaying = ServerMomentum(lr=1.0, final_lr=0.2, rounds=5)  # cosine from 1 to 0.2 over five rounds
    assert [round(decaying.lr_at(r), 6) for r in (1, 3, 5)] == [1.0, 0.6, 0.2]
    assert decaying.step({"w": np.array([1.0])}, server_round=5)["w"].tolist() == [0.2]


def test_delta_encoding_is_lossless_and_narrow():
    from tflm_train.federated.payload import TrainedTensor

    trained = TrainedSet([TrainedTensor("w", "weight", (3,), "int8", None),
                          TrainedTensor("b", "bias", (2,), "int32", None)])
    base = {"w": np.array([-127, 0, 127], np.int8), "b": np.array([0, 0], np.int32)}
    new = {"w": np.array([127, 0, -127], np.int8), "b": np.array([5, -7], np.int32)}
    d = encode_delta(trained, new, base)
    assert d["w"].dtype == np.int16 and d["b"].dtype == np.int8
    assert np.array_equal(base["w"].astype(int) + d["w"], new["w"])


def test_split_by_class_is_non_iid():
    y = np.repeat(np.arange(10), 30)
    device = split_by_class(y, 5, 2, seed=1)
    assert sorted(np.unique(device).tolist()) == [0, 1, 2, 3, 4]
    for k in range(5):
        assert len(np.unique(y[device == k])) <= 3  # two shards, a shard may straddle two labels
    with pytest.raises(ValueError):
        split_by_class(y[:5], 5, 2)


def test_three_devices_two_rounds_in_flower_simulation(fleet_model, tmp_path):
    _, model, x, y = fleet_model
    n_train = 90
    data = FleetData(x[:n_train], y[:n_train], split_by_class(y[:n_train], 3, 2, seed=0))
    test = (x[4000:4100], y[4000:4100])
    rounds = []
    result = run_fleet(model, data, 2, seed=3, test=test, on_round=rounds.append, workers=2, server_lr=1.5,
                       server_momentum=0.5)
    assert [r.server_round for r in result.rounds] == [1, 2] and all(r.devices == 3 for r in result.rounds)
    assert all(r.accuracy is not None for r in result.rounds)
    trained = TrainedSet.of_training_file(model)
    # the server's final parameters, applied on a device, are the server's bytes exactly
    device = device_with(model, trained, result.final)
    on_device = trained.values(device.parameters())
    assert set(on_device) == set(result.final)
    assert all(on_device[n].tobytes() == result.final[n].tobytes() for n in result.final)
    assert all(result.final[n].tobytes() == result.history[-1][n].tobytes() for n in result.final)
    # both rounds recomputed outside Flower: every device's deltas from the round's global parts,
    # the weighted mean, the server's FedAvgM step, the device's rounding
    path = tmp_path / "train.tflite"
    path.write_bytes(model)
    data.save(str(tmp_path / "devices.npz"))
    client = DeviceClient(str(path), str(tmp_path / "devices.npz"), 1, 3)
    server = ServerMomentum(lr=1.5, momentum=0.5)
    expect = result.initial
    for server_round in (1, 2):
        answers = [client.train(k, server_round, expect) for k in range(3)]
        step = server.step(mean_delta(trained, [a[0] for a in answers], [a[1] for a in answers]))
        expect = requantize(trained, expect, step, round_seed(3, server_round))
        assert all(expect[n].tobytes() == result.history[server_round - 1][n].tobytes() for n in expect)
    # the global model moved and the payload stayed what the scheme trains
    assert any(result.final[n].tobytes() != result.initial[n].tobytes() for n in result.final)
    assert result.rounds[0].bytes_down_per_device == trained.nbytes(result.initial)
    # the global model writes out as an inference .tflite whose int8 forward agrees with the device
    out = tmp_path / "global.tflite"
    out.write_bytes(device.to_tflite(calibration=x[:16]))
    from tflm_train import reference

    g = tflm_train.load(str(out))
    agree = sum(int(np.argmax(reference.invoke(g, xi[None])[0])) == int(np.argmax(device.predict(xi)))
                for xi in test[0][:20])
    assert agree >= 18


def test_fleet_cli_refuses_bad_arguments(capsys):
    from tflm_train.cli import main

    assert main(["fleet", BACKBONE, "--scheme", "bias-only", "--clients", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--clients" in err[0]
    assert main(["fleet", BACKBONE, "--scheme", "bias-only", "--clients", "5", "--devices-per-round", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--devices-per-round" in err[0]
    assert main(["fleet", BACKBONE, "--scheme", "bias-only", "--server-final-lr", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--server-final-lr" in err[0]
