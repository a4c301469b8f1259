"""The C++ micro runtime on the host (tflm_train.micro.Interpreter over its C API).

Outputs must be byte-identical with the tflite-micro interpreter (and the NumPy
reference) on real models, converter-made models, crafted graphs and random
single-op graphs; malformed models, small arenas and wrong inputs must give a
status and a one-line message, never a crash.
"""
import os

import numpy as np
import pytest

import tflm_train
from tflm_train import reference
from tflm_train.graph import Op, QuantGraph, Tensor
from tflm_train.io.tflite_reader import read_tflite
from tflm_train.io.tflite_schema import fb
from tflm_train.io.tflite_writer import pack_model
from tflm_train.micro import TT_NO_OFFSET, Interpreter, MicroRuntimeError
from tests.model_factory import EXPECTED_OPS, synthetic_graphs
from tests.paths import MODELS, PERSON_DETECT, SEED_MODELS, seed_model
from tests.test_reference import assert_same_bytes, random_inputs, read_bmp_gray8

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


# --------------------------------------------------------------------------- helpers
def tflm_invoke(model_bytes: bytes, inputs, n_outputs: int = 1):
    """Outputs of the tflite-micro interpreter (arena large enough for every test model)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=max(10 * len(model_bytes), 4 << 20))
    results = []
    for arrays in inputs:
        for i, a in enumerate(arrays):
            it.set_input(a, i)
        it.invoke()
        results.append([np.array(it.get_output(i)) for i in range(n_outputs)])
    return results


def check_runtime(graph, model_bytes: bytes, n: int = 4, seed: int = 0, numpy_reference: bool = True):
    """Our runtime == tflite-micro (== the NumPy reference) on n random input sets."""
    ours = Interpreter(model_bytes)
    inputs = random_inputs(graph, n, seed)
    expected = tflm_invoke(model_bytes, inputs, len(graph.outputs))
    for k, (arrays, theirs) in enumerate(zip(inputs, expected)):
        got = ours.invoke(arrays)
        for j, (a, b) in enumerate(zip(got, theirs)):
            assert_same_bytes(a, b, f"{graph.name} input set {k} output {j} vs tflite-micro")
        if numpy_reference:
            for j, (a, b) in enumerate(zip(got, reference.invoke(graph, arrays))):
                assert_same_bytes(a, b, f"{graph.name} input set {k} output {j} vs the NumPy reference")
    return ours


def tensor_names_in_file_order(model_bytes: bytes):
    sg = fb.Model.GetRootAs(model_bytes, 0).Subgraphs(0)
    return [sg.Tensors(i).Name().decode() for i in range(sg.TensorsLength())]


def patched(model_bytes: bytes, edit) -> bytes:
    """The model re-packed after ``edit(ModelT)``."""
    model = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    edit(model)
    return pack_model(model)


def _act(name, shape, rng, dtype="int8"):
    return Tensor(name, shape, dtype, [float(rng.uniform(0.005, 0.1))], [int(rng.integers(-100, 100))])


def _window_out(size, k, stride, dilation, padding):
    eff = (k - 1) * dilation + 1
    return (size + stride - 1) // stride if padding == "SAME" else (size - eff + stride) // stride


# --------------------------------------------------------------------------- random single-op graphs
def conv_graph(rng, depthwise=False):
    h, w = (int(v) for v in rng.integers(1, 12, 2))
    cin = int(rng.integers(1, 9))
    kh, kw, sh, sw = (int(v) for v in (rng.integers(1, 5), rng.integers(1, 5), rng.integers(1, 4), rng.integers(1, 4)))
    dh, dw = (int(rng.choice([1, 1, 2])) for _ in range(2))
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID" and ((kh - 1) * dh + 1 > h or (kw - 1) * dw + 1 > w):
        padding = "SAME"
    oh, ow = _window_out(h, kh, sh, dh, padding), _window_out(w, kw, sw, dw, padding)
    t = {"x": _act("x", (1, h, w, cin), rng)}
    if depthwise:
        cout = cin * int(rng.integers(1, 4))
        wdata, qdim = rng.integers(-127, 128, (1, kh, kw, cout)).astype(np.int8), 3
    else:
        cout = int(rng.integers(1, 9))
        wdata, qdim = rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8), 0
    ws = rng.uniform(0.001, 0.05, cout) if rng.random() < 0.8 else np.array([rng.uniform(0.001, 0.05)])
    t["w"] = Tensor("w", wdata.shape, "int8", ws, np.zeros(ws.size, np.int64), qdim, wdata)
    inputs = ["x", "w"]
    if rng.random() < 0.85:
        bias = rng.integers(-3000, 3000, cout).astype(np.int32)
        t["b"] = Tensor("b", (cout,), "int32", t["x"].scalar_scale() * np.resize(ws, cout), np.zeros(cout, np.int64), 0,
                        bias)
        inputs.append("b")
    t["y"] = _act("y", (1, oh, ow, cout), rng)
    attrs = dict(padding=padding, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
                 activation=str(rng.choice(ACTIVATIONS)))
    op_type = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    if depthwise:
        attrs["depth_multiplier"] = cout // cin
    return QuantGraph(t, [Op(op_type, inputs, ["y"], attrs)], ["x"], ["y"], name=op_type.lower())


def fully_connected_graph(rng):
    batches, depth, units = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    t = {"x": _act("x", (batches, depth), rng)}
    ws = rng.uniform(0.001, 0.05, units) if rng.random() < 0.5 else np.array([rng.uniform(0.001, 0.05)])
    t["w"] = Tensor("w", (units, depth), "int8", ws, np.zeros(ws.size, np.int64), 0,
                    rng.integers(-127, 128, (units, depth)).astype(np.int8))
    t["b"] = Tensor("b", (units,), "int32", t["x"].scalar_scale() * np.resize(ws, units), np.zeros(units, np.int64), 0,
                    rng.integers(-3000, 3000, units).astype(np.int32))
    t["y"] = _act("y", (batches, units), rng)
    attrs = dict(activation=str(rng.choice(ACTIVATIONS)), keep_num_dims=False)
    return QuantGraph(t, [Op("FULLY_CONNECTED", ["x", "w", "b"], ["y"], attrs)], ["x"], ["y"], name="fc")


def add_graph(rng):
    rank = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 6, rank))
    other = [1 if rng.random() < 0.4 else d for d in shape] if rng.random() < 0.6 else list(shape)
    other = tuple(other[int(rng.integers(0, rank)):] or [1]) if rng.random() < 0.3 else tuple(other)
    t = {"a": _act("a", shape, rng), "b": _act("b", other, rng), "y": _act("y", shape, rng)}
    op = Op("ADD", ["a", "b"], ["y"], dict(activation=str(rng.choice(ACTIVATIONS))))
    return QuantGraph(t, [op], ["a", "b"], ["y"], name="add")


def mean_graph(rng):
    shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 6)))
    axes = [1, 2] if rng.random() < 0.6 else sorted({int(a) for a in rng.integers(0, 4, int(rng.integers(1, 3)))})
    keep = bool(rng.random() < 0.5)
    out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    t = {"x": _act("x", shape, rng), "axes": Tensor("axes", (len(axes),), "int32", data=np.array(axes, np.int32)),
         "y": _act("y", out, rng)}
    return QuantGraph(t, [Op("MEAN", ["x", "axes"], ["y"], {"keep_dims": keep})], ["x"], ["y"], name="mean")


def pool_graph(rng, op_type):
    h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 5))
    fh, fw, sh, sw = (int(v) for v in (rng.integers(1, 5), rng.integers(1, 5), rng.integers(1, 4), rng.integers(1, 4)))
    padding = str(rng.choice(["SAME", "VALID"]))
    if padding == "VALID" and (fh > h or fw > w):
        padding = "SAME"
    x = _act("x", (1, h, w, c), rng)
    y = Tensor("y", (1, _window_out(h, fh, sh, 1, padding), _window_out(w, fw, sw, 1, padding), c), "int8", x.scale,
               x.zero_point)
    attrs = dict(padding=padding, stride_h=sh, stride_w=sw, filter_h=fh, filter_w=fw,
                 activation=str(rng.choice(ACTIVATIONS)))
    return QuantGraph({"x": x, "y": y}, [Op(op_type, ["x"], ["y"], attrs)], ["x"], ["y"], name=op_type.lower())


def softmax_graph(rng):
    depth = int(rng.choice([1, 2, 5, 10, 100, 1000]))
    low = 0.05 if depth >= 1000 else 0.001  # keeps the sum of exps below TFLite Micro's limit (512)
    x = Tensor("x", (int(rng.integers(1, 4)), depth), "int8", [float(rng.uniform(low, 0.3))],
               [int(rng.integers(-50, 50))])
    y = Tensor("y", x.shape, "int8", [1 / 256], [-128])
    op = Op("SOFTMAX", ["x"], ["y"], {"beta": float(rng.choice([1.0, 0.5, 2.0]))})
    return QuantGraph({"x": x, "y": y}, [op], ["x"], ["y"], name="softmax")


def pad_graph(rng):
    rank = int(rng.integers(1, 5))
    shape = tuple(int(v) for v in rng.integers(1, 6, rank))
    pads = rng.integers(0, 3, (rank, 2)).astype(np.int32)
    x = _act("x", shape, rng)
    y = Tensor("y", tuple(int(s + p.sum()) for s, p in zip(shape, pads)), "int8", x.scale, x.zero_point)
    t = {"x": x, "p": Tensor("p", (rank, 2), "int32", data=pads), "y": y}
    return QuantGraph(t, [Op("PAD", ["x", "p"], ["y"], {})], ["x"], ["y"], name="pad")


def quantize_graph(rng):
    shape = (2, int(rng.integers(1, 50)))
    x = Tensor("x", shape, "float32") if rng.random() < 0.5 else _act("x", shape, rng)
    return QuantGraph({"x": x, "y": _act("y", shape, rng)}, [Op("QUANTIZE", ["x"], ["y"], {})], ["x"], ["y"],
                      name="quantize")


def dequantize_graph(rng):
    shape = (2, int(rng.integers(1, 50)))
    t = {"x": _act("x", shape, rng), "y": Tensor("y", shape, "float32")}
    return QuantGraph(t, [Op("DEQUANTIZE", ["x"], ["y"], {})], ["x"], ["y"], name="dequantize")


RANDOM_GRAPHS = {
    "CONV_2D": conv_graph,
    "DEPTHWISE_CONV_2D": lambda rng: conv_graph(rng, depthwise=True),
    "FULLY_CONNECTED": fully_connected_graph,
    "ADD": add_graph,
    "MEAN": mean_graph,
    "AVERAGE_POOL_2D": lambda rng: pool_graph(rng, "AVERAGE_POOL_2D"),
    "MAX_POOL_2D": lambda rng: pool_graph(rng, "MAX_POOL_2D"),
    "SOFTMAX": softmax_graph,
    "PAD": pad_graph,
    "QUANTIZE": quantize_graph,
    "DEQUANTIZE": dequantize_graph,
}


def zoo_graph(seed: int = 0) -> QuantGraph:
    """Every supported op in one small chain: float in, QUANTIZE ... SOFTMAX, DEQUANTIZE, float out."""
    rng = np.random.default_rng(seed)
    t = {}
    t["x"] = Tensor("x", (1, 8, 8, 3), "float32")
    t["q"] = Tensor("q", (1, 8, 8, 3), "int8", [1 / 64], [0])
    t["w1"] = Tensor("w1", (8, 3, 3, 3), "int8", rng.uniform(0.002, 0.01, 8), np.zeros(8, np.int64), 0,
                     rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8))
    t["b1"] = Tensor("b1", (8,), "int32", t["w1"].scale / 64, np.zeros(8, np.int64), 0,
                     rng.integers(-500, 500, 8).astype(np.int32))
    t["c1"] = Tensor("c1", (1, 8, 8, 8), "int8", [6 / 255], [-128])
    t["w2"] = Tensor("w2", (1, 3, 3, 8), "int8", rng.uniform(0.005, 0.02, 8), np.zeros(8, np.int64), 3,
                     rng.integers(-127, 128, (1, 3, 3, 8)).astype(np.int8))
    t["b2"] = Tensor("b2", (8,), "int32", t["w2"].scale * 6 / 255, np.zeros(8, np.int64), 0,
                     rng.integers(-500, 500, 8).astype(np.int32))
    t["c2"] = Tensor("c2", (1, 4, 4, 8), "int8", [0.05], [-3])
    t["pads"] = Tensor("pads", (4, 2), "int32", data=np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    t["p"] = Tensor("p", (1, 6, 6, 8), "int8", [0.05], [-3])
    t["m"] = Tensor("m", (1, 5, 5, 8), "int8", [0.05], [-3])
    t["a"] = Tensor("a", (1, 4, 4, 8), "int8", [0.05], [-3])
    t["s"] = Tensor("s", (1, 4, 4, 8), "int8", [0.08], [5])
    t["axes"] = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    t["g"] = Tensor("g", (1, 1, 1, 8), "int8", [0.04], [2])
    t["shape"] = Tensor("shape", (2,), "int32", data=np.array([1, 8], np.int32))
    t["r"] = Tensor("r", (1, 8), "int8", [0.04], [2])
    t["w3"] = Tensor("w3", (5, 8), "int8", [0.01], [0], 0, rng.integers(-127, 128, (5, 8)).astype(np.int8))
    t["b3"] = Tensor("b3", (5,), "int32", [0.0004], [0], 0, rng.integers(-300, 300, 5).astype(np.int32))
    t["f"] = Tensor("f", (1, 5), "int8", [0.1], [0])
    t["sm"] = Tensor("sm", (1, 5), "int8", [1 / 256], [-128])
    t["y"] = Tensor("y", (1, 5), "float32")
    conv = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, activation="RELU6")
    dw = dict(padding="SAME", stride_h=2, stride_w=2, dilation_h=1, dilation_w=1, activation="NONE",
              depth_multiplier=1)
    pool = dict(padding="VALID", stride_h=1, stride_w=1, filter_h=2, filter_w=2, activation="NONE")
    ops = [
        Op("QUANTIZE", ["x"], ["q"], {}, "quantize"),
        Op("CONV_2D", ["q", "w1", "b1"], ["c1"], conv, "conv"),
        Op("DEPTHWISE_CONV_2D", ["c1", "w2", "b2"], ["c2"], dw, "depthwise"),
        Op("PAD", ["c2", "pads"], ["p"], {}, "pad"),
        Op("MAX_POOL_2D", ["p"], ["m"], pool, "max_pool"),
        Op("AVERAGE_POOL_2D", ["m"], ["a"], pool, "average_pool"),
        Op("ADD", ["c2", "a"], ["s"], {"activation": "NONE"}, "add"),
        Op("MEAN", ["s", "axes"], ["g"], {"keep_dims": True}, "mean"),
        Op("RESHAPE", ["g", "shape"], ["r"], {}, "reshape"),
        Op("FULLY_CONNECTED", ["r", "w3", "b3"], ["f"], {"activation": "NONE", "keep_num_dims": False}, "fc"),
        Op("SOFTMAX", ["f"], ["sm"], {"beta": 1.0}, "softmax"),
        Op("DEQUANTIZE", ["sm"], ["y"], {}, "dequantize"),
    ]
    return QuantGraph(t, ops, ["x"], ["y"], name="zoo")


# --------------------------------------------------------------------------- exactness
def test_person_detect_matches_tflm():
    data = open(PERSON_DETECT, "rb").read()
    check_runtime(read_tflite(data, name="person_detect"), data, n=4)


@pytest.mark.parametrize("image, expected_class", [("person.bmp", 1), ("no_person.bmp", 0)])
def test_person_detect_classifies_real_images(image, expected_class):
    data = open(PERSON_DETECT, "rb").read()
    x = read_bmp_gray8(os.path.join(MODELS, image)).view(np.int8).reshape(1, 96, 96, 1)
    scores = Interpreter(data).infer(x)
    assert int(np.argmax(scores)) == expected_class, f"{image}: scores {scores}"
    assert_same_bytes(scores, tflm_invoke(data, [[x]])[0][0], image)


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_model_matches_tflm_at_128(name):
    graph = tflm_train.load(seed_model(name), input_size=128)
    assert graph.tensors[graph.inputs[0]].shape == (1, 128, 128, 3)
    check_runtime(graph, graph.to_tflite(), n=2, numpy_reference=False)


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_converter_model_matches_tflm(factory_models, name):
    data = open(factory_models[name], "rb").read()
    check_runtime(read_tflite(data, name=name), data, n=6)


@pytest.mark.parametrize("name", sorted(synthetic_graphs()))
def test_synthetic_graph_matches_tflm(name):
    graph = synthetic_graphs()[name]
    check_runtime(graph, graph.to_tflite(), n=6)


@pytest.mark.parametrize("op_type", sorted(RANDOM_GRAPHS))
def test_random_single_op_graphs_match_tflm(op_type):
    rng = np.random.default_rng(sorted(RANDOM_GRAPHS).index(op_type))
    for k in range(12):
        graph = RANDOM_GRAPHS[op_type](rng)
        graph.name = f"{op_type} case {k}"
        check_runtime(graph, graph.to_tflite(), n=2, seed=k)


def test_every_op_in_one_model():
    graph = zoo_graph()
    ours = check_runtime(graph, graph.to_tflite(), n=6)
    assert ours.ops == [op.type for op in graph.ops]
    assert ours.input_details[0]["dtype"] == np.float32 and ours.output_details[0]["shape"] == (1, 5)


def test_quantize_rounds_ties_like_tflm():
    # x = (k + 1/2) * s and its float neighbours: the float32 quotient decides the rounding
    s = np.float32(0.0123)
    values = []
    for k in range(-400, 400):
        v = np.float32((k + 0.5) * float(s))
        values += [v, np.nextafter(v, np.float32(-1e9)), np.nextafter(v, np.float32(1e9))]
    x = np.array(values, np.float32)[None]
    graph = QuantGraph({"x": Tensor("x", x.shape, "float32"), "y": Tensor("y", x.shape, "int16", [float(s)], [0])},
                       [Op("QUANTIZE", ["x"], ["y"], {})], ["x"], ["y"], name="quantize_ties")
    data = graph.to_tflite()
    assert_same_bytes(Interpreter(data).infer(x), tflm_invoke(data, [[x]])[0][0], "QUANTIZE ties")


# --------------------------------------------------------------------------- arena
def test_arena_is_sized_exactly_and_too_small_is_an_error():
    data = open(PERSON_DETECT, "rb").read()
    exact = Interpreter(data)
    need = exact.arena_bytes
    x = np.zeros((1, 96, 96, 1), np.int8)
    assert Interpreter(data, arena_size=need).infer(x).tobytes() == exact.infer(x).tobytes()
    roomy = Interpreter(data, arena_size=need + 4096)
    assert roomy.arena_bytes == need
    with pytest.raises(MicroRuntimeError, match=f"arena too small: {need - 1} bytes given, {need} needed") as e:
        Interpreter(data, arena_size=need - 1)
    assert e.value.status == "TT_ARENA_TOO_SMALL"
    with pytest.raises(MicroRuntimeError, match="arena too small: 100 bytes given, the runtime state") as e:
        Interpreter(data, arena_size=100)


def test_runtime_uses_a_caller_plan():
    """tt_init_planned: the Python planner's offsets (inference plan) drive the runtime."""
    from tflm_train.planner.plan import plan

    data = open(PERSON_DETECT, "rb").read()
    graph = read_tflite(data, name="person_detect")
    memory_plan = plan(graph, reorder=False, fuse=False, inplace=False)
    offsets_by_name = memory_plan.offsets()
    offsets = [offsets_by_name.get(name, TT_NO_OFFSET) for name in tensor_names_in_file_order(data)]
    planned = Interpreter(data, offsets=offsets)
    own = Interpreter(data)
    x = np.random.default_rng(3).integers(-128, 128, (1, 96, 96, 1), dtype=np.int8)
    assert planned.infer(x).tobytes() == own.infer(x).tobytes()
    # the same tensor bytes: the runtime's own first-fit plan is as tight as the planner's here
    assert planned.arena_bytes == own.arena_bytes
    # a plan that puts two tensors alive at the same time on the same bytes is refused
    bad = list(offsets)
    live = [i for i, o in enumerate(offsets) if o != TT_NO_OFFSET]
    bad[live[1]] = bad[live[0]]
    with pytest.raises(MicroRuntimeError, match="alive at the same time and overlap|not 16-byte aligned"):
        Interpreter(data, offsets=bad)
    with pytest.raises(MicroRuntimeError, match="memory plan has 3 offsets"):
        Interpreter(data, offsets=[0, 0, 0])


