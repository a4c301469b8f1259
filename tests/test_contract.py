"""The support contract (tflm_train.check) and what load normalizes.

Converter-made Keras 3 models with a dynamic batch (tests/make_contract_models.py): a
Flatten() head (SHAPE / STRIDED_SLICE / PACK feeding RESHAPE), a flat input reshaped to
HxWxC inside the graph, both at once, and a file whose biases carry quantized_dimension 3.
For each: the normalized graph's reference equals TFLite Micro running the ORIGINAL file
byte for byte, and the exported training file trains in the C++ runtime exactly as the
NumPy reference trainer does.
"""
import os
import re

import numpy as np
import pytest

import tflm_train
from tests.paths import REPO
from tests.test_micro_train import train_both
from tests.test_reference import tflm_invoke
from tflm_train import GraphError, contract, reference
from tflm_train.graph import Op, QuantGraph, Tensor
from tflm_train.io.tflite_reader import read_tflite
from tflm_train.io.tflite_schema import fb
from tflm_train.io.train_export import export

NORMALIZED = ("flatten_head", "flat_input", "flat_input_flatten", "bias_quantized_dim_3")


@pytest.fixture(scope="module")
def models(contract_models):
    files = dict(contract_models)
    files["bias_quantized_dim_3"] = _bias_quantized_dim(files["flatten_head"], 3)
    return files


def _rewrite(data: bytes, edit) -> bytes:
    """``data`` with ``edit(model)`` applied to its unpacked flatbuffer, packed again."""
    import flatbuffers

    m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(m)
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _bias_quantized_dim(data: bytes, dim: int) -> bytes:
    def edit(m):
        sg = m.subgraphs[0]
        conv_codes = {k for k, c in enumerate(m.operatorCodes) if max(c.builtinCode, c.deprecatedBuiltinCode) in (
            fb.BuiltinOperator.CONV_2D, fb.BuiltinOperator.DEPTHWISE_CONV_2D, fb.BuiltinOperator.FULLY_CONNECTED)}
        changed = 0
        for op in sg.operators:
            if op.opcodeIndex in conv_codes and len(op.inputs) > 2 and op.inputs[2] >= 0:
                q = sg.tensors[op.inputs[2]].quantization
                changed += len(q.scale) > 1  # per-channel: what the runtime refused
                q.quantizedDimension = dim
        assert changed
    return _rewrite(data, edit)


def _inputs(data: bytes, n: int, seed: int):
    """Random inputs in the ORIGINAL file's input shape and type."""
    m = fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    shape = tuple(int(d) for d in t.shape)
    rng = np.random.default_rng(seed)
    if t.type == fb.TensorType.INT8:
        return [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(n)]
    return [rng.uniform(-1.2, 1.2, shape).astype(np.float32) for _ in range(n)]


# --------------------------------------------------------------------------- normalization
@pytest.mark.parametrize("name", NORMALIZED)
def test_normalized_graph_equals_tflite_micro_on_the_original_file(models, name):
    data = models[name]
    g = read_tflite(data, name=name)
    assert g.normalizations
    assert {op.type for op in g.ops} <= set(tflm_train.graph.SUPPORTED_OPS)
    if name.startswith("flat_input"):
        assert len(g.original_input_shapes[g.inputs[0]]) == 2 and len(g.tensors[g.inputs[0]].shape) == 4
    if name == "bias_quantized_dim_3":
        assert any("quantized_dimension" in n for n in g.normalizations)
        assert all(t.quantized_dim == 0 for t in g.tensors.values() if len(t.shape) == 1)
    xs = _inputs(data, 8, seed=1)
    want = tflm_invoke(data, [[x] for x in xs])
    for x, (w,) in zip(xs, want):
        (got,) = reference.invoke(g, x.reshape(g.tensors[g.inputs[0]].shape))
        assert got.dtype == w.dtype and got.tobytes() == w.tobytes()


@pytest.mark.parametrize("name,scheme", [("flatten_head", "last-2"), ("flat_input_flatten", "full"),
                                         ("bias_quantized_dim_3", "bias-only"), ("flat_input", "last-2")])
