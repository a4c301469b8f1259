"""The compiled training graph: structure, pruning, placement of updates, bad input."""
import json
import os

import numpy as np
import pytest

from tflm_train.graph import GraphError, Op, QuantGraph, Tensor
from tflm_train.io.npz_reader import load_npz
from tflm_train.training import SparseScheme, TRAIN_OPS, TrainGraph, build_train_graph
from tflm_train.training.train_graph import FORWARD_OPS

from .paths import PERSON_DETECT, SCHEMES, seed_model


@pytest.fixture(scope="module")
def mcunet():
    return load_npz(seed_model("mcunet-5fps"), input_size=32)


@pytest.fixture(scope="module")
def scheme_49kb():
    return SparseScheme.from_json(os.path.join(SCHEMES, "mcunet-5fps.json"), "49kb")


def conv_layer_names(graph):
    return [graph.ops[i].name for i in graph.conv_op_indices()]


def ops_touching(tg, prefix):
    """Training ops (not forward) that read or write a tensor of layer ``prefix``."""
    return [
        op for op in tg.ops
        if op.phase != "forward" and any(t.startswith(prefix + "/") or t.startswith("grad/" + prefix + "/")
                                         for t in op.inputs + op.outputs)
    ]


def test_structure_is_valid_and_complete(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10)
    assert isinstance(tg, TrainGraph)
    tg.validate()
    assert tg.inputs == ["input", "label"] and tg.outputs == ["loss"]
    assert tg.tensors["label"].kind == "label" and tg.tensors["label"].dtype == "int32"
    assert tg.tensors["loss"].kind == "loss"
    # phases in order: forward, loss, then backward/update interleaved
    phases = [op.phase for op in tg.ops]
    n_fwd = phases.index("loss")
    assert set(phases[:n_fwd]) == {"forward"} and "forward" not in phases[n_fwd + 1:]
    for op in tg.ops:
        if op.type in TRAIN_OPS:
            assert all(a in op.attrs for a in TRAIN_OPS[op.type]["attrs"]), op.type
        else:
            assert op.type in FORWARD_OPS
    # forward ops keep TFLite names, attrs and the QuantGraph's quantization
    fwd = [op for op in tg.ops if op.phase == "forward" and op.type != "FC_FLOAT_FORWARD"]
    assert [op.name for op in fwd] == [op.name for op in mcunet.ops[: len(fwd)]]
    for name, t in tg.tensors.items():
        if name in mcunet.tensors and t.scale is not None:
            assert np.array_equal(t.scale, mcunet.tensors[name].scale)
    # plain data: JSON-serializable
    d = tg.to_dict()
    json.dumps(d)
    assert len(d["ops"]) == len(tg.ops)


def test_parameters_constants_and_in_place_updates(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10)
    layers = {u.conv_index: u for u in scheme_49kb.resolve(mcunet)}
    names = conv_layer_names(mcunet)
    for k, name in enumerate(names[:-1]):
        w, b = name + "/weight", name + "/bias"
        u = layers.get(k)
        assert tg.tensors[w].kind == ("parameter" if u and u.updates_weights else "constant")
        assert tg.tensors[b].kind == ("parameter" if u and u.update_bias else "constant")
    # the original 1000-class classifier is gone; the new head trains
    assert names[-1] + "/weight" not in tg.tensors
    assert tg.tensors["head/weight"].kind == "parameter"
    for op in tg.ops:
        if op.phase == "update":
            assert op.updates, op.name
            for t in op.updates:
                assert tg.tensors[t].persistent
    # updates carry the scheme's channels
    for op in tg.ops:
        if op.type.endswith("_UPDATE") and op.type not in ("BIAS_UPDATE", "FC_FLOAT_UPDATE"):
            k = names.index(op.name[: -len("/update")])
            assert tuple(op.attrs["channels"]) == layers[k].weight_channels
            assert op.inputs[-1] == "rng/state" and op.outputs[-1] == "rng/state"
    assert tg.tensors["rng/state"].kind == "state" and tg.tensors["rng/state"].data[0] != 0


