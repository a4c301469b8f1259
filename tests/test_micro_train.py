"""The training step in the C++ micro runtime against the NumPy reference trainer.

A training .tflite (``tflm_train.export``) is read back (``read_training_file``) and
trained for a few steps from the same state and seed in both: the C++ runtime
(``tflm_train.micro.Interpreter.train_step``, which executes the file's memory plan:
in-place, fused, virtual-pad and bitmask steps, split weights) and the reference
(``tflm_train.training.trainer.train_step`` on the read-back TrainGraph). Losses and
every parameter byte (weights, biases, head, RNG state) must be identical.
"""
import os

import numpy as np
import pytest

from tests.model_factory import _act, _bias, _weights
from tests.paths import REPO, SCHEMES, seed_model
from tflm_train import load
from tflm_train.graph import Op, QuantGraph, Tensor
from tflm_train.io.train_export import export, read_training_file
from tflm_train.micro import Interpreter, MicroRuntimeError
from tflm_train.training.scheme import SparseScheme
from tflm_train.training.trainer import TrainState, forward_logits, train_step

DEFAULT_MODEL = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")


def scheme_file(model: str) -> str:
    return os.path.join(SCHEMES, model + ".json")


# --------------------------------------------------------------------------- models
def zoo_graph(seed: int = 3) -> QuantGraph:
    """Ops beyond the seed models: a PAD read by a pool (materialized, PAD_GRAD), MAX_POOL,
    depth multiplier 2, AVERAGE_POOL, a residual ADD, RESHAPE, MEAN over one axis and a
    FULLY_CONNECTED classifier."""
    rng = np.random.default_rng(seed)
    t = {}
    t["x"] = _act("x", (1, 12, 12, 3), 0.05, 3)
    t["w1"] = _weights("w1", (8, 3, 3, 3), rng, per_channel_dim=0, scale=0.01)
    t["b1"] = _bias("b1", 8, 0.05, t["w1"].scale, rng)
    t["c1"] = _act("c1", (1, 12, 12, 8), 6 / 255, -128)
    t["pads"] = Tensor("pads", (4, 2), "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    t["p"] = _act("p", (1, 14, 14, 8), 6 / 255, -128)
    t["m"] = _act("m", (1, 7, 7, 8), 6 / 255, -128)
    t["w2"] = _weights("w2", (1, 3, 3, 16), rng, per_channel_dim=3, scale=0.02)
    t["b2"] = _bias("b2", 16, 6 / 255, t["w2"].scale, rng)
    t["d"] = _act("d", (1, 7, 7, 16), 0.03, -100)
    t["a"] = _act("a", (1, 4, 4, 16), 0.03, -100)
    t["w3"] = _weights("w3", (16, 1, 1, 16), rng, per_channel_dim=0, scale=0.02)
    t["b3"] = _bias("b3", 16, 0.03, t["w3"].scale, rng)
    t["e"] = _act("e", (1, 4, 4, 16), 0.05, 4)
    t["s"] = _act("s", (1, 4, 4, 16), 0.06, -7)
    t["shape"] = Tensor("shape", (3,), "int32", data=np.array([1, 16, 16], np.int32))
    t["r"] = _act("r", (1, 16, 16), 0.06, -7)
    t["axis"] = Tensor("axis", (1,), "int32", data=np.array([1], np.int32))
    t["f"] = _act("f", (1, 16), 0.04, -20)
    t["w4"] = _weights("w4", (5, 16), rng, scale=0.02)
    t["b4"] = _bias("b4", 5, 0.04, t["w4"].scale, rng)
    t["y"] = _act("y", (1, 5), 0.1, 0)
    conv = dict(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1)
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["c1"], dict(conv, padding="SAME", activation="RELU6"), "conv1"),
        Op("PAD", ["c1", "pads"], ["p"], {}, "pad"),
        Op("MAX_POOL_2D", ["p"], ["m"], dict(filter_h=2, filter_w=2, stride_h=2, stride_w=2, padding="VALID",
                                             activation="NONE"), "max_pool"),
        Op("DEPTHWISE_CONV_2D", ["m", "w2", "b2"], ["d"], dict(conv, padding="SAME", activation="RELU",
                                                               depth_multiplier=2), "dw_m2"),
        Op("AVERAGE_POOL_2D", ["d"], ["a"], dict(filter_h=3, filter_w=3, stride_h=2, stride_w=2, padding="SAME",
                                                 activation="NONE"), "avg_pool"),
        Op("CONV_2D", ["a", "w3", "b3"], ["e"], dict(conv, padding="VALID", activation="NONE"), "pointwise"),
        Op("ADD", ["a", "e"], ["s"], dict(activation="NONE"), "residual"),
        Op("RESHAPE", ["s", "shape"], ["r"], {}, "reshape"),
        Op("MEAN", ["r", "axis"], ["f"], dict(keep_dims=False), "mean"),
        Op("FULLY_CONNECTED", ["f", "w4", "b4"], ["y"], dict(activation="NONE", keep_num_dims=False), "classifier"),
    ]
    return QuantGraph(t, ops, ["x"], ["y"], name="train_zoo")


