"""The memory planner: every plan the tests make is checked by an independent validator.

``validate_plan`` re-derives, from the training graph and the plan's declarations alone,
what each step reads and writes, every tensor's lifetime, and then checks that no two
tensors alive at the same step share bytes unless the plan declared it (an alias, or an
in-place step of an op and layout the runtime contract allows), that every buffer lies in
the arena (persistent ones in the persistent region), and that the order respects every
data hazard of the op list. It shares no code with the planner.
"""
import json
import os

import numpy as np
import pytest

import tflm_train as tt
from tflm_train.graph import GraphError
from tflm_train.planner import plan, plan_peak
from tflm_train.planner.liveness import inference_activation_peak
from tflm_train.training import SparseScheme, TrainState, build_train_graph, train_step
from tflm_train.training.train_graph import TrainGraph

from .paths import SCHEMES, SEED_MODELS, seed_model

# op type -> (input positions that may be overwritten, allowed layouts)
IN_PLACE_CONTRACT = {
    "DEPTHWISE_CONV_2D": ((0,), {"channel"}),
    "DEPTHWISE_CONV_2D_GRAD_INPUT": ((0,), {"channel"}),
    "CONV_2D": ((0,), {"pixel_ascending", "pixel_descending", "row_ascending", "row_descending"}),
    "CONV_2D_GRAD_INPUT": ((0,), {"pixel_ascending", "pixel_descending"}),
    "ADD": ((0, 1), {"elementwise"}),
    "CLAMP_GRAD": ((0,), {"elementwise"}),
    "GRAD_ACCUMULATE": ((0, 1), {"elementwise"}),
    "PAD_GRAD": ((0,), {"crop_ascending"}),
}
VIRTUAL_PAD_READERS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 0, "CONV_2D_UPDATE": 1, "DEPTHWISE_CONV_2D_UPDATE": 1}


def _hazards(ops):
    """(j, i) pairs, j before i in list order, with a RAW / WAR / WAW hazard."""
    out = []
    for i, b in enumerate(ops):
        for j in range(i):
            a = ops[j]
            if (set(a.outputs) & set(b.inputs)) or (set(a.inputs) & set(b.outputs)) or (set(a.outputs) & set(b.outputs)):
                out.append((j, i))
    return out


