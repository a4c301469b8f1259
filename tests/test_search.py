"""Scheme search: the planner-checked knapsack search, the cached contribution analysis on real
data, ``tflm-train search`` (its file is taken by ``--scheme`` as it is), ``SparseUpdate()``'s
data-free default (frozen parameters byte-identical) and the one-line errors."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import tflm_train
from tflm_train import cli, datasets
from tflm_train.graph import GraphError
from tflm_train.io.npz_reader import load_npz
from tflm_train.keras.contribution import AnalysisSettings, ContributionAnalysis, VerifySettings
from tflm_train.scheme_search import prepare_inputs
from tflm_train.training import SparseScheme
from tflm_train.training.search import (DEFAULT_BUDGET_KB, Contributions, CostModel, analysis_candidates,
                                        default_scheme, search)

from .paths import REPO, seed_model

BACKBONE = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
#: the tiny analysis the end-to-end tests run (4 short Keras runs)
TINY = ["--steps", "3", "--batch-size", "8", "--max-layers", "1", "--ratios", "0.5", "1", "--bias-points", "1",
        "--verify-steps", "3", "--verify-seeds", "1"]


@pytest.fixture(scope="module")
def backbone():
    return tflm_train.load(BACKBONE)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """scikit-learn's 8x8 digits (real data), 160 images as uint8 x / int y."""
    x, y = datasets.sklearn_digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x[:160], y=y[:160])
    return str(path)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFLM_TRAIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_search_fits_the_planner_budget_and_maximizes_the_sum(backbone):
    """Given contributions, the searched scheme's exact planned peak is within the budget and its
    predicted gain is at least that of every feasible single candidate and bias depth."""
    cost = CostModel(backbone)
    n = len(backbone.conv_op_indices())
    contrib = Contributions(0.5, bias={4: 0.01, 8: 0.02, n: 0.03},
                            weight={(12, 0.5): 0.02, (12, 1.0): 0.03, (9, 0.25): 0.004, (9, 1.0): 0.015,
                                    (11, 1.0): 0.01, (6, 1.0): 0.012})
    peaks = []
    for budget_kb in (110, 150):
        budget = budget_kb * 1024
        r = search(backbone, contrib, budget, cost=cost)
        assert r.planned_peak_bytes == tflm_train.plan(backbone, r.scheme).peak_bytes <= budget
        assert r.flash_bytes == len(tflm_train.export(backbone, r.scheme).data)
        assert r.predicted_gain == pytest.approx(contrib.gain(r.scheme))
        singles = [SparseScheme(k, {}) for k in contrib.bias] + [SparseScheme(1, {l: q}) for l, q in contrib.weight]
        for s in singles:
            if cost.exact_peak(s) <= budget:
                assert r.predicted_gain >= contrib.gain(s) - 1e-12, s
        peaks.append(r.planned_peak_bytes)
    assert peaks[0] <= 110 * 1024 and r.predicted_gain > 0.03  # the larger budget combines candidates
    # a flash budget the weights do not fit drops them until the file fits
    small = search(backbone, contrib, 150 * 1024, flash_budget_bytes=r.flash_bytes - 1, cost=cost)
    assert small.flash_bytes <= r.flash_bytes - 1


def test_budget_below_the_smallest_scheme_names_the_minimum(backbone):
    minimum = tflm_train.plan(backbone, SparseScheme(1, {})).peak_bytes
    with pytest.raises(GraphError, match=f"smallest feasible scheme.*{minimum / 1024:.1f} KB"):
        search(backbone, Contributions(0.5), minimum - 1)
    with pytest.raises(GraphError, match=f"{minimum / 1024:.1f} KB"):
        default_scheme(backbone, (minimum - 1) / 1024)


def test_analysis_candidates_fit_the_budget(backbone):
    cost = CostModel(backbone)
    depths, layers = analysis_candidates(cost, 120 * 1024, max_weight_layers=3)
    assert depths and all(cost.quick_peak(SparseScheme(k, {})) <= 120 * 1024 for k in depths)
    assert len(layers) == 3 and all(backbone.ops[backbone.conv_op_indices()[l]].type != "DEPTHWISE_CONV_2D"
                                    for l in layers)