ZOO_SCHEME = SparseScheme(4, {0: 0.5, 1: 0.5, 2: 1.0}, name="zoo")


def pad_conv_graph(seed: int = 5) -> QuantGraph:
    """conv -> PAD -> stride-2 VALID depthwise -> MEAN -> FC (the seed models' downsampling pattern)."""
    rng = np.random.default_rng(seed)
    t = {}
    t["x"] = _act("x", (1, 9, 9, 4), 0.05, -3)
    t["w1"] = _weights("w1", (6, 3, 3, 4), rng, per_channel_dim=0, scale=0.01)
    t["b1"] = _bias("b1", 6, 0.05, t["w1"].scale, rng)
    t["c1"] = _act("c1", (1, 9, 9, 6), 6 / 255, -128)
    t["pads"] = Tensor("pads", (4, 2), "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    t["p"] = _act("p", (1, 11, 11, 6), 6 / 255, -128)
    t["w2"] = _weights("w2", (1, 3, 3, 6), rng, per_channel_dim=3, scale=0.02)
    t["b2"] = _bias("b2", 6, 6 / 255, t["w2"].scale, rng)
    t["d"] = _act("d", (1, 5, 5, 6), 0.03, -100)
    t["axes"] = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    t["f"] = _act("f", (1, 6), 0.02, -50)
    t["w3"] = _weights("w3", (4, 6), rng, scale=0.02)
    t["b3"] = _bias("b3", 4, 0.02, t["w3"].scale, rng)
    t["y"] = _act("y", (1, 4), 0.1, 0)
    conv = dict(dilation_h=1, dilation_w=1)
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], ["c1"], dict(conv, stride_h=1, stride_w=1, padding="SAME",
                                                      activation="RELU6"), "conv1"),
        Op("PAD", ["c1", "pads"], ["p"], {}, "pad"),
        Op("DEPTHWISE_CONV_2D", ["p", "w2", "b2"], ["d"], dict(conv, stride_h=2, stride_w=2, padding="VALID",
                                                               activation="RELU6", depth_multiplier=1), "dw_s2"),
        Op("MEAN", ["d", "axes"], ["f"], dict(keep_dims=False), "pool"),
        Op("FULLY_CONNECTED", ["f", "w3", "b3"], ["y"], dict(activation="NONE", keep_num_dims=False), "classifier"),
    ]
    return QuantGraph(t, ops, ["x"], ["y"], name="pad_conv")


# --------------------------------------------------------------------------- helpers
def samples(shape, n, seed=0, num_classes=10):
    rng = np.random.default_rng(seed)
    return [(rng.integers(-128, 128, shape).astype(np.int8), int(rng.integers(0, num_classes))) for _ in range(n)]