def validate_plan(p):
    tg = p.graph
    n = len(p.steps)
    tensors = p.tensors
    steps = p.steps

    # 1. every op runs once (or as grad + apply halves), in an order that respects every hazard
    first_pos, last_pos = {}, {}
    for k, s in enumerate(steps):
        first_pos.setdefault(s.op, k)
        last_pos[s.op] = k
        assert s.part in ("", "grad", "apply")
    assert sorted(first_pos) == list(range(len(tg.ops))), "plan must run every op"
    for j, i in _hazards(tg.ops):
        assert last_pos[j] < first_pos[i] or (first_pos[j] < first_pos[i] and last_pos[j] < last_pos[i]), \
            f"op {i} ({tg.ops[i].name}) scheduled before op {j} ({tg.ops[j].name})"

    # 2. what each step really reads / writes, from the declarations
    def resolve(t):
        while tensors[t].storage == "virtual_pad":
            t = tensors[t].source
        return t

    masks = {y: m for y, (m, _, _) in p.bitmasks.items()}
    expected_reads, expected_writes = [], []
    carried = []
    chain = []  # ops of the band chain being collected: it runs (reads and writes) at its last step
    scratch_at = list(range(n))  # the step at which each step's scratch is in use
    for k, s in enumerate(steps):
        op = tg.ops[s.op]
        if s.mode == "band":
            assert op.type in ("CONV_2D", "DEPTHWISE_CONV_2D") and op.phase == "forward" and not carried
            assert not chain or resolve(op.inputs[0]) == tg.ops[chain[-1][1]].outputs[0], "a band op reads its predecessor"
            chain.append((k, s.op))
            expected_reads.append(set())
            expected_writes.append(set())
            if s.band_rows:
                inner = {tg.ops[i].outputs[0] for _, i in chain[:-1]}
                assert all(tensors[t].storage == "band" for t in inner) and tensors[op.outputs[0]].storage == "arena"
                expected_reads[k] = {resolve(t) for _, i in chain for t in tg.ops[i].inputs} - inner
                expected_writes[k] = inner | {op.outputs[0]} | {masks[op.outputs[0]]} if op.outputs[0] in masks \
                    else inner | {op.outputs[0]}
                for j, _ in chain:
                    scratch_at[j] = k
                chain = []
            continue
        if s.mode != "skip":
            assert not chain, f"step {k} ({s.name}) interrupts a band chain"
        if s.part:
            expected_reads.append(set(s.reads))
            expected_writes.append(set(s.writes))
            continue
        if s.mode == "skip":
            assert op.type in ("PAD", "PAD_GRAD")
            if op.type == "PAD":
                assert tensors[op.outputs[0]].storage == "virtual_pad"
            else:
                assert tensors[op.inputs[0]].storage == "virtual_crop"
            expected_reads.append(set())
            expected_writes.append(set())
            continue
        reads = {resolve(t) for t in op.inputs}
        if op.type == "CLAMP_GRAD" and op.inputs[1] in masks:
            reads = (reads - {op.inputs[1]}) | {masks[op.inputs[1]]}
        if s.mode == "fused":
            assert op.type == "CONV_2D" and tensors[op.outputs[0]].storage == "channel"
            carried.append((reads, op.outputs[0]))
            expected_reads.append(set())
            expected_writes.append(set())
            continue
        for r, out in carried:
            assert op.type == "DEPTHWISE_CONV_2D" and resolve(op.inputs[0]) == out, "fused conv must feed the next step"
            reads = (reads - {out}) | r
        carried = []
        writes = set()
        for t in op.outputs:
            writes.add(tensors[t].source if tensors[t].storage == "virtual_crop" else t)
        writes |= {masks[y] for y in masks if y in op.outputs}
        expected_reads.append(reads)
        expected_writes.append(writes)
    assert not carried and not chain
    for k, s in enumerate(steps):
        assert set(s.reads) == expected_reads[k], f"step {k} ({s.name}) reads {s.reads}"
        assert set(s.writes) == expected_writes[k], f"step {k} ({s.name}) writes {s.writes}"

    # virtual pads only where every reader can skip padded taps
    for t in tensors.values():
        if t.storage == "virtual_pad":
            for k, s in enumerate(steps):
                op = tg.ops[s.op]
                if t.name in op.inputs and s.mode != "skip":
                    assert op.type in VIRTUAL_PAD_READERS and op.inputs.index(t.name) == VIRTUAL_PAD_READERS[op.type]

    # 3. lifetimes
    first, last = {}, {}
    for t in tg.inputs:
        first[t] = 0
    for k in range(n):
        for t in expected_writes[k]:
            first.setdefault(t, k)
        for t in expected_reads[k]:
            last[t] = k
    for t in tg.outputs:
        last[t] = n - 1
    live = {}
    for t, tp in tensors.items():
        if tp.storage == "persistent":
            live[t] = (0, n - 1)
        elif tp.storage in ("arena", "band"):
            assert t in first, f"arena tensor {t} is never written"
            live[t] = (first[t], max(last.get(t, first[t]), first[t]))
            assert (tp.first, tp.last) == live[t], f"{t}: plan says life {tp.first}..{tp.last}, real {live[t]}"
    for k in range(n):
        for t in expected_reads[k] | expected_writes[k]:
            assert tensors[t].storage in ("arena", "band", "persistent", "flash"), f"step {k} touches {t} without storage"

    # 4. placement inside the arena
    for t, (f, l) in live.items():
        tp = tensors[t]
        assert tp.offset is not None and tp.offset >= 0 and tp.offset + tp.nbytes <= p.arena_bytes, t
        if tp.storage == "persistent":
            assert tp.offset + tp.nbytes <= p.persistent_bytes, t
        else:
            assert tp.offset >= p.persistent_bytes, t

    # 5. sharing bytes only where declared legal
    alias_parent = {}

    def cls(t):
        while alias_parent.get(t, t) != t:
            t = alias_parent[t]
        return t

    inplace_steps = []
    for k, s in enumerate(steps):
        op = tg.ops[s.op]
        if s.mode == "alias":
            assert op.type in ("RESHAPE", "RESHAPE_GRAD")
            src, out = resolve(op.inputs[0]), op.outputs[0]
            assert tensors[src].offset == tensors[out].offset
            alias_parent[cls(out)] = cls(src)
        elif s.mode == "in_place":
            assert op.type in IN_PLACE_CONTRACT, f"{op.type} may not run in place"
            positions, layouts = IN_PLACE_CONTRACT[op.type]
            assert s.layout in layouts, f"{op.type} in place with layout {s.layout}"
            assert s.inplace_input in {resolve(op.inputs[i]) for i in positions if i < len(op.inputs)}
            out = sorted(expected_writes[k])[0] if len(expected_writes[k]) == 1 else \
                next(t for t in expected_writes[k] if t not in masks.values())
            assert tensors[out].offset == tensors[s.inplace_input].offset, "in-place output must start at the input"
            if op.type.startswith("DEPTHWISE"):
                assert int(op.attrs.get("depth_multiplier", 1)) == 1
            if s.layout.startswith("pixel"):
                assert tg.tensors[op.inputs[1]].shape[1:3] == (1, 1) and op.attrs.get("stride_h", 1) == 1
            inplace_steps.append((k, s.inplace_input, out))
        elif s.mode == "band" and s.inplace_input is not None:  # a band chain's output over its input
            first = max(j for j, _, _ in p.bands if j <= k)
            assert s.band_rows and s.inplace_input == resolve(tg.ops[steps[first].op].inputs[0])
            assert tensors[op.outputs[0]].offset == tensors[s.inplace_input].offset
            inplace_steps.append((k, s.inplace_input, op.outputs[0]))  # the rows: bands.verify_band_in_place
        else:
            assert s.inplace_input is None

    def shares_legally(a, b):
        if cls(a) == cls(b):
            return True
        for k, src, out in inplace_steps:
            for x, y in ((a, b), (b, a)):
                if cls(x) == cls(src) and cls(y) == cls(out):
                    members = [t for t in live if cls(t) == cls(src)]
                    if all(live[m][1] <= k for m in members) and live[y][0] >= k:
                        return True
        return False

    spans = sorted(((tensors[t].offset, tensors[t].offset + tensors[t].nbytes, t) for t in live), key=lambda x: x[0])
    for i, (o1, e1, a) in enumerate(spans):
        for o2, e2, b in spans[i + 1:]:
            if o2 >= e1:
                break
            if live[a][0] <= live[b][1] and live[b][0] <= live[a][1]:
                assert shares_legally(a, b), f"{a} and {b} share bytes while both alive"
    for k, s in enumerate(steps):
        if s.scratch_bytes:
            assert s.scratch_offset >= p.persistent_bytes and s.scratch_offset + s.scratch_bytes <= p.arena_bytes
            for j, sj in enumerate(steps):  # band steps' scratches are in use together at their chain's last step
                if j != k and sj.scratch_bytes and scratch_at[j] == scratch_at[k]:
                    assert sj.scratch_offset >= s.scratch_offset + s.scratch_bytes \
                        or s.scratch_offset >= sj.scratch_offset + sj.scratch_bytes, f"scratches of {j} and {k} overlap"
            for t, (f, l) in live.items():
                if f <= scratch_at[k] <= l:
                    tp = tensors[t]
                    assert tp.offset + tp.nbytes <= s.scratch_offset or s.scratch_offset + s.scratch_bytes <= tp.offset, \
                        f"scratch of step {k} overlaps {t}"
        if s.mode == "fused":  # the consumer holds one channel of the fused output in its scratch
            nxt = next(j for j in range(k + 1, n) if steps[j].mode != "skip")
            t = tg.tensors[tg.ops[s.op].outputs[0]]
            assert steps[nxt].scratch_bytes >= t.shape[1] * t.shape[2]
        if s.mode == "in_place" and s.layout in ("channel",):
            t = tg.tensors[s.inplace_input]
            assert s.scratch_bytes >= t.shape[1] * t.shape[2] * t.nbytes // t.size

    # 6. reported numbers
    assert p.lower_bound_bytes <= p.arena_bytes
    assert p.peak_bytes == p.arena_bytes + p.runtime_state_bytes
    assert sum(p.breakdown().values()) == p.peak_bytes
    assert all(v >= 0 for v in p.breakdown().values())
    return p


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def graphs():
    return {m: tt.load(seed_model(m), input_size=64) for m in SEED_MODELS}


