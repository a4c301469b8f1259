"""Band chains (row-band execution of forward chains, tflm_train/planner/bands.py): the
planner chooses them where they lower the peak, the validator replays them row by row and
refuses a wrong one, and the C++ runtime (host and firmware) running them stays byte-identical
with the NumPy reference trainer."""
import copy
import os

import numpy as np
import pytest

from tests.model_factory import _act, _bias, _weights
from tests.paths import SCHEMES, seed_model
from tests.test_micro_train import rewrite_metadata, train_both
from tflm_train import load
from tflm_train.graph import GraphError, Op, QuantGraph, Tensor
from tflm_train.io.train_export import export, read_training_file
from tflm_train.micro import Interpreter, MicroRuntimeError
from tflm_train.planner.bands import (BandError, RowGeometry, in_place_gap, verify_band_chain, verify_band_in_place,
                                      window_rows)
from tflm_train.planner.plan import verify, verify_bands


def user_graph(seed: int = 7) -> QuantGraph:
    """A small user-style net: 3x3 stride-2 SAME conv -> PAD + 3x3 depthwise (VALID) ->
    1x1 conv -> 3x3 stride-2 SAME conv -> MEAN -> FC (only the classifier trains)."""
    rng = np.random.default_rng(seed)
    t = {}
    t["x"] = _act("x", (1, 40, 40, 3), 0.05, -3)
    t["w1"] = _weights("w1", (32, 3, 3, 3), rng, per_channel_dim=0, scale=0.02)
    t["b1"] = _bias("b1", 32, 0.05, t["w1"].scale, rng)
    t["c1"] = _act("c1", (1, 20, 20, 32), 6 / 255, -128)
    t["pads"] = Tensor("pads", (4, 2), "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    t["p"] = _act("p", (1, 22, 22, 32), 6 / 255, -128)
    t["w2"] = _weights("w2", (1, 3, 3, 32), rng, per_channel_dim=3, scale=0.03)
    t["b2"] = _bias("b2", 32, 6 / 255, t["w2"].scale, rng)
    t["d"] = _act("d", (1, 20, 20, 32), 6 / 255, -128)
    t["w3"] = _weights("w3", (16, 1, 1, 32), rng, per_channel_dim=0, scale=0.03)
    t["b3"] = _bias("b3", 16, 6 / 255, t["w3"].scale, rng)
    t["e"] = _act("e", (1, 20, 20, 16), 0.04, 3)
    t["w4"] = _weights("w4", (8, 3, 3, 16), rng, per_channel_dim=0, scale=0.02)
    t["b4"] = _bias("b4", 8, 0.04, t["w4"].scale, rng)
    t["g"] = _act("g", (1, 10, 10, 8), 6 / 255, -128)
    t["axes"] = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    t["f"] = _act("f", (1, 8), 0.02, -50)
    t["w5"] = _weights("w5", (4, 8), rng, scale=0.02)
    t["b5"] = _bias("b5", 4, 0.02, t["w5"].scale, rng)
    t["y"] = _act("y", (1, 4), 0.1, 0)
    conv = dict(dilation_h=1, dilation_w=1)
    relu6 = dict(conv, activation="RELU6")
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["c1"], dict(relu6, stride_h=2, stride_w=2, padding="SAME"), "conv_s2"),
        Op("PAD", ["c1", "pads"], ["p"], {}, "pad"),
        Op("DEPTHWISE_CONV_2D", ["p", "w2", "b2"], ["d"], dict(relu6, stride_h=1, stride_w=1, padding="VALID",
                                                               depth_multiplier=1), "dw"),
        Op("CONV_2D", ["d", "w3", "b3"], ["e"], dict(conv, stride_h=1, stride_w=1, padding="SAME",
                                                     activation="NONE"), "project"),
        Op("CONV_2D", ["e", "w4", "b4"], ["g"], dict(relu6, stride_h=2, stride_w=2, padding="SAME"), "conv2_s2"),
        Op("MEAN", ["g", "axes"], ["f"], dict(keep_dims=False), "pool"),
        Op("FULLY_CONNECTED", ["f", "w5", "b5"], ["y"], dict(activation="NONE", keep_num_dims=False), "classifier"),
    ]
    return QuantGraph(t, ops, ["x"], ["y"], name="user_bands")


@pytest.fixture(scope="module")
def user_export():
    return export(user_graph(), "last-1", num_classes=4, lr=1e-2)


