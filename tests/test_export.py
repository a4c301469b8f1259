"""The training .tflite: ``infer`` runs in stock TFLite Micro and LiteRT byte for byte as our
reference; the training graph and its plan read back to the same training step; malformed
training metadata gives one clear error."""
import os

import flatbuffers
import numpy as np
import pytest

import tflm_train as tt
from tflm_train import reference
from tflm_train.graph import GraphError
from tflm_train.io.tflite_schema import fb
from tflm_train.io.tflite_writer import add_subgraph, new_model, pack_model
from tflm_train.io.train_export import UNNAMED_KINDS, parse_train_metadata, read_training_file, write_training_file
from tflm_train.schema import FILE_IDENTIFIER, METADATA_NAME, tfmt
from tflm_train.training import SparseScheme, TrainState, train_step

from .paths import SCHEMES, SEED_MODELS, seed_model


def tflm_outputs(data: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(data)
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0)


def scheme(model, key="49kb"):
    return SparseScheme.from_json(os.path.join(SCHEMES, model + ".json"), key)


@pytest.fixture(scope="module")
def exported():
    out = {}
    for m in SEED_MODELS:
        g = tt.load(seed_model(m), input_size=128)
        out[m] = tt.export(g, scheme(m), lr=0.02, seed=7)
    return out


def images(shape, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=shape).astype(np.int8) for _ in range(n)]


# --------------------------------------------------------------------------- infer
@pytest.mark.parametrize("model", SEED_MODELS)
def test_infer_is_byte_exact_in_tflite_micro(exported, model):
    r = exported[model]
    infer, _, _ = read_training_file(r.data)
    assert infer.tensors[infer.outputs[0]].shape[-1] == 10
    for x in images(infer.tensors[infer.inputs[0]].shape, 2, seed=1):
        ours = reference.invoke(r.infer_graph, x)[0]
        micro = tflm_outputs(r.data, x)
        assert micro.dtype == np.int8 and micro.tobytes() == ours.tobytes()
        assert reference.invoke(infer, x)[0].tobytes() == ours.tobytes()