def published(model, key):
    return SparseScheme.from_json(os.path.join(SCHEMES, model + ".json"), key)


def schemes_for(model, g):
    keys = list(json.load(open(os.path.join(SCHEMES, model + ".json")))["schemes"])
    return [published(model, keys[0]), published(model, keys[-1]), SparseScheme.bias_only(g),
            SparseScheme.last_k(g, 7), SparseScheme.full(g)]


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("model", SEED_MODELS)
def test_every_plan_is_valid(graphs, model):
    g = graphs[model]
    for i, scheme in enumerate(schemes_for(model, g)):
        tg = build_train_graph(g, scheme)
        validate_plan(plan(tg))
        if scheme.name == "full":
            continue
        validate_plan(plan(tg, reorder=False))
        quick = dict(refine=False, algorithm="greedy_by_size")
        validate_plan(plan(tg, fuse=False, inplace=False, masks=False, sparse_params=False, **quick))
        validate_plan(plan(tg, inplace=False, **quick) if i % 2 else plan(tg, fuse=False, **quick))
        validate_plan(plan(tg, masks=False, algorithm="greedy_by_breadth", refine=False))


@pytest.mark.parametrize("model", SEED_MODELS)
def test_reordering_lowers_the_peak(graphs, model):
    g = graphs[model]
    for key in json.load(open(os.path.join(SCHEMES, model + ".json")))["schemes"]:
        tg = build_train_graph(g, published(model, key))
        on, off = plan(tg, reorder=True), plan(tg, reorder=False)
        assert on.peak_bytes < off.peak_bytes, (key, on.peak_bytes, off.peak_bytes)
        # the conventional model keeps weight-gradient buffers of the trained elements
        assert any(t.name.endswith("/weight_grad") for t in off.tensors.values())
        assert not any(t.name.endswith("/weight_grad") for t in on.tensors.values())