# --------------------------------------------------------------------------- errors
def test_wrong_input_is_an_error():
    data = open(PERSON_DETECT, "rb").read()
    it = Interpreter(data)
    with pytest.raises(MicroRuntimeError, match=r"input 0 \(input\) is 9216 bytes \(1x96x96x1 INT8\), got 9215") as e:
        it.infer(np.zeros(9215, np.int8))
    assert e.value.status == "TT_SHAPE_MISMATCH"
    with pytest.raises(ValueError, match="dtype uint8, the model expects int8"):
        it.infer(np.zeros((1, 96, 96, 1), np.uint8))
    assert it.infer(np.zeros(9216, np.int8)).shape == (1, 2)  # any shape with the right bytes


@pytest.mark.parametrize("cut", [0, 7, 8, 100, 5000, -1000, -1])
def test_truncated_model_is_malformed(cut):
    data = open(PERSON_DETECT, "rb").read()
    with pytest.raises(MicroRuntimeError) as e:
        Interpreter(data[:cut] if cut >= 0 else data[:len(data) + cut])
    assert e.value.status == "TT_MALFORMED_MODEL"
    assert "\n" not in e.value.message and e.value.message.startswith("malformed model")


def test_wrong_magic_is_malformed():
    data = bytearray(open(PERSON_DETECT, "rb").read())
    data[4:8] = b"TFL2"
    with pytest.raises(MicroRuntimeError, match='wrong file identifier "TFL2"'):
        Interpreter(bytes(data))