def test_normalized_graph_exports_and_trains_in_the_cpp_runtime(models, name, scheme):
    g = read_tflite(models[name], name=name)
    for head in ("float", "int8"):
        r = export(g, scheme, num_classes=4, head=head, lr=1e-3)
        train_both(r.data, steps=3, seed=4)


def test_a_1x1_input_reshaped_in_the_graph_becomes_a_flat_input():
    rng = np.random.default_rng(2)
    t = {"x": _act("x", (1, 1, 1, 8), 0.05, -3), "s": Tensor("s", (2,), "int32", data=np.array([-1, 8], np.int32)),
         "f": _act("f", (1, 8), 0.05, -3), "y": _act("y", (1, 3), 0.2, 1),
         "w": Tensor("w", (3, 8), "int8", np.full(3, 0.01), np.zeros(3), 0, rng.integers(-127, 128, (3, 8))),
         "b": Tensor("b", (3,), "int32", np.full(3, 0.0005), np.zeros(3), 0, rng.integers(-500, 500, 3))}
    ops = [Op("RESHAPE", ["x", "s"], ["f"], {}, "squeeze"),
           Op("FULLY_CONNECTED", ["f", "w", "b"], ["y"], {"activation": "NONE", "keep_num_dims": False}, "fc")]
    data = QuantGraph(t, ops, ["x"], ["y"], name="one_by_one").to_tflite()
    g = read_tflite(data, name="one_by_one")
    assert [op.type for op in g.ops] == ["FULLY_CONNECTED"]
    assert g.tensors["x"].shape == (1, 8) and g.original_input_shapes == {"x": (1, 1, 1, 8)}
    xs = [rng.integers(-128, 128, (1, 1, 1, 8)).astype(np.int8) for _ in range(4)]
    for x, (want,) in zip(xs, tflm_invoke(data, [[x] for x in xs])):
        assert reference.invoke(g, x.reshape(1, 8))[0].tobytes() == want.tobytes()


def test_inspect_shows_the_input_shape_in_the_file(models, tmp_path, capsys):
    from tflm_train.cli import main

    path = tmp_path / "flat_input_flatten.tflite"
    path.write_bytes(models["flat_input_flatten"])
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1x4x4x3 int8 (reshaped at load; 1x48 in the file)" in out


# --------------------------------------------------------------------------- refusals
def test_int16_activations_are_refused_at_load_in_one_line(models):
    with pytest.raises(GraphError) as e:
        read_tflite(models["int16_activations"], name="int16_activations")
    msg = str(e.value)
    assert msg.startswith("int16_activations: ") and "\n" not in msg
    assert "16x8" in msg and "op 1 CONV_2D" in msg and "op 3 FULLY_CONNECTED" in msg


def test_unsupported_tensor_types_are_all_named_with_model_and_op(models):
    def edit(m):
        sg = m.subgraphs[0]
        conv = [op for op in sg.operators if len(op.inputs) > 2][0]
        sg.tensors[conv.outputs[0]].type = fb.TensorType.UINT32
        sg.tensors[sg.outputs[0]].type = fb.TensorType.RESOURCE

    with pytest.raises(GraphError) as e:
        read_tflite(_rewrite(models["flatten_head"], edit), name="typed")
    msg = str(e.value)
    assert msg.startswith("typed: ") and "\n" not in msg
    assert re.search(r"op 0 CONV_2D '[^']*': output '[^']*' has type UINT32", msg)
    assert re.search(r"op \d FULLY_CONNECTED '[^']*': output '[^']*' has type RESOURCE", msg)
    assert re.search(r"op 1 CONV_2D '[^']*': input '[^']*' has type UINT32", msg)  # every reader, too


def _act(name, shape, scale=0.1, zp=0, dtype="int8"):
    return Tensor(name, shape, dtype, [scale], [zp])