def test_pruning_stops_at_the_earliest_updated_layer(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10)
    names = conv_layer_names(mcunet)
    trained = sorted(u.conv_index for u in scheme_49kb.resolve(mcunet) if not u.is_classifier)
    earliest = trained[0]
    assert earliest == 43 - 20
    # nothing below the earliest trained layer gets any backward work
    for name in names[:earliest]:
        assert ops_touching(tg, name) == [], name
    # the earliest trained layer updates its bias but computes no input gradient
    low = [op for op in tg.ops if op.name.startswith(names[earliest] + "/")]
    assert [op.type for op in low] == ["CLAMP_GRAD", "BIAS_UPDATE"]
    assert not any(op.type.endswith("_GRAD_INPUT") and op.name.startswith(names[earliest] + "/") for op in tg.ops)
    # no gradient tensor of a forward tensor produced before the earliest trained layer
    first_trained_op = next(i for i, op in enumerate(mcunet.ops) if op.name == names[earliest])
    early = {t for op in mcunet.ops[:first_trained_op] for t in op.outputs} | {"input"}
    assert not any(n.startswith("grad/") and n.split("/", 1)[1].rsplit("/", 1)[0] in early for n in tg.tensors)
    # frozen weights with ratio 0 get no weight-gradient work
    for k in (23, 33, 39):
        assert not any(op.name == names[k] + "/update" for op in tg.ops)


def test_updates_follow_their_gradient_and_grad_input_reads_old_weights(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10)
    for i, op in enumerate(tg.ops):
        if op.phase != "update":
            continue
        grad = op.inputs[0]
        producer = tg.producer(grad)
        assert producer is not None and producer < i
        # only this layer's backward work sits between the gradient and its update
        layer = op.name.rsplit("/", 1)[0]
        between = tg.ops[producer + 1: i]
        assert all(o.name.startswith(layer + "/") or o.type == "GRAD_ACCUMULATE" for o in between), op.name
        # the layer's input gradient (which reads the weight) comes before the weight update
        if op.type.endswith("_UPDATE") and op.type != "BIAS_UPDATE":
            gi = [j for j, o in enumerate(tg.ops) if o.name == layer + "/grad_input"]
            assert all(j < i for j in gi)
    # the weight gradient tensor never exists: no gradient tensor has a weight's shape and name
    assert not any(n.startswith("grad/") and n.endswith("/weight") for n in tg.tensors)


def test_saved_activations_are_explicit_inputs(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10)
    for op in tg.ops:
        if op.type in ("CONV_2D_UPDATE", "DEPTHWISE_CONV_2D_UPDATE"):
            x = op.inputs[1]
            assert tg.tensors[x].kind in ("activation", "input") and tg.tensors[x].dtype == "int8"
        if op.type == "CLAMP_GRAD":
            assert tg.tensors[op.inputs[1]].kind == "activation"


def test_full_scheme_reaches_the_first_layer_but_not_the_image(mcunet):
    tg = build_train_graph(mcunet, SparseScheme.full(mcunet), num_classes=5)
    names = conv_layer_names(mcunet)
    counts = tg.op_type_counts()
    assert counts["BIAS_UPDATE"] == len(names) - 1
    assert counts["CONV_2D_UPDATE"] + counts["DEPTHWISE_CONV_2D_UPDATE"] == len(names) - 1
    assert "grad/input" not in tg.tensors
    assert not any(op.name == names[0] + "/grad_input" for op in tg.ops)
    assert any(op.name == names[1] + "/grad_input" for op in tg.ops)
    assert counts["MEAN_GRAD"] == 1
    # each PAD before a stride-2 conv is folded into that conv's backward: the padded
    # activation is not saved and gets no gradient; the update reads the PAD's input
    pads = [op for op in mcunet.ops if op.type == "PAD"]
    assert pads and "PAD_GRAD" not in counts
    for pad in pads:
        assert "grad/" + pad.outputs[0] not in tg.tensors
        assert [tg.ops[i].phase for i in tg.consumers(pad.outputs[0])] == ["forward"]
        conv = next(op for op in mcunet.ops if pad.outputs[0] in op.inputs)
        upd = next(op for op in tg.ops if op.name == conv.name + "/update")
        assert upd.inputs[1] == pad.inputs[0] and upd.attrs["padding"] == "EXPLICIT"
        assert upd.attrs["pad_top"] == int(mcunet.tensors[pad.inputs[1]].data[1, 0])


