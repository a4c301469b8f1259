"""Readers and writer: seed models, .tflite round trip, and clear errors on bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tflm_train
from tflm_train import GraphError
from tflm_train.cli import main as cli_main
from tflm_train.io.tflite_reader import read_tflite
from tests.paths import PERSON_DETECT, REPO, SEED_MODELS, seed_model


def tflm_run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model_bytes)
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0)


@pytest.fixture(scope="session")
def edge_models(tmp_path_factory):
    out = tmp_path_factory.mktemp("edge_models")
    subprocess.run([sys.executable, "-m", "tests.make_edge_models", str(out)], cwd=REPO, check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_model_structure(name):
    g = tflm_train.load(seed_model(name))
    convs = g.conv_op_indices()
    assert g.ops[convs[0]].name == "first_conv"
    assert g.ops[convs[-1]].name == "classifier"
    assert g.tensors[g.inputs[0]].shape == (1, 128, 128, 3)
    assert g.tensors[g.outputs[0]].shape == (1, 1000)
    # depthwise weights are [1, kh, kw, C] with per-channel scales on dim 3
    dw = next(op for op in g.ops if op.type == "DEPTHWISE_CONV_2D")
    w = g.tensors[dw.inputs[1]]
    assert w.shape[0] == 1 and w.quantized_dim == 3 and w.scale.size == w.shape[3]


def test_mcunet_conv_index_matches_published_layout():
    g = tflm_train.load(seed_model("mcunet-5fps"))
    assert len(g.conv_op_indices()) == 43
    assert g.conv_op(21).name == "blocks/7/pointwise1"
    assert g.conv_op(39).name == "blocks/13/pointwise1"


@pytest.mark.parametrize("name", SEED_MODELS)
def test_seed_model_tflite_round_trip(name):
    g = tflm_train.load(seed_model(name))
    data = g.to_tflite()
    g2 = read_tflite(data)
    assert [op.type for op in g2.ops] == [op.type for op in g.ops]
    assert g2.to_tflite() == data  # writing is deterministic and the reader loses nothing
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = rng.integers(-128, 128, size=(1, 128, 128, 3), dtype=np.int8)
        np.testing.assert_array_equal(tflm_run(data, x), tflm_run(g2.to_tflite(), x))


def test_seed_model_sanity_on_real_photo():
    """README check: the temple photo puts architecture classes in the top 5 (through TFLite Micro)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    img = load_sample_images().images[0]
    h, w, _ = img.shape
    s = min(h, w)
    img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    img = np.asarray(Image.fromarray(img).resize((128, 128), Image.BILINEAR)).astype(np.float64)
    x = np.clip(np.round(img - 127.5), -128, 127).astype(np.int8)[None]
    architecture = {497, 698, 663, 538, 442}
    for name in SEED_MODELS:
        y = tflm_run(tflm_train.load(seed_model(name)).to_tflite(), x)[0].astype(int)
        top5 = set(np.argsort(-y, kind="stable")[:5].tolist())
        assert len(top5 & architecture) >= 2, (name, top5)


def test_person_detect_round_trip_outputs_identical():
    data = open(PERSON_DETECT, "rb").read()
    g = read_tflite(data, name="person_detect")
    ours = g.to_tflite()
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.integers(-128, 128, size=(1, 96, 96, 1), dtype=np.int8)
        np.testing.assert_array_equal(tflm_run(data, x), tflm_run(ours, x))


def test_written_file_runs_in_litert():
    from ai_edge_litert.interpreter import Interpreter

    data = tflm_train.load(seed_model("mcunet-5fps"), input_size=64).to_tflite()
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    assert "infer" in it.get_signature_list()
    x = np.zeros((1, 64, 64, 3), np.int8)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    assert y.shape == (1, 1000) and y.dtype == np.int8


def test_truncated_file_is_rejected():
    data = open(PERSON_DETECT, "rb").read()
    for n in (0, 3, 7, 100, 5000, len(data) // 2, len(data) - 1000):
        with pytest.raises(GraphError, match="truncated|malformed"):
            read_tflite(data[:n])


def test_wrong_magic_is_rejected():
    data = bytearray(open(PERSON_DETECT, "rb").read())
    data[4:8] = b"XXXX"
    with pytest.raises(GraphError, match="wrong magic"):
        read_tflite(bytes(data))


def test_corrupted_bytes_never_crash():
    data = open(PERSON_DETECT, "rb").read()
    rng = np.random.default_rng(2)
    # corrupt the flatbuffer tables (first few KB hold vtables/offsets), one 4-byte word at a time
    for _ in range(60):
        bad = bytearray(data)
        pos = int(rng.integers(8, 4096))
        bad[pos : pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        try:
            read_tflite(bytes(bad))
        except GraphError:
            pass


def test_float_model_is_rejected(edge_models):
    with pytest.raises(GraphError, match="float model"):
        tflm_train.load(str(edge_models / "float_model.tflite"))


def test_unsupported_op_is_named(edge_models):
    with pytest.raises(GraphError, match=r"op 1 TANH .*unsupported op"):
        tflm_train.load(str(edge_models / "int8_tanh.tflite"))


def test_cli_error_is_one_line(edge_models, capsys):
    assert cli_main(["inspect", str(edge_models / "int8_tanh.tflite")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "TANH" in err


def test_missing_seed_half_is_named(tmp_path):
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(GraphError, match=r"m\.npz is missing"):
        tflm_train.load(str(tmp_path / "m.json"))


def test_cli_inspect_reports_macs_and_params(capsys):
    assert cli_main(["inspect", seed_model("mcunet-5fps"), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["macs"] == tflm_train.load(seed_model("mcunet-5fps")).macs() > 0
    assert info["params"] > 0 and info["num_conv_layers"] == 43
    assert info["layers"][-2]["conv_index"] == 42


def test_cli_convert(tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert cli_main(["convert", seed_model("mbv2-w0.35"), "-o", str(out)]) == 0
    assert read_tflite(out.read_bytes()).macs() == tflm_train.load(seed_model("mbv2-w0.35")).macs()