def train_both(data: bytes, steps: int = 5, seed: int = 0):
    """Train the C++ runtime and the reference from the file's state; assert equal bytes at every step."""
    _, tg, _ = read_training_file(data)
    state = TrainState.from_train_graph(tg)
    it = Interpreter(data)
    losses = []
    for k, (x, label) in enumerate(samples(tg.tensors[tg.inputs[0]].shape, steps, seed, tg.num_classes)):
        ref = train_step(tg, state, x, label)
        got = it.train_step(x, label)
        assert np.float32(got) == np.float32(ref), f"step {k}: loss {got} != reference {ref}"
        params = it.parameters()
        assert set(params) == set(state.values)
        for name, value in state.values.items():
            assert params[name].dtype == value.dtype and params[name].shape == value.shape, name
            differ = np.flatnonzero(params[name].reshape(-1).view(np.uint8) != value.reshape(-1).view(np.uint8))
            assert differ.size == 0, f"step {k}: {name} differs from the reference in {differ.size} bytes"
        losses.append(got)
    info = it.train_info
    assert info["steps_done"] == steps
    assert info["rng_state"] == int(state.values.get("rng/state", np.zeros(1, np.uint32))[0])
    assert np.float32(info["logit_absmax"]) == np.float32(state.logit_absmax)
    return it, tg, state, losses


# --------------------------------------------------------------------------- equality with the reference
@pytest.fixture(scope="module")
def mcunet48():
    return load(seed_model("mcunet-5fps"), input_size=48)


@pytest.mark.parametrize("head", ["float", "int8"])
def test_mcunet_99kb_matches_reference(mcunet48, head):
    r = export(mcunet48, scheme_file("mcunet-5fps") + ":99kb", head=head, lr=1e-3)
    assert r.plan.fuse and r.plan.inplace and r.plan.masks and r.plan.sparse_params
    modes = {s.mode for s in r.plan.steps}
    assert {"in_place", "fused", "skip"} <= modes and r.plan.bitmasks  # the plan's rules are exercised
    assert any(t.split for t in r.plan.tensors.values())
    it, tg, state, losses = train_both(r.data, steps=5)
    assert all(np.isfinite(losses))
    # the runtime's memory is the plan's arena plus a small runtime state
    info = it.train_info
    assert info["plan_arena_bytes"] == r.plan.arena_bytes
    assert info["arena_bytes"] <= r.plan.peak_bytes


@pytest.mark.parametrize("flags", [dict(fuse=False, inplace=False, masks=False, sparse_params=False),
                                   dict(fuse=True, inplace=False, masks=True, sparse_params=False)])
def test_mcunet_plan_variants_match_reference(mcunet48, flags):
    r = export(mcunet48, scheme_file("mcunet-5fps") + ":49kb", lr=1e-3, **flags)
    train_both(r.data, steps=2, seed=1)


@pytest.mark.parametrize("scheme", ["last-2", "bias-only", SparseScheme(4, {2: 0.5, 3: 0.25, 4: 0.5}, name="half")])
def test_default_model_matches_reference(scheme):
    g = load(DEFAULT_MODEL)
    for head in ("float", "int8", "keep"):  # keep: the model's own int8 classifier trains on
        # exactness, not the device budget: "half" trains early layers and plans 266 KB
        r = export(g, scheme, head=head, lr=1e-3, budget_check=False)
        train_both(r.data, steps=5 if head == "float" else 2, seed=2)


@pytest.mark.parametrize("head", ["float", "int8"])
def test_zoo_ops_match_reference(head):
    r = export(zoo_graph(), ZOO_SCHEME, head=head, num_classes=5, lr=0.01)
    types = {op.type for op in r.train_graph.ops}
    assert {"PAD_GRAD", "MAX_POOL_2D_GRAD", "AVERAGE_POOL_2D_GRAD", "RESHAPE_GRAD", "MEAN_GRAD", "GRAD_ACCUMULATE",
            "DEPTHWISE_CONV_2D_GRAD_INPUT", "DEPTHWISE_CONV_2D_UPDATE", "CONV_2D_UPDATE", "BIAS_UPDATE"} <= types
    assert ("FULLY_CONNECTED_UPDATE" in types) == (head == "int8")
    train_both(r.data, steps=5, seed=3)