def test_cli_search_writes_a_scheme_plan_takes_and_the_cache_is_reused(backbone, digits_npz, cache, tmp_path,
                                                                         capsys, monkeypatch):
    out = str(tmp_path / "scheme.json")
    assert cli.main(["search", BACKBONE, "--data", digits_npz, "--budget-kb", "150", "-o", out] + TINY) == 0
    printed = capsys.readouterr().out
    assert "planned peak" in printed and "time" in printed and "wrote" in printed
    scheme = SparseScheme.parse(out)
    assert tflm_train.plan(backbone, scheme).peak_bytes <= 150 * 1024
    assert cli.main(["plan", BACKBONE, "--scheme", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_bytes"] <= 150 * 1024
    files = list((cache / "contributions").glob("*.json"))
    runs = json.loads(files[0].read_text())["runs"]
    assert len(files) == 1 and len([r for r in runs if not r.startswith("verify")]) == 4
    assert any(r.startswith("verify3x32/seed0/") for r in runs)  # the proposals' measurements
    # the same (model, data, settings) from Python: every run comes from the cache
    z = np.load(digits_npz)
    settings = AnalysisSettings(steps=3, batch_size=8)
    x, y = prepare_inputs(backbone, z["x"], z["y"], 10)
    analysis = ContributionAnalysis(backbone, x, y, 10, settings)
    depths, layers = analysis_candidates(CostModel(backbone), 150 * 1024, (0.5, 1.0), 1, 1)
    assert analysis.pending(depths, layers, (0.5, 1.0)) == 0
    # ... and every planned number from the plan cache (CostModel.cached): no planner call, no export
    plans = list((cache / "plans").glob("*.json"))
    assert len(plans) == 1 and CostModel.cached(backbone).path == plans[0]
    memo = CostModel.cached(backbone)
    assert memo._quick and memo._exact and memo._flash
    assert memo.exact_peak(scheme) == tflm_train.plan(backbone, scheme).peak_bytes

    def no_planning(*args, **kwargs):
        raise AssertionError("planned again")

    import importlib

    planner = importlib.import_module("tflm_train.planner.plan")  # the module (the package exports a function plan)
    train_export = importlib.import_module("tflm_train.io.train_export")

    for module, name in ((planner, "plan"), (planner, "plan_peak"), (train_export, "export")):
        monkeypatch.setattr(module, name, no_planning)
    again = tflm_train.search_scheme(backbone, z["x"], z["y"], 150, settings=settings, ratios=(0.5, 1.0),
                                     bias_points=1, max_weight_layers=1, verify=VerifySettings(steps=3, seeds=(0,)))
    assert again.to_dict() == scheme.to_dict()
    assert len(json.loads(files[0].read_text())["runs"]) == len(runs)  # nothing run again


@pytest.mark.parametrize("args, message", [
    (["--budget-kb", "20"], "below the smallest feasible scheme (classifier only): planned peak"),
    (["--num-classes", "5"], "labels span 0..9, outside 0..4"),
])
def test_cli_bad_input_is_one_line(digits_npz, cache, tmp_path, capsys, args, message):
    out = tmp_path / "s.json"
    assert cli.main(["search", BACKBONE, "--data", digits_npz, "-o", str(out)] + TINY + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_data_that_does_not_fit_the_model(backbone, tmp_path):
    with pytest.raises(GraphError, match="images have 3 channels; the model takes 1"):
        prepare_inputs(backbone, np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, int), 10)
    with pytest.raises(GraphError, match="x holds 4 images but y 3 labels"):
        prepare_inputs(backbone, np.zeros((4, 8, 8), np.uint8), np.zeros(3, int), 10)
    with pytest.raises(GraphError, match="int8 images .* must be 32x32x1"):
        prepare_inputs(backbone, np.zeros((4, 8, 8, 1), np.int8), np.zeros(4, int), 10)
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8)))
    from tflm_train.scheme_search import load_data
    with pytest.raises(GraphError, match="has no x / y array"):
        load_data(str(tmp_path / "bad.npz"))


def _snapshot(model):
    return {v.path: v.numpy().copy() for v in model.weights}