def test_execution_rules_lower_the_peak(graphs):
    g = graphs["mcunet-5fps"]
    tg = build_train_graph(g, published("mcunet-5fps", "49kb"))
    plain = plan(tg, fuse=False, inplace=False, masks=False, sparse_params=False)
    best = plan(tg)
    assert best.peak_bytes < plain.peak_bytes
    for flag in ("fuse", "inplace", "masks", "sparse_params"):
        assert plan(tg, **{flag: False}).peak_bytes >= best.peak_bytes, flag


def test_rules_are_applied(graphs):
    """The seed models exercise every execution rule the runtime contract lists."""
    g = tt.load(seed_model("mcunet-5fps"), input_size=128)
    p = validate_plan(plan(build_train_graph(g, published("mcunet-5fps", "49kb"))))
    modes = {s.mode for s in p.steps}
    assert {"skip", "fused", "in_place"} <= modes
    assert "alias" in {s.mode for s in validate_plan(plan(g)).steps}  # the inference graph's final RESHAPE
    layouts = {s.layout for s in p.steps if s.mode == "in_place"}
    # the first conv's rows over the image: the band chain over it replaces that unless bands are off
    unbanded = validate_plan(plan(build_train_graph(g, published("mcunet-5fps", "49kb")), bands=False))
    layouts |= {s.layout for s in unbanded.steps if s.mode == "in_place"}
    assert {"channel", "elementwise"} <= layouts
    assert any(l.startswith("row") for l in layouts) and any(l.startswith("pixel") for l in layouts)
    storages = {t.storage for t in p.tensors.values()}
    assert {"virtual_pad", "channel", "persistent", "flash", "arena"} <= storages
    assert p.bitmasks and any(t.split for t in p.tensors.values())