def test_unfolded_pad_virtual_crop_matches_reference(monkeypatch):
    """With PAD folding off, the depthwise gradient of the padded tensor is written as a
    virtual crop straight into the PAD_GRAD output, and the depthwise update reads the
    padded input through a virtual PAD."""
    from tflm_train.training import autodiff

    monkeypatch.setattr(autodiff._Compiler, "foldable_pad", lambda self, x: None)
    r = export(pad_conv_graph(), SparseScheme(3, {0: 1.0, 1: 0.5}, name="all"), num_classes=4, lr=0.02)
    storages = {t.storage for t in r.plan.tensors.values()}
    assert {"virtual_crop", "virtual_pad"} <= storages
    train_both(r.data, steps=4, seed=4)
    r = export(pad_conv_graph(), SparseScheme(3, {0: 1.0, 1: 0.5}, name="all"), num_classes=4, lr=0.02,
               fuse=False)
    train_both(r.data, steps=2, seed=4)


# --------------------------------------------------------------------------- float16 gradient storage
def float16_file(graph, scheme, **kwargs):
    """The training file with grad_dtype="float16": every gradient but the logits' is binary16."""
    r = export(graph, scheme, grad_dtype="float16", **kwargs)
    grads = {n: t.dtype for n, t in r.train_graph.tensors.items() if t.kind == "gradient"}
    assert {n for n, d in grads.items() if d != "float16"} == {n for n in grads if n.startswith("grad/logits")}
    assert all(grads[n] == "float32" for n in grads if n.startswith("grad/logits"))
    return r


@pytest.mark.parametrize("head", ["float", "int8"])
def test_float16_gradients_match_reference(mcunet48, head):
    """Stored binary16 gradients (host: software conversion) in every execution mode: the
    runtime rounds where the reference rounds, byte for byte; the plan needs less SRAM."""
    r = float16_file(mcunet48, scheme_file("mcunet-5fps") + ":99kb", head=head, lr=1e-3)
    modes = {s.mode for s in r.plan.steps}
    assert {"in_place", "fused", "skip"} <= modes and r.plan.bitmasks
    f32 = export(mcunet48, scheme_file("mcunet-5fps") + ":99kb", head=head, lr=1e-3)
    assert r.plan.peak_bytes < f32.plan.peak_bytes
    _, tg, _, losses = train_both(r.data, steps=3)
    assert {t.dtype for t in tg.tensors.values() if t.kind == "gradient"} == {"float16", "float32"}  # read back
    assert all(np.isfinite(losses))


def test_float16_gradients_zoo_and_plan_variants_match_reference(mcunet48, monkeypatch):
    """The zoo ops (pool gradients summed in their float16 output, PAD_GRAD, MEAN_GRAD,
    GRAD_ACCUMULATE, depth multiplier 2), plans without in-place / fused steps, and a
    virtual-crop gradient, all with float16 gradients."""
    for head in ("float", "int8"):
        r = float16_file(zoo_graph(), ZOO_SCHEME, head=head, num_classes=5, lr=0.01)
        train_both(r.data, steps=4, seed=3)
    r = float16_file(mcunet48, scheme_file("mcunet-5fps") + ":49kb", lr=1e-3, fuse=False, inplace=False, masks=False,
                     sparse_params=False)
    train_both(r.data, steps=2, seed=1)
    from tflm_train.training import autodiff

    monkeypatch.setattr(autodiff._Compiler, "foldable_pad", lambda self, x: None)
    r = float16_file(pad_conv_graph(), SparseScheme(3, {0: 1.0, 1: 0.5}, name="all"), num_classes=4, lr=0.02)
    assert "virtual_crop" in {t.storage for t in r.plan.tensors.values()}
    train_both(r.data, steps=3, seed=4)


def test_unknown_dtype_is_refused_by_both_readers(small_file):
    """A tensor dtype this version does not know (a later minor version's): one line from each reader."""
    from tflm_train.graph import GraphError

    def unknown(m):
        m.tensors[m.signature.outputs[0]].dtype = 9

    data = rewrite_metadata(small_file, unknown)
    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL: .*unknown dtype 9") as e:
        Interpreter(data)
    assert "\n" not in str(e.value)
    with pytest.raises(GraphError, match="unknown dtype"):
        read_training_file(data)