def _assert_only_the_scheme_moved(model, graph, scheme, before, after, trained_channels_move=False):
    """What the scheme freezes (biases, weight channels) is byte-identical; returns how many
    layers' biases moved."""
    from tflm_train.keras.layers import QuantConv

    updates = {u.op_index: u for u in scheme.resolve(graph)}
    bias_moved = 0
    for layer in model.layers:
        if not isinstance(layer, QuantConv) or layer.is_new_head:
            continue
        u = updates.get(layer.op_index)
        k, b = layer.kernel.path, layer.bias.path
        if u is None or not u.update_bias:
            assert after[b].tobytes() == before[b].tobytes(), b
        bias_moved += not np.array_equal(before[b], after[b])
        channels = list(u.weight_channels) if u is not None else []
        frozen = [c for c in range(layer.kernel_shape[3]) if c not in channels]
        assert np.take(after[k], frozen, axis=3).tobytes() == np.take(before[k], frozen, axis=3).tobytes(), k
        if trained_channels_move and channels:
            assert not np.array_equal(np.take(after[k], channels, axis=3), np.take(before[k], channels, axis=3))
    return bias_moved


@pytest.mark.parametrize("which", ["backbone", "mcunet32"])
def test_sparse_update_without_a_scheme_trains_within_the_default_budget(which, backbone, capsys):
    import keras
    from tflm_train.keras import QAS, SparseUpdate, from_graph

    graph = backbone if which == "backbone" else load_npz(seed_model("mcunet-5fps"), input_size=32)
    model = from_graph(graph, 10, head="int8")
    model.compile(optimizer=QAS(keras.optimizers.SGD(0.05)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    xs = np.random.default_rng(0).integers(-128, 128, size=(8,) + shape).astype(np.float32)
    before = _snapshot(model)
    callback = SparseUpdate()
    model.fit(xs, np.arange(8) % 10, batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    assert capsys.readouterr().out.count("SparseUpdate: no scheme given") == 1
    after = _snapshot(model)
    scheme = callback.scheme
    assert scheme.n_bias_update > 1
    assert tflm_train.plan(graph, scheme, head="int8").peak_bytes <= DEFAULT_BUDGET_KB * 1024
    assert _assert_only_the_scheme_moved(model, graph, scheme, before, after) > 1  # biases beyond the head moved
    with pytest.raises(GraphError, match="below the smallest feasible scheme"):
        model.fit(xs, np.arange(8) % 10, batch_size=4, epochs=1, verbose=0, callbacks=[SparseUpdate(budget_kb=1)])


def test_image_folder_and_float_images_follow_the_package_input_rule(backbone, tmp_path):
    """One sub-folder per class (sorted names = labels), any size, RGB or grey; float pixels
    0..1 or 0..255; pixels map onto the real range the int8 input covers."""
    from PIL import Image

    from tflm_train.scheme_search import load_data

    rng = np.random.default_rng(0)
    for cls, size in (("cat", (20, 12)), ("dog", (40, 40))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, size=size + (3,), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    images, labels, classes = load_data(str(tmp_path))
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = prepare_inputs(backbone, images, labels, 2)  # RGB files read as grey for a grey model
    assert x.shape == (6, 32, 32, 1) and x.dtype == np.int8 and y.tolist() == labels.tolist()
    grey = np.full((2, 32, 32, 1), 255, np.uint8)
    x, _ = prepare_inputs(backbone, grey, np.array([0, 1]), 2)
    assert x.dtype == np.int8 and x.shape == (2, 32, 32, 1) and np.all(x == 127)  # backbone input: 0..1
    x01, _ = prepare_inputs(backbone, grey.astype(np.float32) / 255.0, np.array([0, 1]), 2)
    assert np.array_equal(x01, x)
    mcunet = load_npz(seed_model("mcunet-5fps"), input_size=32)
    xm, _ = prepare_inputs(mcunet, np.array([[[[0]]], [[[255]]]], np.uint8), np.array([0, 1]), 2)
    assert xm.shape == (2, 32, 32, 3) and xm[0].max() == -128 and xm[1].min() == 127  # seed models: -1..1


def test_a_budget_only_the_exact_plan_of_the_classifier_fits(backbone):
    """The quick plan bounds the exact one from above: a budget between them still gives the
    classifier-alone scheme, never a crash."""
    cost = CostModel(backbone)
    exact = cost.exact_peak(SparseScheme(1, {}))
    r = search(backbone, Contributions(0.5, bias={4: 0.01}, weight={(12, 1.0): 0.02}), exact, cost=cost)
    assert r.scheme.n_bias_update == 1 and not r.scheme.weight_update and r.planned_peak_bytes == exact


def test_contribution_run_trains_exactly_the_scheme_with_one_traced_step(backbone, digits_npz, cache):
    """The analysis' masked step: what the scheme freezes stays byte-identical (partial channels
    included), what it trains moves, and a second run starts from the same state (same result).
    The search's verification runs (``verify``) share it: the mean over seeds of runs of their
    own length on the training part, each cached (a second analysis reads them, no training)."""
    z = np.load(digits_npz)
    x, y = prepare_inputs(backbone, z["x"], z["y"], 10)
    settings = AnalysisSettings(steps=4, batch_size=8, lr=0.05, val_images=32)
    analysis = ContributionAnalysis(backbone, x, y, 10, settings)
    n = len(backbone.conv_op_indices())
    layer_index = max(i for i in range(n - 1) if backbone.ops[backbone.conv_op_indices()[i]].type == "CONV_2D")
    scheme = SparseScheme(3, {layer_index: 0.5})
    first = analysis.measure(scheme)
    model = analysis.trainer.model
    before = dict(zip([v.path for v in model.weights], analysis.trainer.initial))
    after = _snapshot(model)
    assert _assert_only_the_scheme_moved(model, backbone, scheme, before, after, trained_channels_move=True) >= 1
    traced = analysis.trainer._step.experimental_get_tracing_count()
    analysis.results.clear()
    assert analysis.measure(scheme) == first  # reset weights, optimizer and rounding stream
    analysis.measure(SparseScheme(2, {}))
    assert analysis.trainer._step.experimental_get_tracing_count() == traced  # no re-tracing per candidate

    assert len(analysis.y_part) + len(analysis.y_val) == len(y)
    verify = VerifySettings(steps=6, batch_size=8, seeds=(0, 1))
    mean = analysis.verify(SparseScheme(3, {}), verify)
    runs = {k: v for k, v in analysis.results.items() if k.startswith("verify6x8/")}
    assert len(runs) == 2 and mean == pytest.approx(np.mean([v["accuracy"] for v in runs.values()]))
    again = ContributionAnalysis(backbone, x, y, 10, settings)
    assert again.verify(SparseScheme(3, {}), verify) == mean and again.trainer is None  # cached, no training
    with pytest.raises(GraphError, match="seeds"):
        VerifySettings(seeds=())


def test_search_measures_its_proposals_and_takes_the_best_measured(backbone):
    """The additive sum proposes (one pick per bias depth), a measurement decides."""
    cost = CostModel(backbone)
    n = len(backbone.conv_op_indices())
    contrib = Contributions(0.5, bias={4: 0.01, 8: 0.02, n: 0.03}, weight={(12, 1.0): 0.03, (9, 1.0): 0.015})
    measured = []

    def smallest_is_best(scheme):  # a measurement that disagrees with the sum
        measured.append(scheme)
        return -cost.exact_peak(scheme)

    plain = search(backbone, contrib, 150 * 1024, cost=cost)
    r = search(backbone, contrib, 150 * 1024, cost=cost, measure=smallest_is_best, verify_top=3)
    assert len(r.proposals) == len(measured) >= 2
    assert plain.scheme.to_dict() in [s.to_dict() for s, _ in r.proposals]  # the sum's best is among them
    assert r.planned_peak_bytes == min(cost.exact_peak(s) for s, _ in r.proposals) <= 150 * 1024


def test_search_also_measures_the_deepest_bias_only_scheme_and_the_rule(backbone):
    """Besides the knapsack's picks, the search measures the deepest bias-only scheme that fits
    (exact plan) and the data-free rule, and takes one of them when it measures best, even
    though the sum of contributions ranks it last (no weight options)."""
    cost = CostModel(backbone)
    n = len(backbone.conv_op_indices())
    budget = 150 * 1024
    contrib = Contributions(0.5, bias={4: 0.001}, weight={(12, 1.0): 0.03, (9, 1.0): 0.015})
    deepest = max(k for k in range(1, n + 1) if cost.exact_peak(SparseScheme(k, {})) <= budget)
    rule = default_scheme(backbone, budget / 1024, cost=cost)

    def bias_only_is_best(scheme):  # a measurement in which no weight helps
        return scheme.n_bias_update - 100 * len(scheme.weight_update)

    r = search(backbone, contrib, budget, cost=cost, measure=bias_only_is_best, verify_top=2)
    keys = [CostModel.key(s) for s, _ in r.proposals]
    assert CostModel.key(SparseScheme(deepest, {})) in keys and CostModel.key(rule) in keys
    assert len(set(keys)) == len(keys)  # each measured once
    assert deepest > 4 and CostModel.key(r.scheme) == CostModel.key(SparseScheme(deepest, {}))
    assert r.planned_peak_bytes <= budget