def _graph(classifier="FULLY_CONNECTED", extra_tail=False, problems=False):
    rng = np.random.default_rng(0)
    t = {"x": _act("x", (1, 4, 4, 3))}
    w_dtype = "float32" if problems else "int8"
    t["w"] = Tensor("w", (5, 3, 3, 3), w_dtype, np.full(5, 0.01), np.zeros(5), 0,
                    rng.integers(-50, 50, (5, 3, 3, 3)).astype(w_dtype))
    t["b"] = Tensor("b", (5,), "int32", np.full(5, 0.001), np.zeros(5), 3 if problems else 0, np.zeros(5, np.int32))
    t["c"] = Tensor("c", (1, 4, 4, 5), "int8", np.full(5, 0.1) if problems else [0.1], np.zeros(5 if problems else 1))
    t["axes"] = Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32))
    t["p"] = _act("p", (1, 5))
    conv = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1)
    ops = [Op("CONV_2D", ["x", "w", "b"], ["c"], dict(conv, activation="TANH" if problems else "RELU"), "conv"),
           Op("MEAN", ["c", "axes"], ["p"], {"keep_dims": False}, "pool")]
    if classifier == "FULLY_CONNECTED":
        t["fw"] = Tensor("fw", (3, 5), "int8", [0.02], [0], 0, np.ones((3, 5), np.int8))
        t["y"] = _act("y", (1, 3))
        ops.append(Op("FULLY_CONNECTED", ["p", "fw"], ["y"], {"activation": "NONE", "keep_num_dims": False}, "fc"))
    else:
        t["p4"] = _act("p4", (1, 1, 1, 5))
        t["s"] = Tensor("s", (4,), "int32", data=np.array([1, 1, 1, 5], np.int32))
        ops.append(Op("RESHAPE", ["p", "s"], ["p4"], {}, "r"))
        t["dw"] = Tensor("dw", (1, 1, 1, 5), "int8", [0.02], [0], 0, np.ones((1, 1, 1, 5), np.int8))
        t["y"] = _act("y", (1, 1, 1, 5))
        ops.append(Op("DEPTHWISE_CONV_2D", ["p4", "dw"], ["y"], dict(conv, activation="NONE", depth_multiplier=1),
                      "dw"))
    out = "y"
    if extra_tail:
        t["z"] = _act("z", (1, 3))
        ops.append(Op("ADD", ["y", "y"], ["z"], {"activation": "NONE"}, "after"))
        out = "z"
    return QuantGraph(t, ops, ["x"], [out], name="handmade")


def test_check_lists_every_problem_with_op_and_model():
    assert tflm_train.check is contract.check
    contract.check(_graph(), training=True)
    found = contract.problems(_graph(problems=True), training=False)
    text = "; ".join(found)
    for expected in ("weights 'w' are float32: a float model", "fused activation TANH is unsupported",
                     "output 'c' is per-channel quantized", "bias 'b' is quantized along dimension 3"):
        assert expected in text, text
    assert all(f.startswith(("op 0 CONV_2D 'conv': ", "op 1 MEAN 'pool': ")) for f in found), found
    assert "op 1 MEAN 'pool': input 'c' is per-channel quantized" in text  # every reader of a bad tensor
    with pytest.raises(GraphError) as e:
        contract.check(_graph(problems=True), training=False)
    assert str(e.value).startswith(f"handmade: {len(found)} problem(s)") and "\n" not in str(e.value)


def test_training_contract_is_checked_by_export_and_keras():
    contract.check(_graph("DEPTHWISE_CONV_2D"), training=False)  # runs; does not train
    for g, what in ((_graph("DEPTHWISE_CONV_2D"), "is depthwise"), (_graph(extra_tail=True), "follows the classifier")):
        with pytest.raises(GraphError, match=what):
            export(g, "bias-only")
        with pytest.raises(GraphError, match=what):
            tflm_train.plan(g, "bias-only")
        from tflm_train.keras import from_graph

        with pytest.raises(GraphError, match=what):
            from_graph(g, num_classes=3)