# --------------------------------------------------------------------------- predict and the trained .tflite
def test_predict_and_to_tflite(mcunet48):
    r = export(mcunet48, scheme_file("mcunet-5fps") + ":99kb", lr=1e-3)
    it, tg, state, _ = train_both(r.data, steps=3, seed=5)
    xs = [x for x, _ in samples(tg.tensors[tg.inputs[0]].shape, 3, seed=6)]
    for x in xs:  # the trained forward pass equals the reference's, byte for byte
        assert it.predict(x).tobytes() == forward_logits(tg, state, x).tobytes()
    trained = it.to_tflite()
    stock = Interpreter(trained)  # an inference-only .tflite the phase-1 runtime (and TFLM) can run
    assert not stock.is_training_model
    from tflm_train import reference
    from tflm_train.io.tflite_reader import read_tflite

    g = read_tflite(trained)
    for name, value in it.parameters().items():
        if name in g.tensors:
            assert g.tensors[name].data.tobytes() == value.tobytes(), name
    from tests.test_micro_host import tflm_invoke

    expected = tflm_invoke(trained, [[x] for x in xs])  # stock TFLite Micro runs the trained model
    for x, want in zip(xs, expected):
        y = stock.infer(x)
        assert y.tobytes() == np.asarray(reference.invoke(g, x)[0]).tobytes() == np.asarray(want[0]).tobytes()
    # the quantized head keeps the float head's decisions on these samples
    agree = sum(int(np.argmax(stock.infer(x)) == np.argmax(it.predict(x))) for x in xs)
    assert agree >= 2


# --------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def small_file():
    return export(load(DEFAULT_MODEL), "last-2", lr=1e-3).data


def test_wrong_inputs_give_errors(small_file):
    it = Interpreter(small_file)
    shape = it.train_info["image_shape"]
    x = np.zeros(shape, np.int8)
    with pytest.raises(ValueError, match="image shape"):
        it.train_step(np.zeros((1, 5, 5, 1), np.int8), 0)
    with pytest.raises(ValueError, match="dtype"):
        it.train_step(x.astype(np.float32), 0)
    with pytest.raises(MicroRuntimeError, match="TT_INVALID_ARGUMENT: label 10 outside"):
        it.train_step(x, 10)
    with pytest.raises(MicroRuntimeError, match="label -1 outside"):
        it.train_step(x, -1)
    # the C API checks the byte count itself
    import ctypes

    tr = ctypes.byref(it._trainer)
    short = np.zeros(x.size - 1, np.int8)
    st = it._lib.tt_train_step(tr, short.ctypes.data_as(ctypes.c_void_p), short.nbytes, 0, None)
    assert st == 4 and b"image is" in it._lib.tt_train_error_message(tr)
    assert it.train_info["steps_done"] == 0  # nothing ran
    assert np.isfinite(it.train_step(x, 3))


def test_zero_copy_input(small_file):
    """An image written into tt_train_input_buffer trains without a copy, with the same result."""
    import ctypes

    a, b = Interpreter(small_file), Interpreter(small_file)
    (x, label), = samples(a.train_info["image_shape"], 1, seed=9)
    tr = ctypes.byref(b._trainer)
    ptr = b._lib.tt_train_input_buffer(tr)
    assert ptr
    ctypes.memmove(ptr, x.ctypes.data, x.nbytes)
    loss = ctypes.c_float()
    assert b._lib.tt_train_step(tr, ptr, x.nbytes, label, ctypes.byref(loss)) == 0
    assert np.float32(loss.value) == np.float32(a.train_step(x, label))
    assert all(v.tobytes() == b.parameters()[k].tobytes() for k, v in a.parameters().items())