def test_classifier_only_prunes_everything_below_the_head(mcunet):
    tg = build_train_graph(mcunet, SparseScheme.classifier_only(mcunet), num_classes=3)
    assert [op.type for op in tg.ops if op.phase != "forward"] == ["SOFTMAX_CROSS_ENTROPY", "FC_FLOAT_UPDATE"]
    assert tg.parameters == ["head/weight", "head/bias"]
    assert "rng/state" not in tg.tensors


def test_int8_head(mcunet, scheme_49kb):
    tg = build_train_graph(mcunet, scheme_49kb, num_classes=7, head="int8")
    w = tg.tensors["head/weight"]
    assert w.dtype == "int8" and w.shape == (7, 1, 1, 160) and w.scale.size == 7 and w.kind == "parameter"
    assert tg.tensors["logits"].dtype == "int8" and tg.tensors["logits"].shape[-1] == 7
    head_ops = [op for op in tg.ops if op.name.startswith("head")]
    assert [op.type for op in head_ops] == [
        "CONV_2D", "CLAMP_GRAD", "CONV_2D_GRAD_INPUT", "CONV_2D_UPDATE", "BIAS_UPDATE"]
    upd = next(op for op in head_ops if op.type == "CONV_2D_UPDATE")
    assert upd.attrs["channels"] == list(range(160))
    loss = next(op for op in tg.ops if op.type == "SOFTMAX_CROSS_ENTROPY")
    assert loss.attrs["logits_scale"] == pytest.approx(1 / 8)


@pytest.mark.parametrize("head", ["float", "int8"])
def test_new_head_starts_at_zero_and_sends_no_first_gradient(mcunet, scheme_49kb, head):
    """head_init: a new head's weights and bias are zero (the int8 head on the grid 2a/127,
    a = 1/sqrt(C)); so the first step's logits are at chance, the backbone gets a zero gradient
    and its trained parameters stay as they are, while the head itself moves."""
    from tflm_train.training import TrainState, run_step

    tg = build_train_graph(mcunet, scheme_49kb, num_classes=10, head=head, lr=0.01)
    w, b = tg.tensors["head/weight"], tg.tensors["head/bias"]
    assert w.data.size == 10 * tg.tensors[tg.head["features"]].size
    assert not np.any(w.data) and not np.any(b.data)
    if head == "int8":
        c_in = w.data.size // 10
        np.testing.assert_allclose(w.scale, 2.0 / np.sqrt(c_in) / 127.0, rtol=1e-6)
    state = TrainState.from_train_graph(tg)
    x = np.random.default_rng(3).integers(-128, 128, size=tg.tensors[tg.inputs[0]].shape).astype(np.int8)
    values = run_step(tg, state, x, 4)
    assert values["loss"].reshape(-1)[0] == pytest.approx(np.log(10), rel=1e-5)
    feature_grad = f"grad/{tg.head['features']}"
    assert not np.any(values[feature_grad])
    assert np.any(values["head/weight"] != w.data)
    for layer in tg.layers:  # the backbone: unchanged bytes after the first step
        if layer["weight"] != "head/weight" and layer["channels"]:
            assert np.array_equal(values[layer["weight"]], state.values[layer["weight"]]), layer["weight"]


def test_residual_gradients_are_accumulated(mcunet):
    tg = build_train_graph(mcunet, SparseScheme.full(mcunet), num_classes=10)
    acc = [op for op in tg.ops if op.type == "GRAD_ACCUMULATE"]
    adds = [op for op in mcunet.ops if op.type == "ADD"]
    # each residual block input receives its skip gradient and its branch gradient
    assert len(acc) == len(adds)
    for op in acc:
        assert op.outputs[0].startswith("grad/")


def test_person_detect_tflite_compiles(tmp_path):
    import tflm_train

    g = tflm_train.load(PERSON_DETECT)
    tg = build_train_graph(g, SparseScheme.last_k(g, 3), num_classes=2, head="int8")
    types = tg.op_type_counts()
    assert types["AVERAGE_POOL_2D_GRAD"] == 1
    assert types["CONV_2D_UPDATE"] == 2 and types["DEPTHWISE_CONV_2D_UPDATE"] == 1
    assert tg.tensors["logits"].shape == (1, 1, 1, 2)