def test_user_model_runs_in_bands_byte_identical(user_export):
    r = user_export
    assert r.plan.bands, "the planner should band the frozen chain"
    assert r.plan.peak_bytes < export(user_graph(), "last-1", num_classes=4, lr=1e-2, bands=False).plan.peak_bytes
    first, last, rows = r.plan.bands[0]
    ops = [r.plan.steps[k].name for k in range(first, last + 1) if r.plan.steps[k].mode == "band"]
    assert {"conv_s2", "dw"} <= set(ops)  # the padded stride-2 conv and the depthwise run in bands
    windows = [t for t in r.plan.tensors.values() if t.storage == "band"]
    assert windows and all(t.nbytes < r.train_graph.tensors[t.name].nbytes for t in windows)
    # the image has no reader after the chain: the chain's output is written over it
    assert r.plan.steps[last].inplace_input == "x"
    assert r.plan.tensors["g"].offset == r.plan.tensors["x"].offset and r.plan.tensors["x"].last == last
    _, tg, plan = read_training_file(r.data)  # the reader recomputes the chain and its windows
    assert plan.bands == r.plan.bands and plan.steps[last].inplace_input == "x"
    train_both(r.data, steps=3)


def test_seed_model_runs_in_bands_byte_identical():
    g = load(seed_model("mbv2-w0.35"), input_size=128)
    r = export(g, os.path.join(SCHEMES, "mbv2-w0.35.json") + ":99kb", lr=1e-3)
    assert r.plan.bands and r.plan.peak_bytes <= 157.1 * 1024  # 166.1 KB without bands
    it, _, _, losses = train_both(r.data, steps=2)
    assert it.train_info["plan_arena_bytes"] == r.plan.arena_bytes


def test_mcunet_chain_over_the_image_byte_identical():
    """MCUNet-5FPS 99kb at 128: its first chain (first_conv .. blocks/1/pointwise2) written
    over the 48 KB image, forced (float32 gradients leave the backward as the peak, so the
    planner's choice does not need it), trains byte-identically with the reference."""
    from tflm_train.planner.schedule import build_schedule
    from tflm_train.planner.storage import band_candidates
    from tflm_train.training import SparseScheme, build_train_graph

    g = load(seed_model("mcunet-5fps"), input_size=128)
    scheme = os.path.join(SCHEMES, "mcunet-5fps.json")
    tg = build_train_graph(g, SparseScheme.from_json(scheme, "99kb"), num_classes=10, head="float")
    first, last = band_candidates(tg, *build_schedule(tg, True))[0]
    r = export(g, scheme + ":99kb", lr=1e-3, bands=[(first, last, 1)])
    assert r.plan.bands == [(first, last, 1)] and r.plan.steps[last].inplace_input == "input"
    out = r.plan.tensors[r.train_graph.ops[r.plan.steps[last].op].outputs[0]]
    assert out.offset == r.plan.tensors["input"].offset
    train_both(r.data, steps=2)


def _moved_output(plan, gap_bytes):
    """A copy of ``plan`` with its chain's output ``gap_bytes`` below its input (own buffer)."""
    plan = copy.deepcopy(plan)
    first, last, rows = plan.bands[0]
    x = plan.tensors[plan.steps[last].inplace_input]
    y = plan.tensors[plan.graph.ops[plan.steps[last].op].outputs[0]]
    y.buffer, y.offset = y.name, x.offset - gap_bytes
    return plan


def test_output_over_input_gap_is_exact(user_export):
    """The planner's gap is the exact minimum: the validator's row-by-row replay accepts the
    output exactly that far below the input and refuses it one byte or one output row closer."""
    g = [RowGeometry(40, 20, 3, 2, 1, 0), RowGeometry(20, 20, 3, 1, 1, 1)]  # 3x3 s2 VALID-ish, 3x3 s1 SAME
    for rows in (1, 2, 4):
        for in_row, out_row in ((120, 64), (120, 512), (40, 640)):
            gap = in_place_gap(g, rows, in_row, out_row)
            verify_band_in_place(g, rows, 10_000, in_row, 10_000 - gap, out_row)
            verify_band_in_place(g, rows, 10_000, in_row, 10_000 - gap - 1000, out_row)  # lower: also fine
            for closer in (1, out_row):
                with pytest.raises(BandError, match="overwrites input row"):
                    verify_band_in_place(g, rows, 10_000, in_row, 10_000 - gap + closer, out_row)
    # on the exported plan: verify replays the placed chain
    plan = user_export.plan
    first, last, rows = plan.bands[0]
    shapes = plan.graph.tensors
    gap = in_place_gap(_chain_geoms(plan), rows, 40 * 3, 10 * 8)
    row_out = shapes["g"].shape[2] * shapes["g"].shape[3]
    verify(_moved_output(plan, gap))
    for closer in (1, row_out):
        with pytest.raises(BandError, match="overwrites input row"):
            verify(_moved_output(plan, gap - closer))
    read_later = copy.deepcopy(plan)
    read_later.tensors["x"].last = last + 1
    with pytest.raises(GraphError, match="alive together"):  # the span check sees it
        verify(read_later)
    with pytest.raises(GraphError, match="read after the chain"):  # and so does the band check
        verify_bands(read_later)