def test_arena_too_small(small_file):
    it = Interpreter(small_file)
    need = it.train_info["arena_bytes"]
    with pytest.raises(MicroRuntimeError, match=r"TT_ARENA_TOO_SMALL: arena too small: \d+ bytes given, \d+ needed"):
        Interpreter(small_file, train_arena_size=need - 64)
    Interpreter(small_file, train_arena_size=need + 15)  # any alignment of the arena fits


def test_inference_model_is_not_trainable():
    g = load(DEFAULT_MODEL)
    it = Interpreter(g.to_tflite())
    assert not it.is_training_model
    with pytest.raises(ValueError, match="no training metadata"):
        it.train_step(np.zeros(it.input_details[0]["shape"], np.int8), 0)


def _metadata_span(data: bytes):
    """(offset, length) of the training metadata buffer inside the file."""
    from tflm_train.io.tflite_schema import fb
    from tflm_train.schema import METADATA_NAME

    model = fb.Model.GetRootAs(bytearray(data), 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name().decode() == METADATA_NAME:
            buf = model.Buffers(m.Buffer())
            start = buf._tab.Vector(buf._tab.Offset(4))
            return start, buf.DataLength()
    raise AssertionError("no metadata")


def test_malformed_metadata_gives_errors(small_file):
    start, length = _metadata_span(small_file)
    data = bytearray(small_file)
    data[start + 4:start + 8] = b"XXXX"  # file identifier
    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL: malformed training metadata: file identifier"):
        Interpreter(bytes(data))
    data = bytearray(small_file)
    data[start:start + 4] = (length + 100).to_bytes(4, "little")  # root offset past the end
    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL: malformed"):
        Interpreter(bytes(data))
    # random corruption of the metadata: an error or a valid (different) file, never a crash
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(150):
        data = bytearray(small_file)
        for pos in rng.integers(start, start + length, 4):
            data[pos] = int(rng.integers(0, 256))
        try:
            it = Interpreter(bytes(data))
        except MicroRuntimeError as e:
            assert e.status in ("TT_MALFORMED_MODEL", "TT_UNSUPPORTED", "TT_SHAPE_MISMATCH"), str(e)
            assert "\n" not in e.message and e.message
            rejected += 1
            continue
        x = np.zeros(it.train_info["image_shape"], np.int8)
        try:
            it.train_step(x, 0)
        except MicroRuntimeError:
            pass
    assert rejected > 50


def rewrite_metadata(data: bytes, edit) -> bytes:
    """The training file with its TrainModel passed through ``edit(model)`` (object API) and re-packed."""
    import flatbuffers

    from tflm_train.io.tflite_schema import fb
    from tflm_train.io.tflite_writer import pack_model
    from tflm_train.schema import FILE_IDENTIFIER, METADATA_NAME, tfmt

    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    entry = next(m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) == METADATA_NAME)
    buf = model.buffers[entry.buffer]
    meta = tfmt.TrainModelT.InitFromPackedBuf(bytearray(np.asarray(buf.data, np.uint8).tobytes()), 0)
    edit(meta)
    b = flatbuffers.Builder(1 << 16)
    b.Finish(meta.Pack(b), file_identifier=FILE_IDENTIFIER)
    buf.data = np.frombuffer(bytes(b.Output()), np.uint8).copy()
    return pack_model(model)


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def test_inconsistent_plans_are_rejected(small_file):
    Interpreter(rewrite_metadata(small_file, lambda m: None))  # the re-packed file itself is fine

    def overlap(m):  # the label moved onto the image: two buffers alive together on the same bytes
        image, label = (m.tensors[i] for i in m.signature.inputs)
        label.arenaOffset = image.arenaOffset

    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL: .*alive at the same step on overlapping bytes"):
        Interpreter(rewrite_metadata(small_file, overlap))

    def outside(m):
        t = next(t for t in m.tensors if t.storage == 1)
        t.arenaOffset = m.plan.arenaBytes

    with pytest.raises(MicroRuntimeError, match="outside the arena"):
        Interpreter(rewrite_metadata(small_file, outside))

    def unknown_op(m):
        m.opTypes[m.ops[-1].opcode] = "CONV_3D_UPDATE"

    with pytest.raises(MicroRuntimeError, match="TT_UNSUPPORTED: unsupported: training op type 'CONV_3D_UPDATE'"):
        Interpreter(rewrite_metadata(small_file, unknown_op))

    def twice(m):
        m.plan.steps[1].op = m.plan.steps[0].op

    with pytest.raises(MicroRuntimeError, match="runs in steps 0 and 1"):
        Interpreter(rewrite_metadata(small_file, twice))

    def life(m):  # a buffer read after its planned life ended: the logits' gradient (no name in the file)
        loss_op = next(o for o in m.ops if _s(m.opTypes[o.opcode]) == "SOFTMAX_CROSS_ENTROPY")
        grad = m.tensors[loss_op.outputs[1]]
        assert grad.name is None
        grad.lastStep = grad.firstStep

    with pytest.raises(MicroRuntimeError, match="outside its planned life"):
        Interpreter(rewrite_metadata(small_file, life))

    def no_table_room(m):  # a forward convolution whose scratch has no room for its requantization table
        s = next(s for s in m.plan.steps if _s(m.opTypes[m.ops[s.op].opcode]) == "CONV_2D" and s.mode == 0
                 and m.ops[s.op].phase == 0)
        s.scratchBytes = 4

    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL: .*bytes of scratch for the requantization"):
        Interpreter(rewrite_metadata(small_file, no_table_room))

    for major in (1, 3):  # version 1 (the uncompact format) and a future one: refused in one line
        def version(m):
            m.versionMajor, m.versionMinor = major, 0

        expected = f"TT_UNSUPPORTED: unsupported: training metadata version {major}.0; this runtime reads version 2.x"
        with pytest.raises(MicroRuntimeError, match=expected + r" \(export the model again\)"):
            Interpreter(rewrite_metadata(small_file, version))

    def mode(m):  # an in-place step whose output is not at its input's offset
        s = next(s for s in m.plan.steps if s.mode == 1)
        out = m.tensors[m.ops[s.op].outputs[0]]
        out.arenaOffset = out.arenaOffset + 16 if out.arenaOffset + out.arenaBytes + 16 <= m.plan.arenaBytes else 0

    with pytest.raises(MicroRuntimeError, match="TT_MALFORMED_MODEL"):
        Interpreter(rewrite_metadata(small_file, mode))


