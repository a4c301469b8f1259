"""The NumPy reference forward against the tflite-micro interpreter, byte for byte,
plus unit tests of the fixed-point helpers on edge cases."""
from fractions import Fraction

import numpy as np
import pytest

import tflm_train
from tflm_train import GraphError, reference
from tflm_train.graph import SUPPORTED_OPS, Op
from tflm_train.io.tflite_reader import read_tflite
from tflm_train.ops import forward, quant
from tests.model_factory import EXPECTED_OPS, multiplier_variants, synthetic_graphs
from tests.paths import MODELS, PERSON_DETECT, SEED_MODELS, seed_model

N_INPUTS = 20


# --------------------------------------------------------------------------- helpers
def tflm_invoke(model_bytes: bytes, inputs, n_outputs: int = 1):
    """Outputs of the tflite-micro interpreter for each input set (one interpreter, reused)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes)
    results = []
    for arrays in inputs:
        for i, a in enumerate(arrays):
            it.set_input(a, i)
        it.invoke()
        results.append([np.array(it.get_output(i)) for i in range(n_outputs)])
    return results


def random_inputs(graph, n: int, seed: int):
    """n input sets: int8 over the full range, float32 mostly in [-1.5, 1.5] with some outliers."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        arrays = []
        for name in graph.inputs:
            t = graph.tensors[name]
            if t.dtype == "int8":
                arrays.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8))
            else:
                a = rng.uniform(-1.5, 1.5, size=t.shape).astype(np.float32)
                a.flat[:: 7] *= 20.0  # beyond the quantization range: exercises the clamp
                arrays.append(a)
        sets.append(arrays)
    return sets