def test_plan_order_gives_the_same_training_step(graphs):
    """Running the ops in the planned order gives the reference's bytes (hazards respected)."""
    g = graphs["proxyless-w0.3"]
    tg = build_train_graph(g, published("proxyless-w0.3", "74kb"), lr=0.1)
    p = plan(tg)
    reordered = TrainGraph(tg.tensors, [tg.ops[i] for i in p.order], tg.inputs, tg.outputs, name=tg.name,
                           scheme=tg.scheme, lr=tg.lr, seed=tg.seed, head_type=tg.head_type,
                           num_classes=tg.num_classes, layers=tg.layers, head=tg.head)
    assert p.order != list(range(len(tg.ops))), "the planner moves updates: a real reordering is tested"
    rng = np.random.default_rng(3)
    s1, s2 = TrainState.from_train_graph(tg), TrainState.from_train_graph(reordered)
    for step in range(2):
        x = rng.integers(-128, 128, size=tg.tensors[tg.inputs[0]].shape).astype(np.int8)
        assert train_step(tg, s1, x, step) == train_step(reordered, s2, x, step)
    for name in s1.values:
        assert np.array_equal(s1.values[name], s2.values[name]), name


def test_deferred_updates_are_a_different_order(graphs):
    g = graphs["mbv2-w0.35"]
    tg = build_train_graph(g, published("mbv2-w0.35", "99kb"))
    off = plan(tg, reorder=False)
    parts = [s.part for s in off.steps]
    first_apply = parts.index("apply")
    assert all(p == "apply" for p in parts[first_apply:]), "all updates applied after the backward"
    assert all(off.steps[k].phase != "backward" for k in range(first_apply, len(parts)))


def test_inference_plan(graphs):
    g128 = tt.load(seed_model("mcunet-5fps"), input_size=128)
    p = validate_plan(plan(g128, bands=True))  # the forward pass with band chains (as a training step's)
    # PAD virtual, depthwise / pointwise in place: far below the plain live-bytes peak (PADs materialized)
    assert p.arena_bytes < inference_activation_peak(g128)
    # the first conv writes its output rows over the image: below image + output (49152 + 65536)
    assert p.lower_bound_bytes <= p.arena_bytes < 114688
    # the first band chain (first_conv ..) writes its output over the image; without bands the
    # first conv alone writes its output rows over it
    assert p.steps[1].name == "first_conv" and p.steps[1].mode == "band"
    assert p.steps[p.bands[0][1]].inplace_input == "input"
    # plan(graph): the inference interpreter's plan, which has no band chains (it runs none)
    unbanded = validate_plan(plan(g128))
    assert not unbanded.bands and unbanded.arena_bytes == plan(g128, bands=False).arena_bytes
    assert unbanded.steps[1].name == "first_conv" and unbanded.steps[1].layout == "row_descending"
    assert p.arena_bytes < unbanded.arena_bytes
    assert p.persistent_bytes == 0


def test_placement_heuristics(graphs):
    g = graphs["mbv2-w0.35"]
    tg = build_train_graph(g, published("mbv2-w0.35", "73kb"))
    best = plan(tg)
    assert best.algorithm_bytes["greedy_by_size"] >= best.arena_bytes
    assert best.arena_bytes == min(best.algorithm_bytes.values())
    for h in ("greedy_by_size", "greedy_by_breadth"):
        validate_plan(plan(tg, algorithm=h))
    with pytest.raises(GraphError):
        plan(tg, algorithm="no-such-heuristic")


def test_plan_peak_and_api(graphs):
    g = graphs["mcunet-5fps"]
    s = published("mcunet-5fps", "49kb")
    assert plan_peak(g, s) == plan(g, s, refine=False, algorithm="greedy_by_size").peak_bytes
    assert plan_peak(g, s) >= plan(g, s).peak_bytes
    assert plan_peak(g, s, refine=True, algorithm="best") == plan(g, s).peak_bytes
    assert tt.plan(g, s).peak_bytes == plan(g, s).peak_bytes
    with pytest.raises(GraphError):
        plan(build_train_graph(g, s), s)
    with pytest.raises(GraphError):
        plan("not a graph", s)


