"""Band chains (row-band execution of forward chains, tflm_train/planner/bands.py): the
planner chooses them where they lower the peak, the validator replays them row by row and
refuses a wrong one, and the C++ runtime (host and firmware) running them stays byte-identical
with the NumPy reference trainer."""
import copy
import ctypes
import os

import numpy as np
import pytest

from tests.model_factory import _act, _bias, _weights
from tests.paths import SCHEMES, seed_model
from tests.test_micro_train import rewrite_metadata, samples, train_both
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

    _both_readers_refuse(data, ((shrink, r"band window of step \d+ holds \d+ rows, the chain's bands need \d+"),
                                (unclosed, r"band")))


def _both_readers_refuse(data: bytes, edits) -> None:
    """Each ``(edit, message)``: the file with its metadata passed through ``edit`` is refused
    by the C++ runtime with ``message`` and by the Python reader."""
    for edit, message in edits:
        bad = rewrite_metadata(data, edit)
        with pytest.raises(MicroRuntimeError, match=message):
            Interpreter(bad)
        with pytest.raises(GraphError):
            read_training_file(bad)


def _train_on_cortex_m4(data: bytes, synthetic: bool = False):
    """Two steps of the user-style model's file in the Cortex-M4 firmware (QEMU) on samples in
    flash (or generated by the firmware): losses and logits equal the host runtime's; RAM used
    = data + bss (arena) + stack, within the region."""
    from tflm_train.micro import mcu

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(3)
    xs = None if synthetic else [rng.integers(-128, 128, (1, 40, 40, 3)).astype(np.int8) for _ in range(2)]
    report = mcu.run_training(data, xs, [1, 3], steps=2)
    assert report.synthetic == synthetic
    print(report.summary())
    assert report.matches_host, (report.losses, report.host_losses)
    assert report.plan["arena_bytes"] < report.arena_used < report.plan["arena_bytes"] + 1024
    assert report.ram["used"] <= report.ram["region"]
    return report


def test_band_chain_on_cortex_m4_matches_host(user_export):
    """The user-style chain runs in bands in the Cortex-M4 firmware (QEMU), equal to the host
    runtime (which equals the reference, above)."""
    _train_on_cortex_m4(user_export.data)


def test_windows_hold_only_the_rows_the_next_op_computes():
    """Window rule of 2.2: behind a 1x1 op a window holds the rows that op computes in a band
    (3 in the first band, then 2: the 5x5 stride-2 consumer's new rows), not the rows its
    whole window reads (2.1: 5); the replay finds every read row."""
    g = [RowGeometry(64, 64, 3, 1, 1, 1),   # 3x3 s1 SAME
         RowGeometry(64, 64, 1, 1, 1, 0),   # 1x1
         RowGeometry(64, 32, 5, 2, 1, 2)]   # 5x5 s2 over a virtual PAD of 2
    assert window_rows(g, 1) == [3, 5]
    verify_band_chain(g, 1, [3, 5])
    with pytest.raises(BandError, match="not in its window|are stored"):
        verify_band_chain(g, 1, [2, 5])


def test_proxyless_float16_chains_its_first_block_byte_identical():
    """ProxylessNAS-w0.3 98kb, float16 gradients: the forward's peak was blocks/0/depthwise's
    whole 64 KB output; with 2.2 windows the planner chains first_conv .. blocks/1/pointwise2
    (both depthwise outputs become windows) and the peak drops; the C++ runtime runs it
    byte-identically with the reference."""
    g = load(seed_model("proxyless-w0.3"), input_size=128)
    r = export(g, os.path.join(SCHEMES, "proxyless-w0.3.json") + ":98kb", lr=1e-3, grad_dtype="float16")
    chained = {r.plan.steps[k].name for first, last, _ in r.plan.bands for k in range(first, last + 1)}
    assert {"first_conv", "blocks/0/depthwise", "blocks/0/pointwise2", "blocks/1/depthwise"} <= chained
    assert r.plan.tensors["blocks/0/depthwise/output"].storage == "band"
    assert r.plan.peak_bytes <= 148.5 * 1024  # 151.0 KB with the 2.1 windows (chain not chosen)
    train_both(r.data, steps=2)


def test_band_chains_of_version_2_1_are_refused(user_export):
    """A 2.1 file sized its windows by the older rule: both readers refuse its band chains in one line."""
    old = rewrite_metadata(user_export.data, lambda m: setattr(m, "versionMinor", 1))
    with pytest.raises(MicroRuntimeError, match=r"band chains of training metadata 2\.1 .*export the model again"):
        Interpreter(old)
    with pytest.raises(GraphError, match=r"training metadata 2\.1: its band chains .*export the model again"):
        read_training_file(old)


# --------------------------------------------------------------------------- the image streamed in rows
@pytest.fixture(scope="module")
def streamed_export():
    return export(user_graph(), "last-1", num_classes=4, lr=1e-2, stream_input=True)


def _params_equal(a: Interpreter, b: Interpreter) -> None:
    pa, pb = a.parameters(), b.parameters()
    assert set(pa) == set(pb)
    for name in pa:
        assert pa[name].tobytes() == pb[name].tobytes(), name