def test_corrupted_models_fail_cleanly_or_run():
    """Random byte corruptions at many offsets: tt_init fails with a message, or the model runs."""
    rng = np.random.default_rng(0)
    outcomes = {}
    for base in (zoo_graph().to_tflite(), open(PERSON_DETECT, "rb").read()):
        for k in range(150 if len(base) < 100_000 else 40):
            data = bytearray(base)
            for at in rng.integers(0, len(data), int(rng.integers(1, 5))):
                data[at] = int(rng.integers(0, 256))
            try:
                it = Interpreter(bytes(data))
            except MicroRuntimeError as e:
                assert e.message and "\n" not in e.message
                outcomes[e.status] = outcomes.get(e.status, 0) + 1
                continue
            x = np.zeros(it.input_details[0]["shape"], it.input_details[0]["dtype"])
            try:
                it.infer(x)
                outcomes["ran"] = outcomes.get("ran", 0) + 1
            except MicroRuntimeError as e:  # e.g. a softmax whose inputs now exceed TFLite Micro's range
                outcomes["eval " + e.status] = outcomes.get("eval " + e.status, 0) + 1
    assert outcomes.get("TT_MALFORMED_MODEL", 0) > 10 and outcomes.get("ran", 0) > 10, outcomes


def test_unsupported_operator_is_named():
    data = zoo_graph().to_tflite()

    def to_tanh(model):
        code = next(c for c in model.operatorCodes if c.builtinCode == fb.BuiltinOperator.MAX_POOL_2D)
        code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.TANH

    with pytest.raises(MicroRuntimeError, match=r"unsupported operator TANH \(op 4\)") as e:
        Interpreter(patched(data, to_tanh))
    assert e.value.status == "TT_UNSUPPORTED"

    def to_custom(model):
        code = next(c for c in model.operatorCodes if c.builtinCode == fb.BuiltinOperator.PAD)
        code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.CUSTOM
        code.customCode = "MyCustomOp"

    with pytest.raises(MicroRuntimeError, match='unsupported operator custom "MyCustomOp"'):
        Interpreter(patched(data, to_custom))