@pytest.mark.parametrize("model", SEED_MODELS)
def test_infer_loads_in_litert(exported, model):
    """Default LiteRT (optimized kernels, XNNPACK) loads and runs it; its reference kernels
    give the same bytes as TFLite Micro and our reference."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    r = exported[model]
    x = images(r.infer_graph.tensors[r.infer_graph.inputs[0]].shape, 1, seed=2)[0]
    ours = reference.invoke(r.infer_graph, x)[0]
    it = Interpreter(model_content=r.data)
    assert list(it.get_signature_list()) == ["infer"]
    out = list(it.get_signature_runner("infer")(**{r.infer_graph.inputs[0]: x}).values())[0]
    assert out.shape == ours.shape and out.dtype == np.int8
    exact = Interpreter(model_content=r.data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    out = list(exact.get_signature_runner("infer")(**{r.infer_graph.inputs[0]: x}).values())[0]
    assert out.tobytes() == ours.tobytes()


def test_custom_op_subgraph_breaks_tflite_micro():
    """Why the training graph is metadata: a second subgraph with a custom op makes TFLite
    Micro refuse the whole file (it resolves every subgraph's ops), though subgraph 0 is plain."""
    g = tt.load(seed_model("mcunet-5fps"), input_size=32)
    model = new_model()
    add_subgraph(model, g, "infer", "infer")
    add_subgraph(model, g, "train", "train")
    oc = fb.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
    oc.customCode = "TFLMT_CONV_2D_GRAD_INPUT"
    oc.version = 1
    model.operatorCodes.append(oc)
    model.subgraphs[1].operators[1].opcodeIndex = len(model.operatorCodes) - 1
    model.subgraphs[1].operators[1].builtinOptionsType = 0
    model.subgraphs[1].operators[1].builtinOptions = None
    data = pack_model(model)
    x = np.zeros((1, 32, 32, 3), np.int8)
    with pytest.raises(Exception):
        tflm_outputs(data, x)
    without = new_model()
    add_subgraph(without, g, "infer", "infer")
    assert tflm_outputs(pack_model(without), x).tobytes() == reference.invoke(g, x)[0].tobytes()


# --------------------------------------------------------------------------- training graph round trip
def _same_value(a, b):
    if isinstance(a, (list, tuple, np.ndarray)):
        return np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("model", SEED_MODELS)
def test_read_back_gives_the_same_training_step(exported, model):
    r = exported[model]
    _, tg, p = read_training_file(r.data)
    src = r.train_graph
    assert tg.inputs == src.inputs and tg.outputs == src.outputs and tg.num_classes == 10
    assert (tg.lr, tg.seed, tg.head_type, tg.scheme) == (src.lr, src.seed, src.head_type, src.scheme)
    # names: gradients (and ops) have none in the file (the Debug section is off by default)
    assert len(tg.tensors) == len(src.tensors)
    rename = dict(zip(src.tensors, tg.tensors))
    assert all(rename[n] == n for n, t in src.tensors.items() if t.kind not in UNNAMED_KINDS)
    assert any(rename[n] != n for n in src.tensors)
    for name, t in src.tensors.items():
        u = tg.tensors[rename[name]]
        assert (u.shape, u.dtype, u.kind) == (t.shape, t.dtype, t.kind), name
        if t.data is not None:
            assert u.data.tobytes() == t.data.tobytes(), name
        if t.scale is not None:
            assert np.array_equal(u.scale, np.asarray(t.scale, np.float32).astype(np.float64)), name
            assert np.array_equal(u.zero_point, t.zero_point), name
    assert [(o.type, o.phase, o.inputs, o.outputs) for o in tg.ops] == \
           [(o.type, o.phase, [rename[n] for n in o.inputs], [rename[n] for n in o.outputs]) for o in src.ops]
    # with --debug-names every tensor and op reads back under its own name
    _, named, _ = read_training_file(write_training_file(r.infer_graph, src, r.plan, debug_names=True))
    assert list(named.tensors) == list(src.tensors)
    assert [o.name for o in named.ops] == [o.name for o in src.ops]
    for o, q in zip(src.ops, tg.ops):
        assert set(o.attrs) == set(q.attrs)
        for k in o.attrs:
            assert _same_value(o.attrs[k], q.attrs[k]), (o.name, k)
    assert tg.parameters == src.parameters and tg.parameters

    s1, s2 = TrainState.from_train_graph(src), TrainState.from_train_graph(tg)
    shape = src.tensors[src.inputs[0]].shape
    for step, x in enumerate(images(shape, 2, seed=5)):
        assert train_step(src, s1, x, step % 10) == train_step(tg, s2, x, step % 10)
    for name in s1.values:
        assert s1.values[name].tobytes() == s2.values[name].tobytes(), name

    # the plan reads back identical
    assert (p.arena_bytes, p.persistent_bytes, p.peak_bytes) == (r.plan.arena_bytes, r.plan.persistent_bytes,
                                                                 r.plan.peak_bytes)
    assert p.order == r.plan.order
    assert p.offsets() == {rename.get(t, t): o for t, o in r.plan.offsets().items()}
    assert [(s.mode, s.inplace_input, s.layout, s.scratch_offset) for s in p.steps] == \
           [(s.mode, rename.get(s.inplace_input, s.inplace_input), s.layout, s.scratch_offset) for s in r.plan.steps]


def _meta(data: bytes):
    model = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    entry = next(m for m in model.metadata if (m.name.decode() if isinstance(m.name, bytes) else m.name) == METADATA_NAME)
    return model, entry.buffer, parse_train_metadata(bytes(model.buffers[entry.buffer].data))


def _repack(model, k, meta) -> bytes:
    b = flatbuffers.Builder(1 << 16)
    b.Finish(meta.Pack(b), file_identifier=FILE_IDENTIFIER)
    model.buffers[k].data = np.frombuffer(bytes(b.Output()), np.uint8).copy()
    return pack_model(model)


def test_metadata_contents(exported):
    r = exported["mcunet-5fps"]
    _, _, m = _meta(r.data)
    assert (m.versionMajor, m.versionMinor) == (2, 2)
    assert m.signature.key == "train"
    names = [n.decode() if isinstance(n, bytes) else n for n in list(m.signature.inputNames) + list(m.signature.outputNames)]
    assert names == ["input", "label", "loss"]
    assert m.scheme.nBiasUpdate == 20 and [w.convIndex for w in m.scheme.weightUpdate] == [23, 24, 27, 30, 33, 39]
    assert m.optimizer.learningRate == pytest.approx(0.02) and m.seed == 7 and m.numClasses == 10
    model = fb.ModelT.InitFromPackedBuf(bytearray(r.data), 0)
    infer = model.subgraphs[0].tensors
    by_name = {infer[t.inferTensor].name.decode(): t for t in m.tensors if t.inferTensor >= 0}
    assert by_name["blocks/13/pointwise1/bias"].kind == tfmt.TensorKind.PARAMETER
    assert by_name["blocks/0/depthwise/weight"].kind == tfmt.TensorKind.CONSTANT
    assert m.plan.peakBytes == r.plan.peak_bytes and m.plan.reorder
    # constants share the inference subgraph's buffers; shapes and scales are referenced, names not copied
    infer_buffers = {t.buffer for t in infer if t.buffer}
    frozen = by_name["blocks/0/depthwise/weight"]
    assert frozen.buffer in infer_buffers and frozen.inferTensor >= 0
    assert frozen.name is None and frozen.shape is None and frozen.quantization.scale is None
    assert all(t.name is None for t in m.tensors if t.inferTensor >= 0)
    assert m.debug is None
    # QAS tables: the update and grad-input ops refer to the weight's scales instead of a copy
    w = m.tensors.index(by_name["blocks/10/pointwise1/weight"])
    for o in m.ops:
        for a in o.attrs or []:
            if a.name in (b"weight_scale", "weight_scale") and w in list(o.inputs):
                assert a.type == tfmt.AttrType.SCALES and list(a.ints) == [w]
    # the file is at most 10 % larger than its own inference model
    assert len(r.data) <= 1.10 * len(r.infer_graph.to_tflite())
    assert len(r.data) < 1 << 20, "MCUNet's training file fits a 1 MB flash"


# --------------------------------------------------------------------------- malformed files
@pytest.fixture(scope="module")
def small():
    g = tt.load(seed_model("proxyless-w0.3"), input_size=48)
    return tt.export(g, scheme("proxyless-w0.3", "74kb")).data


def test_not_a_training_file(small):
    plain = tt.load(seed_model("proxyless-w0.3"), input_size=48).to_tflite()
    with pytest.raises(GraphError, match="not a training file"):
        read_training_file(plain)


def test_corrupt_metadata_bytes(small):
    model, k, _ = _meta(small)
    meta = bytes(model.buffers[k].data)
    start = small.find(meta)
    assert start > 0
    bad_id = bytearray(small)
    bad_id[start + 4:start + 8] = b"XXXX"
    with pytest.raises(GraphError, match="file identifier"):
        read_training_file(bytes(bad_id))
    bad_root = bytearray(small)
    bad_root[start:start + 4] = (len(meta) + 100).to_bytes(4, "little")
    with pytest.raises(GraphError, match="root offset"):
        read_training_file(bytes(bad_root))
    rng = np.random.default_rng(0)
    for trial in range(12):
        junk = bytearray(small)
        pos = start + 8 + int(rng.integers(0, len(meta) - 64))
        junk[pos:pos + 48] = rng.integers(0, 256, 48).astype(np.uint8).tobytes()
        try:
            read_training_file(bytes(junk))
        except GraphError as e:
            assert "\n" not in str(e)
        # a corruption inside a float or a name may still be a well-formed file: no crash is what counts


def test_inconsistent_metadata(small):
    for major in (1, 3):  # version 1 (before the compact format) and a future version: one clear line
        model, k, meta = _meta(small)
        meta.versionMajor, meta.versionMinor = major, 0
        with pytest.raises(GraphError, match=f"training metadata version {major}.0 is not supported: this reader "
                                             r"reads version 2.x \(export the model again\)"):
            read_training_file(_repack(model, k, meta))

    model, k, meta = _meta(small)
    meta.ops[3].inputs = [10 ** 6]
    with pytest.raises(GraphError, match="out of range"):
        read_training_file(_repack(model, k, meta))

    model, k, meta = _meta(small)
    arena = [t for t in meta.tensors if t.storage == tfmt.Storage.ARENA and t.firstStep <= 5 <= t.lastStep]
    first = arena[0]
    other = next(t for t in arena[1:] if t.arenaOffset != first.arenaOffset)
    moved = [t for t in meta.tensors if t.storage == tfmt.Storage.ARENA and t.arenaOffset == other.arenaOffset]
    for t in moved:  # move a whole buffer onto another one alive at the same step
        t.arenaOffset = first.arenaOffset
    with pytest.raises(GraphError, match="overlapping"):
        read_training_file(_repack(model, k, meta))

    model, k, meta = _meta(small)
    step = next(s for s in meta.plan.steps if s.mode == tfmt.ExecMode.IN_PLACE)
    step.mode = tfmt.ExecMode.NORMAL
    with pytest.raises(GraphError, match="is stored as"):
        read_training_file(_repack(model, k, meta))

    model, k, meta = _meta(small)
    meta.plan.steps = list(reversed(meta.plan.steps))
    with pytest.raises(GraphError, match="must run after"):
        read_training_file(_repack(model, k, meta))

    model, k, meta = _meta(small)
    model.metadata[0].buffer = len(model.buffers) + 5
    with pytest.raises(GraphError, match="out of range"):
        read_training_file(pack_model(model))


# --------------------------------------------------------------------------- variants and CLI
def test_int8_head_round_trip():
    g = tt.load(seed_model("mbv2-w0.35"), input_size=64)
    r = tt.export(g, scheme("mbv2-w0.35", "49kb"), head="int8", lr=0.01)
    x = images((1, 64, 64, 3), 1, seed=9)[0]
    assert tflm_outputs(r.data, x).tobytes() == reference.invoke(r.infer_graph, x)[0].tobytes()
    _, tg, _ = read_training_file(r.data)
    s1, s2 = TrainState.from_train_graph(r.train_graph), TrainState.from_train_graph(tg)
    assert train_step(r.train_graph, s1, x, 4) == train_step(tg, s2, x, 4)
    assert all(s1.values[n].tobytes() == s2.values[n].tobytes() for n in s1.values)


def test_export_with_trained_state():
    g = tt.load(seed_model("proxyless-w0.3"), input_size=48)
    first = tt.export(g, scheme("proxyless-w0.3", "49kb"), lr=0.05)
    state = TrainState.from_train_graph(first.train_graph)
    for i, x in enumerate(images((1, 48, 48, 3), 3, seed=11)):
        train_step(first.train_graph, state, x, i)
    again = tt.export(g, scheme("proxyless-w0.3", "49kb"), lr=0.05, state=state)
    _, tg, _ = read_training_file(again.data)
    for name, v in state.values.items():
        assert tg.tensors[name].data.tobytes() == v.tobytes(), name
    with pytest.raises(GraphError, match="state"):
        tt.export(g, scheme("proxyless-w0.3", "74kb"), state=TrainState({"nope": np.zeros(1)}))


def test_cli_export(tmp_path, capsys):
    from tflm_train.cli import main

    out = str(tmp_path / "t.tflite")
    spec = os.path.join(SCHEMES, "mcunet-5fps.json") + ":49kb"
    assert main(["export", seed_model("mcunet-5fps"), "--scheme", spec, "-o", out, "--input-size", "64"]) == 0
    assert "signatures infer + train" in capsys.readouterr().out
    with open(out, "rb") as f:
        infer, tg, p = read_training_file(f.read())
    assert tg.num_classes == 10 and p.peak_bytes > 0
    assert any(n.startswith("gradient:") for n in tg.tensors)  # gradients have no name without --debug-names
    named = str(tmp_path / "named.tflite")
    assert main(["export", seed_model("mcunet-5fps"), "--scheme", spec, "-o", named, "--input-size", "64",
                 "--debug-names"]) == 0
    with open(named, "rb") as f:
        _, tg_named, _ = read_training_file(f.read())
    assert os.path.getsize(named) > os.path.getsize(out)
    assert not any(n.startswith("gradient:") for n in tg_named.tensors)
    assert all(o.name != f"{o.type}:{i}" for i, o in enumerate(tg_named.ops))
    assert all(o.name == f"{o.type}:{i}" for i, o in enumerate(tg.ops))
    assert main(["export", seed_model("mcunet-5fps"), "--scheme", spec + "x", "-o", out]) == 2
    assert main(["export", seed_model("mcunet-5fps"), "--scheme", "last-3", "-o", out, "--input-size", "48"]) == 0


def test_export_takes_a_tflm_train_keras_model():
    """A Keras model of tflm_train.keras goes through tflm_train.keras.to_graph."""
    from tflm_train.keras import from_graph, to_graph

    g = tt.load(seed_model("proxyless-w0.3"), input_size=48)
    model = from_graph(g, 10)
    r = tt.export(model, "bias-only")
    assert r.train_graph.num_classes == 10
    x = images((1, 48, 48, 3), 1, seed=4)[0]
    assert tflm_outputs(r.data, x).tobytes() == reference.invoke(r.infer_graph, x)[0].tobytes()
    assert r.plan.peak_bytes == tt.plan(to_graph(model), SparseScheme.bias_only(g)).peak_bytes