def test_bad_input_is_a_clear_error(mcunet, scheme_49kb):
    with pytest.raises(GraphError, match="head"):
        build_train_graph(mcunet, scheme_49kb, head="fp16")
    with pytest.raises(GraphError, match="num_classes"):
        build_train_graph(mcunet, scheme_49kb, num_classes=1)
    with pytest.raises(GraphError, match="learning rate"):
        build_train_graph(mcunet, scheme_49kb, lr=-1)
    with pytest.raises(GraphError, match="out of range"):
        build_train_graph(mcunet, SparseScheme(3, {99: 1.0}))
    with pytest.raises(GraphError, match="SparseScheme"):
        build_train_graph(mcunet, {"n_bias_update": 3})
    t = {
        "x": Tensor("x", (1, 4), "int8", [0.1], [0]),
        "y": Tensor("y", (1, 4), "int8", [0.1], [0]),
    }
    no_conv = QuantGraph(t, [Op("ADD", ["x", "x"], ["y"], {"activation": "NONE"})], ["x"], ["y"])
    with pytest.raises(GraphError, match="no CONV_2D / FULLY_CONNECTED layer"):
        build_train_graph(no_conv, SparseScheme(1, {}))


def test_validate_rejects_malformed_graphs():
    from tflm_train.training import TrainOp, TrainTensor

    t = {
        "a": TrainTensor("a", (2,), "float32", "input"),
        "b": TrainTensor("b", (2,), "float32", "gradient"),
        "c": TrainTensor("c", (2,), "float32", "gradient"),
        "p": TrainTensor("p", (2,), "int32", "parameter", data=np.zeros(2, np.int32)),
    }
    ok = [TrainOp("GRAD_ACCUMULATE", ["a", "a"], ["b"], {"inplace_ok": True}, phase="backward")]
    TrainGraph(t, ok, ["a"], ["b"])
    with pytest.raises(GraphError, match="before it is written"):
        TrainGraph(t, [TrainOp("GRAD_ACCUMULATE", ["a", "c"], ["b"], {"inplace_ok": True}, phase="backward")],
                   ["a"], ["b"])
    with pytest.raises(GraphError, match="second time"):
        TrainGraph(t, ok + ok, ["a"], ["b"])
    with pytest.raises(GraphError, match="missing attrs"):
        TrainGraph(t, [TrainOp("GRAD_ACCUMULATE", ["a", "a"], ["b"], {}, phase="backward")], ["a"], ["b"])
    with pytest.raises(GraphError, match="unknown op"):
        TrainGraph(t, [TrainOp("FROB", ["a"], ["b"], {}, phase="backward")], ["a"], ["b"])
    with pytest.raises(GraphError, match="needs data"):
        TrainTensor("q", (2,), "int8", "parameter")
    with pytest.raises(GraphError, match="kind"):
        TrainTensor("q", (2,), "int8", "weights")


def test_keep_head_trains_the_models_own_classifier():
    """head='keep' starts from the model's classifier: the step-0 logits equal the inference graph's."""
    import tflm_train
    from tflm_train import reference
    from tflm_train.training import TrainState, build_train_graph, train_step
    from tflm_train.training.trainer import forward_logits
    from tests.paths import REPO
    import os

    g = tflm_train.load(os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite"))
    tg = build_train_graph(g, SparseScheme.last_k(g, 2), num_classes=10, head="keep")
    assert tg.head_type == "int8" and tg.head["kept"]
    cls = g.conv_op(len(g.conv_op_indices()) - 1)
    np.testing.assert_array_equal(tg.tensors["head/weight"].data, g.tensors[cls.inputs[1]].data)
    state = TrainState.from_train_graph(tg)
    x = np.random.default_rng(0).integers(-128, 128, size=g.tensors[g.inputs[0]].shape, dtype=np.int8)
    out = g.tensors[g.outputs[0]]
    q = reference.invoke(g, x)[0].astype(np.float32)
    expected = np.float32(out.scale[0]) * (q - np.float32(out.zero_point[0]))
    np.testing.assert_array_equal(forward_logits(tg, state, x).reshape(-1), expected.reshape(-1))
    train_step(tg, state, x, 3)
    assert not np.array_equal(state.values["head/bias"], g.tensors[cls.inputs[2]].data)
    with pytest.raises(GraphError, match="classes"):
        build_train_graph(g, SparseScheme.last_k(g, 2), num_classes=5, head="keep")