def test_unsupported_tensor_types_are_named():
    t = {"x": Tensor("x", (1, 4, 4, 2), "float32"), "y": Tensor("y", (1, 4, 4, 2), "float32")}
    pool = dict(padding="SAME", stride_h=1, stride_w=1, filter_h=2, filter_w=2, activation="NONE")
    graph = QuantGraph(t, [Op("MAX_POOL_2D", ["x"], ["y"], pool)], ["x"], ["y"], name="float_pool")
    with pytest.raises(MicroRuntimeError, match=r"op 0 \(MAX_POOL_2D\): input \(x\) is FLOAT32, expected INT8"):
        Interpreter(graph.to_tflite())


def test_inconsistent_shapes_are_errors():
    data = zoo_graph().to_tflite()

    def wrong_conv_output(model):
        sg = model.subgraphs[0]
        t = next(t for t in sg.tensors if t.name in (b"c1", "c1"))
        t.shape = np.array([1, 8, 8, 7], np.int32)

    with pytest.raises(MicroRuntimeError, match=r"op 1 \(CONV_2D\): output \(c1\) has shape 1x8x8x7, expected 1x8x8x8"):
        Interpreter(patched(data, wrong_conv_output))

    def out_of_range_tensor(model):
        model.subgraphs[0].operators[2].inputs = np.array([1, 999, 5], np.int32)

    with pytest.raises(MicroRuntimeError, match="input 1 is tensor index 999"):
        Interpreter(patched(data, out_of_range_tensor))