def test_streamed_input_is_a_window_the_validator_replays(user_export, streamed_export):
    r = streamed_export
    assert r.plan.stream_input and not user_export.plan.stream_input
    x = r.plan.tensors["x"]
    first, last, rows = r.plan.bands[0]
    assert x.storage == "band" and (x.first, x.last) == (last, last)
    assert x.nbytes < r.train_graph.tensors["x"].nbytes and x.nbytes % (40 * 3) == 0
    assert r.plan.peak_bytes < user_export.plan.peak_bytes
    _, _, plan = read_training_file(r.data)  # the reader recomputes the window from the stored flag
    assert plan.stream_input and plan.tensors["x"].nbytes == x.nbytes
    short = copy.deepcopy(r.plan)
    short.tensors["x"].nbytes -= 40 * 3
    with pytest.raises(BandError, match=r"streamed input's window needs \d+ rows, \d+ are stored"):
        verify(short)
    flag_only = copy.deepcopy(user_export.plan)
    flag_only.stream_input = True
    with pytest.raises(GraphError, match="streams its input 'x', but no band chain reads it"):
        verify(flag_only)


def test_stream_input_refused_where_a_trained_layer_reads_the_image():
    with pytest.raises(GraphError, match=r"stream_input: .*input 'x' cannot arrive in rows: step \d+ "
                                         r"\(conv_s2/update, CONV_2D_UPDATE\) reads it outside step 0 \(conv_s2"):
        export(user_graph(), "full", num_classes=4, lr=1e-2, stream_input=True)


def test_streamed_input_trains_byte_identical(streamed_export):
    """The streamed plan with a row callable, with a whole image (rows copied by the runtime),
    and the reference (train_both) give the same bytes; rows are asked for in ascending order,
    each once; a non-streamed plan asks for rows 0..H-1 first."""
    data = streamed_export.data
    it, tg, state, losses = train_both(data, steps=3)
    assert it.train_info["input_window_rows"] == streamed_export.plan.tensors["x"].nbytes // (40 * 3)
    assert it._lib.tt_train_input_buffer(ctypes.byref(it._trainer)) is None  # never whole in the arena
    rows_it = Interpreter(data)
    asked = []
    for k, (x, label) in enumerate(samples((1, 40, 40, 3), 3, 0, 4)):
        seen = []
        loss = rows_it.train_step(lambda r, x=x, seen=seen: seen.append(r) or x[0, r], label)
        assert np.float32(loss) == np.float32(losses[k])
        assert seen == sorted(set(seen)) and len(seen) <= 40
        asked.append(seen)
    _params_equal(rows_it, it)
    x, _ = samples((1, 40, 40, 3), 1, 5, 4)[0]
    assert rows_it.predict(lambda r: x[0, r]).tobytes() == it.predict(x).tobytes()
    whole = Interpreter(export(user_graph(), "last-1", num_classes=4, lr=1e-2).data)
    seen = []
    whole.train_step(lambda r: seen.append(r) or x[0, r], 1)
    assert seen == list(range(40))


def test_row_source_failure_changes_nothing(streamed_export):
    it = Interpreter(streamed_export.data)
    x, label = samples((1, 40, 40, 3), 1, 2, 4)[0]
    before = {n: v.tobytes() for n, v in it.parameters().items()}

    def broken(r):
        if r == 7:
            raise OSError("camera DMA timeout")
        return x[0, r]

    with pytest.raises(OSError, match="camera DMA timeout"):
        it.train_step(broken, label)
    with pytest.raises(ValueError, match=r"row 0: the row source gave int8 \(3,\), the model expects 120 int8 values"):
        it.train_step(lambda r: np.zeros(3, np.int8), label)
    assert {n: v.tobytes() for n, v in it.parameters().items()} == before and it.train_info["steps_done"] == 0
    ref = Interpreter(streamed_export.data)
    assert it.train_step(lambda r: x[0, r], label) == ref.train_step(x, label)
    _params_equal(it, ref)


def test_runtime_refuses_a_wrong_streamed_window(streamed_export):
    data, tg = streamed_export.data, streamed_export.train_graph
    index = list(tg.tensors).index("x")

    def shrink(m):
        m.tensors[index].arenaBytes -= 40 * 3

    def unflag(m):
        m.plan.streamInput = False

    _both_readers_refuse(data, ((shrink, r"the streamed input's window holds \d+ rows, the chain's bands need \d+"),
                                (unflag, r"the image is a band window, but the plan does not stream its input")))


def test_mcunet_float16_streamed_byte_identical():
    """MCUNet-5FPS 99kb at 128, float16 gradients, the image streamed: the 48 KB image never
    sits whole in the arena (its window is at most 16 rows), the peak is at or below the issue's
    138 KB target, and the C++ runtime fed row by row matches the reference byte for byte."""
    g = load(seed_model("mcunet-5fps"), input_size=128)
    r = export(g, os.path.join(SCHEMES, "mcunet-5fps.json") + ":99kb", lr=1e-3, grad_dtype="float16",
               stream_input=True)
    assert r.plan.stream_input and r.plan.tensors["input"].nbytes <= 128 * 128 * 3 // 8  # 48 KB whole
    assert r.plan.peak_bytes <= 138 * 1000  # 144.1 KB with the image whole (2.1 windows), 141.6 KB (2.2)
    it, tg, state, losses = train_both(r.data, steps=2)
    rows_it = Interpreter(r.data)
    for k, (x, label) in enumerate(samples((1, 128, 128, 3), 2, 0, 10)):
        assert np.float32(rows_it.train_step(lambda row, x=x: x[0, row], label)) == np.float32(losses[k])
    _params_equal(rows_it, it)


def test_streamed_input_on_cortex_m4_matches_host(user_export, streamed_export):
    """The firmware feeds the streamed plan's image row by row from flash, or generates the rows
    (tt_train_step_rows): losses and logits equal the host runtime's; its arena is the smaller
    streamed plan's."""
    for synthetic in (False, True):
        report = _train_on_cortex_m4(streamed_export.data, synthetic)
        assert report.plan["arena_bytes"] == streamed_export.plan.arena_bytes < user_export.plan.arena_bytes