def _chain_geoms(plan):
    from tflm_train.planner.bands import chain_geometry

    first, last, _ = plan.bands[0]
    geoms = []
    for k in range(first, last + 1):
        if plan.steps[k].mode != "band":
            continue
        op = plan.graph.ops[plan.steps[k].op]
        x = plan.tensors[op.inputs[0]]
        src, pad = (x.source, x.pad) if x.storage == "virtual_pad" else (x.name, None)
        geoms.append(chain_geometry(plan.graph, op, plan.graph.tensors[src].shape, pad))
    return geoms


def test_runtime_refuses_an_output_too_close_to_its_input(user_export):
    """The C++ reader recomputes the gap: the output exactly that far below the input is
    accepted, 16 bytes (the alignment) or one row closer is refused in one line; the Python reader refuses both."""
    data, tg, plan = user_export.data, user_export.train_graph, user_export.plan
    first, last, rows = plan.bands[0]
    gap = in_place_gap(_chain_geoms(plan), rows, 40 * 3, 10 * 8)
    names = list(tg.tensors)
    x_off = plan.tensors["x"].offset

    gap16 = -(-gap // 16) * 16  # offsets are 16-byte aligned: the closest aligned placement
    for closer in (0, 16, 80):  # exactly there, one aligned step and one output row closer
        def move(m):
            m.tensors[names.index("g")].arenaOffset = x_off - gap16 + closer

        moved = rewrite_metadata(data, move)
        if closer == 0:  # exactly the gap: the runtime accepts it (the planner itself only
            Interpreter(moved)  # places the output at the input's offset, as the reader requires)
            with pytest.raises(GraphError, match="has its own offset"):
                read_training_file(moved)
            continue
        with pytest.raises(MicroRuntimeError, match=r"writes its output -?\d+ bytes below its input, its bands "
                                                    r"need at least -?\d+"):
            Interpreter(moved)
        with pytest.raises(GraphError):
            read_training_file(moved)


def test_validator_catches_a_short_window(user_export):
    plan = copy.deepcopy(user_export.plan)
    verify(plan)
    w = next(t for t in plan.tensors.values() if t.storage == "band")
    shape = plan.graph.tensors[w.name].shape
    w.nbytes -= shape[2] * shape[3]  # one row less than the bands need
    with pytest.raises(BandError, match=r"window needs \d+ rows, \d+ are stored"):
        verify(plan)


def test_validator_replays_rows():
    g = [RowGeometry(20, 10, 3, 2, 1, 0), RowGeometry(10, 10, 3, 1, 1, 1)]  # 3x3 s2, then 3x3 s1 SAME
    verify_band_chain(g, 2, window_rows(g, 2))
    # windows sized for a 1-row consumer kernel: the 3-row consumer reads rows that are not there
    small = window_rows([g[0], RowGeometry(10, 10, 1, 1, 1, 0)], 2)
    with pytest.raises(BandError, match="rows, .* are stored|not in its window"):
        verify_band_chain(g, 2, small)
    with pytest.raises(BandError, match="reads 9 rows"):
        verify_band_chain([g[0], RowGeometry(9, 9, 3, 1, 1, 1)], 2, [3])


def test_runtime_refuses_a_wrong_band_plan(user_export):
    data, tg = user_export.data, user_export.train_graph
    w = next(t for t in user_export.plan.tensors.values() if t.storage == "band")
    shape, index = tg.tensors[w.name].shape, list(tg.tensors).index(w.name)

    def shrink(m):  # one row less than the bands need
        m.tensors[index].arenaBytes = w.nbytes - shape[2] * shape[3]

    def unclosed(m):  # the chain's last step loses its band rows
        next(s for s in m.plan.steps if s.bandRows).bandRows = 0

    for edit, message in ((shrink, r"band window of step \d+ holds \d+ rows, the chain's bands need \d+"),
                          (unclosed, r"band")):
        bad = rewrite_metadata(data, edit)
        with pytest.raises(MicroRuntimeError, match=message):
            Interpreter(bad)
        with pytest.raises(GraphError):
            read_training_file(bad)


def test_band_chain_on_cortex_m4_matches_host(user_export):
    """The user-style chain runs in bands in the Cortex-M4 firmware (QEMU): losses equal the
    host runtime's (which equal the reference's, above); RAM used = data + bss (arena) + stack."""
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(3)
    xs = [rng.integers(-128, 128, (1, 40, 40, 3)).astype(np.int8) for _ in range(2)]
    report = mcu.run_training(user_export.data, xs, [1, 3], steps=2)
    print(report.summary())
    assert report.matches_host, (report.losses, report.host_losses)
    assert report.plan["arena_bytes"] < report.arena_used < report.plan["arena_bytes"] + 1024
    assert report.ram["used"] <= report.ram["region"]