def assert_same_bytes(ours: np.ndarray, theirs: np.ndarray, what: str):
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != tflm {theirs.dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != tflm {theirs.shape}"
    if ours.tobytes() != theirs.tobytes():
        bad = np.flatnonzero(ours.ravel() != theirs.ravel())
        diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max()
        pytest.fail(f"{what}: {bad.size} of {ours.size} values differ (max |diff| {diff}), first at flat index {bad[:5]}")


def check_against_tflm(graph, model_bytes: bytes, n: int = N_INPUTS, seed: int = 0):
    inputs = random_inputs(graph, n, seed)
    expected = tflm_invoke(model_bytes, inputs, len(graph.outputs))
    for k, (arrays, tflm_outs) in enumerate(zip(inputs, expected)):
        ours = reference.invoke(graph, arrays)
        assert len(ours) == len(tflm_outs)
        for j, (a, b) in enumerate(zip(ours, tflm_outs)):
            assert_same_bytes(a, b, f"{graph.name} input set {k} output {j}")


# --------------------------------------------------------------------------- models vs tflite-micro
@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_factory_model_matches_tflm(factory_models, name):
    data = open(factory_models[name], "rb").read()
    graph = read_tflite(data, name=name)
    missing = set(EXPECTED_OPS[name]) - {op.type for op in graph.ops}
    assert not missing, f"{name}: the converter did not produce {missing}"
    check_against_tflm(graph, data)


@pytest.mark.parametrize("name", sorted(synthetic_graphs()))
def test_synthetic_graph_matches_tflm(name):
    graph = synthetic_graphs()[name]
    check_against_tflm(graph, graph.to_tflite())


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_model_matches_tflm_at_128(name):
    graph = tflm_train.load(seed_model(name))
    assert graph.tensors[graph.inputs[0]].shape == (1, 128, 128, 3)
    check_against_tflm(graph, graph.to_tflite())


def test_person_detect_matches_tflm():
    data = open(PERSON_DETECT, "rb").read()
    check_against_tflm(read_tflite(data, name="person_detect"), data)


def test_every_supported_op_is_covered(factory_models):
    seen = set()
    for path in factory_models.values():
        seen |= {op.type for op in read_tflite(open(path, "rb").read()).ops}
    for graph in synthetic_graphs().values():
        seen |= {op.type for op in graph.ops}
    # tests/test_new_ops.py checks its converter models against tflite-micro; that the converter
    # really emits these ops is its test_converter_emits_the_ops.
    from tests.new_ops_models import EXPECTED_OPS as NEW_OPS_MODELS

    for ops in NEW_OPS_MODELS.values():
        seen |= set(ops)
    assert set(factory_models) == set(EXPECTED_OPS)
    assert set(SUPPORTED_OPS) <= seen, f"ops never tested against tflite-micro: {set(SUPPORTED_OPS) - seen}"
    # both FULLY_CONNECTED weight layouts, both QUANTIZE directions, depth multiplier 2
    graphs = [read_tflite(open(p, "rb").read()) for p in factory_models.values()] + list(synthetic_graphs().values())
    fc_weights = [g.tensors[op.inputs[1]] for g in graphs for op in g.ops if op.type == "FULLY_CONNECTED"]
    assert any(w.per_channel for w in fc_weights) and any(not w.per_channel for w in fc_weights)
    quantize_sources = {g.tensors[op.inputs[0]].dtype for g in graphs for op in g.ops if op.type == "QUANTIZE"}
    assert quantize_sources == {"float32", "int8"}
    assert any(op.attrs.get("depth_multiplier", 1) == 2 for g in graphs for op in g.ops)


@pytest.mark.parametrize("graph_name", ["fc_multiplier_rounding", "conv_multiplier_rounding"])
def test_multiplier_formula_is_the_one_tflm_uses(graph_name):
    """The crafted graphs' first 8 units have zero weights and a bias on which the two known
    multiplier formulas round differently; TFLite Micro (checked above) agrees with all-double."""
    graph = synthetic_graphs()[graph_name]
    op = graph.ops[0]
    s_in = graph.tensors[op.inputs[0]].scalar_scale()
    s_w = graph.tensors[op.inputs[1]].scalar_scale()
    s_out = graph.tensors[op.outputs[0]].scalar_scale()
    from_f32_product, all_double = multiplier_variants(s_in, s_w, s_out)
    bias = graph.tensors[op.inputs[2]].data[:8].astype(np.int64)
    x = np.zeros(graph.tensors[graph.inputs[0]].shape, np.int8)
    ours = reference.invoke(graph, x)[0].ravel()[:8]
    assert np.array_equal(ours, quant.multiply_by_quantized_multiplier(bias, *all_double))
    assert not np.array_equal(ours, quant.multiply_by_quantized_multiplier(bias, *from_f32_product))


# --------------------------------------------------------------------------- person detection on real images
def read_bmp_gray8(path: str) -> np.ndarray:
    """8-bit grayscale BMP -> uint8 [rows, cols], rows top to bottom."""
    data = open(path, "rb").read()
    assert data[:2] == b"BM", f"{path}: not a BMP"
    offset = int.from_bytes(data[10:14], "little")
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    bits = int.from_bytes(data[28:30], "little")
    assert bits == 8, f"{path}: {bits}-bit BMP, 8-bit expected"
    stride = (width + 3) // 4 * 4
    rows = np.frombuffer(data, np.uint8, count=stride * abs(height), offset=offset).reshape(abs(height), stride)
    rows = rows[:, :width]
    return rows[::-1] if height > 0 else rows  # positive height: stored bottom-up


@pytest.mark.parametrize("image, expected_class", [("person.bmp", 1), ("no_person.bmp", 0)])
def test_person_detect_classifies_real_images(image, expected_class):
    data = open(PERSON_DETECT, "rb").read()
    graph = read_tflite(data, name="person_detect")
    pixels = read_bmp_gray8(f"{MODELS}/{image}")
    x = pixels.view(np.int8).reshape(1, 96, 96, 1)  # the example's convention: bytes as int8, no offset
    scores = reference.invoke(graph, x)[0]
    assert int(np.argmax(scores)) == expected_class, f"{image}: scores {scores}"
    assert_same_bytes(scores, tflm_invoke(data, [[x]])[0][0], image)


# --------------------------------------------------------------------------- fixed-point helpers
def _round_half_away(v: Fraction) -> int:
    r = int(abs(v))
    if abs(v) - r >= Fraction(1, 2):
        r += 1
    return r if v >= 0 else -r


def test_round_half_away_from_zero():
    x = np.array([0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, -0.49999997, 3.0], np.float32)
    assert quant.round_half_away(x).tolist() == [1, -1, 2, 3, -3, 0, 0, 3]


def test_quantize_multiplier_edge_cases():
    assert quant.quantize_multiplier(0.0) == (0, 0)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    assert quant.quantize_multiplier(0.75) == (3 << 29, 0)
    # a mantissa that rounds up to 2^31 is renormalized
    assert quant.quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    # below ~2^-31 the multiplier flushes to zero
    assert quant.quantize_multiplier(2.0 ** -40) == (0, 0)
    with pytest.raises(GraphError):
        quant.quantize_multiplier(float("nan"))


def test_quantize_multiplier_is_accurate_and_vectorized():
    reals = np.random.default_rng(0).uniform(1e-6, 50.0, size=200)
    mults, shifts = quant.quantize_multiplier(reals)
    assert np.all((mults >= 1 << 30) & (mults < 1 << 31))
    approx = mults * np.exp2(shifts - 31.0)
    assert np.all(np.abs(approx - reals) <= reals * 2.0 ** -30)
    for r, m, s in zip(reals[:20], mults[:20], shifts[:20]):
        assert quant.quantize_multiplier(float(r)) == (int(m), int(s))


def test_saturating_rounding_doubling_high_mul_matches_exact_arithmetic():
    rng = np.random.default_rng(1)
    a = rng.integers(quant.INT32_MIN, quant.INT32_MAX, size=500, endpoint=True)
    b = rng.integers(quant.INT32_MIN, quant.INT32_MAX, size=500, endpoint=True)
    a[:4] = [quant.INT32_MIN, quant.INT32_MIN, quant.INT32_MAX, -1]
    b[:4] = [quant.INT32_MIN, quant.INT32_MAX, quant.INT32_MAX, 1]
    got = quant.saturating_rounding_doubling_high_mul(a, b)
    for x, y, g in zip(a.tolist(), b.tolist(), got.tolist()):
        if x == y == quant.INT32_MIN:
            assert g == quant.INT32_MAX  # the one overflowing product saturates
            continue
        assert g == _round_half_away(Fraction(x * y, 1 << 31)), (x, y)


def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    assert quant.rounding_divide_by_pot(np.array([5, -5, 3, -3, 4, -4, 6, -6]), 1).tolist() == [3, -3, 2, -2, 2, -2, 3, -3]
    rng = np.random.default_rng(2)
    x = rng.integers(quant.INT32_MIN, quant.INT32_MAX, size=300)
    for e in (0, 1, 7, 20, 31):
        got = quant.rounding_divide_by_pot(x, e)
        assert got.tolist() == [_round_half_away(Fraction(int(v), 1 << e)) for v in x]
    with pytest.raises(GraphError):
        quant.rounding_divide_by_pot(1, 32)


def test_multiply_by_quantized_multiplier_double_rounding():
    # identity multiplier (2^30, shift 1) is exact
    x = np.arange(-1000, 1000)
    assert np.array_equal(quant.multiply_by_quantized_multiplier(x, 1 << 30, 1), x)
    # double rounding: -49 * (2^30 + 1) / 2^32 = -12.25000001 -> high mul -25 -> /2 -> -13
    # (single rounding would give -12); the seed-model tests show TFLite Micro rounds twice
    assert quant.multiply_by_quantized_multiplier(-49, (1 << 30) + 1, -1) == -13
    # per-channel multipliers broadcast over the last axis, positive shifts scale up
    acc = np.array([[100, 100], [-7, -7]])
    got = quant.multiply_by_quantized_multiplier(acc, np.array([1 << 30, 3 << 29]), np.array([-1, 2]))
    assert got.tolist() == [[25, 300], [-2, -21]]


def test_smaller_and_greater_than_one_multipliers():
    m, s = quant.quantize_multiplier_smaller_than_one_exp(0.3)
    assert s <= 0 and quant.multiply_by_quantized_multiplier_smaller_than_one_exp(1000, m, s) == 300
    with pytest.raises(GraphError):
        quant.quantize_multiplier_smaller_than_one_exp(3.0)
    m, s = quant.quantize_multiplier_greater_than_one(3.0)
    assert s >= 0 and quant.multiply_by_quantized_multiplier_greater_than_one(-7, m, s) == -21


def test_activation_range():
    assert quant.activation_range("NONE", 0.1, 5) == (-128, 127)
    assert quant.activation_range("RELU", 0.1, 5) == (5, 127)
    assert quant.activation_range("RELU6", 6 / 255, -128) == (-128, 127)
    assert quant.activation_range("RELU6", 0.1, -10) == (-10, 50)
    assert quant.activation_range("RELU_N1_TO_1", 0.02, 3) == (-47, 53)
    assert quant.activation_range("RELU", 0.1, -200) == (-128, 127)  # bounds never leave int8
    with pytest.raises(GraphError, match="TANH"):
        quant.activation_range("TANH", 0.1, 0)


def test_quantize_and_dequantize():
    # float32 division then ties away from zero: 0.25 / 0.1f is just above 2.5 in float32
    q = quant.quantize(np.array([0.15, -0.15, 0.25, 1e9, -1e9, 0.0], np.float32), 0.1, 3)
    assert q.tolist() == [5, 1, 6, 127, -128, 3]
    assert q.dtype == np.int8
    d = quant.dequantize(np.array([-128, 3, 127], np.int8), np.float32(0.1), 3)
    assert d.dtype == np.float32
    assert d.tolist() == [np.float32(0.1) * np.float32(-131), 0.0, np.float32(0.1) * np.float32(124)]


def test_fixed_point_exp_and_reciprocal():
    a = -np.arange(0, 32 << 26, 1 << 22)  # Q5.26, [-32, 0]
    e = quant.exp_on_negative_values(a, 5) / 2.0 ** 31
    assert np.allclose(e, np.exp(a / 2.0 ** 26), atol=2e-9)
    assert quant.exp_on_negative_values(0, 5) == quant.INT32_MAX
    x = np.arange(0, 1 << 31, 1 << 24)
    r = quant.one_over_one_plus_x_for_x_in_0_1(x) / 2.0 ** 31
    assert np.allclose(r, 1.0 / (1.0 + x / 2.0 ** 31), atol=1e-8)
    recip, bits = quant.reciprocal_with_headroom(np.array([3 << 19]), 12)  # 3.0 in Q12.19
    assert bits[0] == 1 and abs(recip[0] / 2.0 ** 31 * 2.0 ** -1 - 1 / 3) < 1e-8  # 1/3 = (2/3) / 2


# --------------------------------------------------------------------------- op-level rules
def test_softmax_params_and_uniform_rows():
    mult, shift, diff_min = forward.softmax_params(1 / 16)
    assert (mult, shift, diff_min) == (1 << 30, 23, -248)
    out = forward.softmax(np.full((2, 4), 17, np.int8), input_scale=0.1)
    assert out.tolist() == [[-64] * 4] * 2  # 1/4 = 64/256


def test_softmax_many_rows_match_tflm():
    """Softmax's fixed-point pipeline on many rows: every 2-class difference exhaustively,
    and random / peaked rows at several input scales, betas and class counts."""
    from tflm_train.graph import QuantGraph, Tensor

    rng = np.random.default_rng(3)
    for scale, beta, classes in [(0.5, 1.0, 2), (0.02, 1.0, 2), (0.09, 1.0, 10), (0.3, 0.6, 40), (0.15, 2.0, 100)]:
        if classes == 2:
            d = np.arange(-128, 128)
            x = np.stack([np.full_like(d, -128), d], axis=1).astype(np.int8)  # every difference
        else:
            x = rng.integers(-128, 128, size=(1000, classes)).astype(np.int8)
            x[500:] = (x[500:] // 8 + 100).astype(np.int8)  # peaked rows
        tensors = {"x": Tensor("x", x.shape, "int8", [scale], [3]), "y": Tensor("y", x.shape, "int8", [1 / 256], [-128])}
        graph = QuantGraph(tensors, [Op("SOFTMAX", ["x"], ["y"], {"beta": beta}, "softmax")], ["x"], ["y"],
                           name=f"softmax_{scale}_{beta}_{classes}")
        from tflite_micro.python.tflite_micro import runtime

        it = runtime.Interpreter.from_bytes(graph.to_tflite(), arena_size=4 * x.size + 100_000)
        it.set_input(x, 0)
        it.invoke()
        assert_same_bytes(reference.invoke(graph, x)[0], np.array(it.get_output(0)), graph.name)


def test_softmax_beyond_tflm_range_is_a_clear_error():
    # 512 equal logits: the exps sum to 512, where TFLite Micro aborts on an assertion
    with pytest.raises(GraphError, match="SOFTMAX over 512 classes"):
        forward.softmax(np.zeros((1, 512), np.int8), input_scale=0.1)
    assert forward.softmax(np.zeros((1, 511), np.int8), input_scale=0.1).max() == -127


def test_pooling_rounding_and_partial_windows():
    x = np.array([-3, -2, 1, 2], np.int8).reshape(1, 1, 4, 1)
    avg = forward.average_pool_2d(x, filter_size=(1, 2), stride=(1, 2), padding="VALID", output_scale=0.1,
                                  output_zero_point=0)
    assert avg.ravel().tolist() == [-3, 2]  # -2.5 -> -3, 1.5 -> 2
    x = np.arange(9, dtype=np.int8).reshape(1, 3, 3, 1)
    avg = forward.average_pool_2d(x, filter_size=(2, 2), stride=(2, 2), padding="SAME", output_scale=0.1,
                                  output_zero_point=0)
    assert avg.ravel().tolist() == [2, 4, 7, 8]  # padding is not counted
    mx = forward.max_pool_2d(x - 5, filter_size=(2, 2), stride=(2, 2), padding="SAME", output_scale=0.1,
                             output_zero_point=-2, activation="RELU")
    assert mx.ravel().tolist() == [-1, 0, 2, 3]


def test_same_padding_puts_the_odd_element_after():
    assert forward.conv_output_size(8, 3, 2, 1, "SAME") == (4, 0, 1)
    assert forward.conv_output_size(7, 3, 2, 1, "SAME") == (4, 1, 1)
    assert forward.conv_output_size(11, 3, 2, 2, "VALID") == (4, 0, 0)
    with pytest.raises(GraphError):
        forward.conv_output_size(2, 5, 1, 1, "VALID")


def test_mean_folds_the_count_into_the_multiplier():
    # 3 elements: multiplier (2^30, 1) -> k = 1, (2^30 << 1) // 3 = 715827882, shift 0
    x = np.array([1, 2, 2], np.int8).reshape(1, 3, 1, 1)
    got = forward.mean(x, [1, 2], keep_dims=True, input_scale=0.5, input_zero_point=0, output_scale=0.5,
                       output_zero_point=0)
    assert got.ravel().tolist() == [quant.multiply_by_quantized_multiplier(5, 715827882, 0)] == [2]
    assert forward.mean(x, np.zeros(0, np.int32), keep_dims=True, input_scale=1.0, input_zero_point=0,
                        output_scale=2.0, output_zero_point=0).tolist() == x.tolist()  # no axis: a copy


# --------------------------------------------------------------------------- errors
def test_invoke_rejects_bad_inputs():
    graph = synthetic_graphs()["mean_7x7_rescale"]
    good = np.zeros((1, 7, 7, 5), np.int8)
    with pytest.raises(GraphError, match="must be int8"):
        reference.invoke(graph, good.astype(np.float32))
    with pytest.raises(GraphError, match="shape"):
        reference.invoke(graph, good[:, :6])
    with pytest.raises(GraphError, match="2 input array"):
        reference.invoke(graph, [good, good])
    with pytest.raises(GraphError, match="numpy array"):
        reference.invoke(graph, [good.tolist()])
    assert reference.invoke(graph, good)[0].shape == (1, 5)
    values = reference.invoke_all(graph, {"x": good})
    assert set(values) == {"x", "y"}


def test_run_op_names_an_unsupported_op():
    graph = synthetic_graphs()["mean_7x7_rescale"]
    with pytest.raises(GraphError, match="my_tanh.*TANH"):
        forward.run_op(graph, Op("TANH", ["x"], ["y"], {}, "my_tanh"), {"x": np.zeros((1, 7, 7, 5), np.int8)})


def test_run_op_names_a_bad_activation_or_missing_attribute():
    graph = synthetic_graphs()["pool_act_fc_variants"]
    values = {"x": np.zeros((1, 9, 9, 3), np.int8)}
    pool = graph.ops[0]
    bad_act = Op(pool.type, pool.inputs, pool.outputs, dict(pool.attrs, activation="TANH"), "pool_tanh")
    with pytest.raises(GraphError, match="pool_tanh.*TANH"):
        forward.run_op(graph, bad_act, values)
    no_stride = Op(pool.type, pool.inputs, pool.outputs, {k: v for k, v in pool.attrs.items() if k != "stride_h"}, "p")
    with pytest.raises(GraphError, match="missing attribute 'stride_h'"):
        forward.run_op(graph, no_stride, values)