def test_crop_written_by_grad_input():
    """A PAD_GRAD whose input only its GRAD_INPUT producer writes becomes a crop of that op."""
    from tflm_train.training.train_graph import TrainOp, TrainTensor

    c = 4
    w = np.ones((1, 3, 3, c), np.int8)
    tensors = {
        "gy": TrainTensor("gy", (1, 4, 4, c), "float32", "input"),
        "w": TrainTensor("w", (1, 3, 3, c), "int8", "constant", [0.1] * c, [0] * c, 3, w),
        "gpad": TrainTensor("gpad", (1, 6, 6, c), "float32", "gradient"),
        "gx": TrainTensor("gx", (1, 4, 4, c), "float32", "gradient"),
    }
    geometry = dict(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, pad_top=0, pad_left=0, depth_multiplier=1,
                    weight_scale=[0.1] * c)
    ops = [TrainOp("DEPTHWISE_CONV_2D_GRAD_INPUT", ["gy", "w"], ["gpad"], geometry, "gi", "backward"),
           TrainOp("PAD_GRAD", ["gpad"], ["gx"], dict(paddings=[[0, 0], [1, 1], [1, 1], [0, 0]]), "crop", "backward")]
    tg = TrainGraph(tensors, ops, ["gy"], ["gx"], name="crop")
    p = validate_plan(plan(tg))
    assert p.tensors["gpad"].storage == "virtual_crop" and p.tensors["gpad"].source == "gx"
    assert [s.mode for s in p.steps] == ["normal", "skip"]
    assert p.arena_bytes == 2 * 4 * 4 * c * 4  # gy and gx, never the padded gradient
    assert plan(tg, fuse=False).arena_bytes > p.arena_bytes


def test_verify_rejects_overlap(graphs):
    p = plan(build_train_graph(graphs["mcunet-5fps"], published("mcunet-5fps", "49kb")))
    p.verify()
    arena = [t for t in p.tensors.values() if t.storage == "arena"]
    a, b = next((x, y) for x in arena for y in arena
                if x.buffer != y.buffer and x.first <= y.last and y.first <= x.last)
    b.offset = a.offset
    with pytest.raises(GraphError, match="overlapping"):
        p.verify()