def test_host_profile_times_every_executed_op_and_changes_nothing(small_file):
    """Interpreter.profile: one row per executed op in order (the hook both interpreters call),
    CPU times that add up to the run, and the same result as the unprofiled call."""
    from tflm_train.micro import profile_table

    steps = read_training_file(small_file)[2].steps
    a, b = Interpreter(small_file), Interpreter(small_file)
    (x, label), = samples(a.train_info["image_shape"], 1, seed=4)
    rows = a.profile(x, label)
    assert [r["step"] for r in rows] == list(range(len(steps)))
    assert [(r["name"], r["type"], r["mode"]) for r in rows] == [(s.name, s.type, s.mode) for s in steps]
    assert all(r["seconds"] >= 0 for r in rows) and abs(sum(r["share"] for r in rows) - 1) < 1e-3
    b.train_step(x, label)  # profiling changes no byte of the step
    assert all(a.parameters()[k].tobytes() == v.tobytes() for k, v in b.parameters().items())
    forward = a.profile(x, run="predict")
    assert 0 < len(forward) < len(steps) and all(s.phase == "forward" for s in steps[:len(forward)])
    infer = a.profile(x, run="infer")  # the inference interpreter (subgraph 0)
    assert [r["name"] for r in infer] == a.ops
    table = profile_table({"train_step": rows, "infer": infer})
    assert table.startswith("train_step: ") and "\ninfer: " in table and "by type: " in table
    with pytest.raises(ValueError, match="run must be one of"):
        a.profile(x, run="fit")
    with pytest.raises(ValueError, match="needs a label"):
        a.profile(x)
    assert a.profile(x, run="predict") and a._lib.tt_host_profile_stop() == 0  # recording ended with the call