def test_every_message_is_documented():
    doc = open(os.path.join(REPO, "docs", "support_contract.md")).read()
    templates = {k: v for k, v in vars(contract).items() if k.startswith("MSG_")}
    assert len(templates) > 30
    for name, template in templates.items():
        text = "".join(template) if isinstance(template, tuple) else template
        fixed = max(re.split(r"\{[^}]*\}", text), key=len).strip()
        assert name in doc and fixed in doc, f"{name} ({fixed!r}) is not documented in docs/support_contract.md"


def _conv1d_graph(expanded_scale=0.1):
    """x -> CONV_2D over 1x8 -> RESHAPE (a squeeze) -> EXPAND_DIMS -> MEAN -> FULLY_CONNECTED:
    the TF converter's form of two Keras Conv1D layers' seam."""
    rng = np.random.default_rng(5)
    conv = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, activation="RELU")
    t = {"x": _act("x", (1, 1, 8, 3)), "c": _act("c", (1, 1, 8, 4)), "r": _act("r", (1, 8, 4)),
         "e": _act("e", (1, 1, 8, 4), scale=expanded_scale), "p": _act("p", (1, 4)), "y": _act("y", (1, 3)),
         "w": Tensor("w", (4, 1, 3, 3), "int8", [0.02], [0], 0, rng.integers(-50, 50, (4, 1, 3, 3)).astype(np.int8)),
         "s": Tensor("s", (3,), "int32", data=np.array([1, 8, 4], np.int32)),
         "dim": Tensor("dim", (), "int32", data=np.array(1, np.int32)),
         "axes": Tensor("axes", (2,), "int32", data=np.array([1, 2], np.int32)),
         "fw": Tensor("fw", (3, 4), "int8", [0.02], [0], 0, rng.integers(-50, 50, (3, 4)).astype(np.int8))}
    ops = [Op("CONV_2D", ["x", "w"], ["c"], conv, "conv"), Op("RESHAPE", ["c", "s"], ["r"], {}, "squeeze"),
           Op("EXPAND_DIMS", ["r", "dim"], ["e"], {}, "expand"),
           Op("MEAN", ["e", "axes"], ["p"], {"keep_dims": False}, "pool"),
           Op("FULLY_CONNECTED", ["p", "fw"], ["y"], {"activation": "NONE", "keep_num_dims": False}, "fc")]
    return QuantGraph(t, ops, ["x"], ["y"], name="conv1d")


def test_expand_dims_between_ops_becomes_a_reshape_with_the_same_bytes():
    from tflm_train.io.normalize import normalize

    g = normalize(_conv1d_graph())
    assert [op.type for op in g.ops] == ["CONV_2D", "RESHAPE", "RESHAPE", "MEAN", "FULLY_CONNECTED"]
    expand = g.ops[2]
    assert expand.name == "expand" and expand.inputs[0] == "r" and "dim" not in g.tensors
    assert g.tensors[expand.inputs[1]].data.tolist() == [1, 1, 8, 4]
    assert any("EXPAND_DIMS / SQUEEZE" in n for n in g.normalizations), g.normalizations
    contract.check(g, training=True)
    x = np.random.default_rng(1).integers(-128, 128, (1, 1, 8, 3)).astype(np.int8)
    y = reference.invoke(g, x)[0]  # TFLite Micro on a converted Conv1D file: tests/test_user_models.py
    assert y.shape == (1, 3) and y.dtype == np.int8


def test_a_requantizing_expand_dims_is_refused_in_one_line():
    from tflm_train.io.normalize import normalize

    g = normalize(_conv1d_graph(expanded_scale=0.2))
    assert [op.type for op in g.ops][2] == "EXPAND_DIMS"
    with pytest.raises(GraphError) as e:
        contract.check(g, training=False)
    msg = str(e.value)
    assert msg.startswith("conv1d: 1 problem(s)") and "\n" not in msg and "unsupported op" not in msg, msg
    assert "op 2 EXPAND_DIMS 'expand': input 'r' (int8 [1, 8, 4], scale 0.1 zero point 0) and output 'e' " \
           "(int8 [1, 1, 8, 4], scale 0.2 zero point 0) differ in type, size or quantization" in msg, msg