def test_plot_and_json(graphs, tmp_path):
    p = plan(build_train_graph(graphs["mcunet-5fps"], published("mcunet-5fps", "49kb")))
    png = p.plot(str(tmp_path / "mem.png"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    d = json.loads(p.to_json())
    assert d["peak_bytes"] == p.peak_bytes and len(d["schedule"]) == len(p.steps)
    assert set(d["breakdown"]) >= {"saved activations", "working activations", "gradients", "trainable parameters",
                                   "runtime state"}


def test_cli_plan(tmp_path, capsys):
    from tflm_train.cli import main

    model = seed_model("proxyless-w0.3")
    scheme = os.path.join(SCHEMES, "proxyless-w0.3.json") + ":49kb"
    png = str(tmp_path / "m.png")
    assert main(["plan", model, "--scheme", scheme, "--input-size", "64", "--json", "--plot", png]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peak_bytes"] > 0 and os.path.getsize(png) > 0
    assert main(["plan", model, "--scheme", scheme, "--input-size", "64", "--no-reorder"]) == 0
    assert "reorder=off" in capsys.readouterr().out
    assert main(["plan", model, "--scheme", os.path.join(SCHEMES, "proxyless-w0.3.json") + ":nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tflm-train: error:") and "nope" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- in-place layouts
def _simulate_in_place(layout, x_shape, y_shape, itemsize_x, itemsize_y, reads_rows=None):
    """Replay an in-place step's memory accesses on one buffer (input at its start, output
    written from its start): every chunk first reads what it needs, then writes its output.
    Fails if a read meets a byte some earlier write already replaced."""
    _, h, w, c = x_shape
    _, ho, wo, co = y_shape
    size = max(h * w * c * itemsize_x, ho * wo * co * itemsize_y)
    dirty = np.zeros(size, bool)

    def read(lo, hi):
        assert not dirty[lo:hi].any(), f"{layout}: read of an overwritten byte in [{lo}, {hi})"

    def write(lo, hi):
        dirty[lo:hi] = True

    if layout == "channel":
        assert c == co
        for ch in range(c):
            for p in range(h * w):  # copy input channel ch to the scratch
                read((p * c + ch) * itemsize_x, (p * c + ch + 1) * itemsize_x)
            for p in range(ho * wo):
                write((p * c + ch) * itemsize_y, (p * c + ch + 1) * itemsize_y)
    elif layout.startswith("pixel"):
        assert (h, w) == (ho, wo)
        px_in, px_out = c * itemsize_x, co * itemsize_y
        pixels = range(h * w) if layout.endswith("ascending") else reversed(range(h * w))
        for p in pixels:
            read(p * px_in, (p + 1) * px_in)
            write(p * px_out, (p + 1) * px_out)
    elif layout.startswith("row"):
        row_in, row_out = w * c * itemsize_x, wo * co * itemsize_y
        rows = range(ho) if layout.endswith("ascending") else reversed(range(ho))
        for r in rows:
            lo, hi = reads_rows(r)
            read(lo * row_in, (hi + 1) * row_in)
            write(r * row_out, (r + 1) * row_out)
    elif layout == "elementwise":
        n = h * w * c
        for i in range(n):
            read(i * itemsize_x, (i + 1) * itemsize_x)
            write(i * itemsize_y, (i + 1) * itemsize_y)
    else:
        raise AssertionError(layout)


@pytest.mark.parametrize("model", SEED_MODELS)
def test_in_place_layouts_never_overwrite_unread_input(model):
    """Every in-place step of a small plan, replayed byte by byte in its declared order."""
    g = tt.load(seed_model(model), input_size=32)
    keys = list(json.load(open(os.path.join(SCHEMES, model + ".json")))["schemes"])
    seen = set()
    for tg in (build_train_graph(g, published(model, keys[-1])), plan(g).graph):
        p = plan(tg)
        for k, s in enumerate(p.steps):
            if s.mode != "in_place" or s.layout in ("crop_ascending",):
                continue
            op = tg.ops[s.op]
            out = next(t for t in s.writes if not t.endswith("/mask"))
            x, y = tg.tensors[s.inplace_input], tg.tensors[out]
            xs = x.shape if len(x.shape) == 4 else (1, 1, 1, x.size)
            ys = y.shape if len(y.shape) == 4 else (1, 1, 1, y.size)
            rows = None
            if s.layout.startswith("row"):
                kh = tg.tensors[op.inputs[1]].shape[1]
                st, dil = op.attrs.get("stride_h", 1), op.attrs.get("dilation_h", 1)
                src = op.inputs[0]
                pt = p.tensors[src].pad[0] if p.tensors[src].storage == "virtual_pad" else 0
                rows = lambda r: (max(0, r * st - pt), min(xs[1] - 1, r * st - pt + (kh - 1) * dil))  # noqa: E731
            _simulate_in_place(s.layout, xs, ys, x.nbytes // x.size, y.nbytes // y.size, rows)
            seen.add(s.layout)
    assert {"channel", "elementwise"} <= seen and any(l.startswith("row") for l in seen)


def test_layout_simulator_catches_a_wrong_order():
    with pytest.raises(AssertionError, match="overwritten"):  # expansion pixel-wise in ascending order
        _simulate_in_place("pixel_ascending", (1, 4, 4, 8), (1, 4, 4, 16), 1, 1)
    with pytest.raises(AssertionError, match="overwritten"):  # the first conv's rows in ascending order
        _simulate_in_place("row_ascending", (1, 16, 16, 3), (1, 8, 8, 16), 1, 1,
                           lambda r: (max(0, 2 * r - 1), min(15, 2 * r + 1)))
    _simulate_in_place("row_descending", (1, 16, 16, 3), (1, 8, 8, 16), 1, 1,
                       lambda r: (max(0, 2 * r - 1), min(15, 2 * r + 1)))
