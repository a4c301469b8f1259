"""The Python loader never leaks a traceback: ``tflm_train.load`` and ``tflm-train inspect`` on
mutated corpus files (truncations, byte flips, overwritten 32-bit words: a seeded mutator).

Every outcome must be a QuantGraph (inside the support contract: inspect runs on it) or a
GraphError whose message is one line naming the model. The CLI part runs in process
(``tflm_train.cli.main`` with captured output) for speed, plus a few real subprocess runs that
check exit code 2 and exactly one stderr line. Longer runs: ``FUZZ_CASES=200000 pytest
tests/test_loader_fuzz.py``.
"""
import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import tflm_train
from tests.paths import REPO
from tests.test_contract import models  # noqa: F401  (the converter-made corpus fixture)
from tflm_train.cli import inspect_model
from tflm_train.cli import main as cli_main
from tflm_train.graph import GraphError, QuantGraph

LOAD_CASES = int(os.environ.get("FUZZ_CASES", 20000))
CLI_EVERY = 10  # every 10th case also goes through `tflm-train inspect` in process
# every corpus file, the smallest most often (a case costs about the file's tensor count)
CORPUS = ("tiny",) * 12 + ("int16_activations",) * 3 + (
    "flatten_head", "flat_input", "flat_input_flatten", "bias_quantized_dim_3")
WORDS = np.array([0, 1, 2, 4, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                  0xFFFFFFF0, 0x10000], dtype=np.uint64)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: a truncation, 1-8 flipped bytes, or an overwritten aligned 32-bit word
    (offsets, lengths and counts of the flatbuffer are 32-bit words)."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return data[: int(rng.integers(0, len(data)))]
    b = bytearray(data)
    if kind == 1:
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
    elif kind == 2:
        pos = int(rng.integers(0, len(b) // 4)) * 4
        b[pos:pos + 4] = int(WORDS[rng.integers(0, len(WORDS))]).to_bytes(4, "little")
    else:  # a small increment or decrement of a word: an offset or length off by a little
        pos = int(rng.integers(0, len(b) // 4)) * 4
        v = (int.from_bytes(b[pos:pos + 4], "little") + int(rng.integers(-16, 17))) % (1 << 32)
        b[pos:pos + 4] = v.to_bytes(4, "little")
    return bytes(b)


def _one_line_naming(msg: str, model: str) -> None:
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    assert model in msg.split(": ")[0], f"{msg!r} does not name {model}"


def test_load_and_inspect_never_leak_a_traceback(models, tmp_path):  # noqa: F811
    rng = np.random.default_rng(20261130)
    path = tmp_path / "fuzzcase.tflite"
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(LOAD_CASES):
        name = CORPUS[case % len(CORPUS)]
        data = mutate(models[name], rng)
        path.write_bytes(data)
        try:
            graph = tflm_train.load(str(path))
        except GraphError as e:
            _one_line_naming(str(e), "fuzzcase")
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case} ({name}): {type(e).__name__}: {e}")
        else:
            assert isinstance(graph, QuantGraph)
            inspect_model(graph)
            outcomes["loaded"] += 1
        if case % CLI_EVERY == 0:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = cli_main(["inspect", str(path), "--json"])
                except Exception as e:  # noqa: BLE001
                    pytest.fail(f"case {case} ({name}): inspect raised {type(e).__name__}: {e}")
            if rc == 0:
                assert err.getvalue() == "" and out.getvalue().startswith("{")
            else:
                assert rc == 2 and err.getvalue().count("\n") == 1, err.getvalue()
                assert err.getvalue().startswith("tflm-train: error: ")
                _one_line_naming(err.getvalue()[len("tflm-train: error: "):].rstrip("\n"), "fuzzcase")
    # the mutator reaches both outcomes (else it tests nothing)
    assert outcomes["refused"] > LOAD_CASES // 4 and outcomes["loaded"] > 0, outcomes


def test_cli_exits_2_with_one_stderr_line(models, tmp_path):  # noqa: F811
    data = models["flatten_head"]
    cases = {"truncated": data[:len(data) // 2], "magic": data[:4] + b"XXXX" + data[8:],
             "int16": models["int16_activations"]}
    for name, payload in cases.items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(payload)
        proc = subprocess.run([sys.executable, "-m", "tflm_train.cli", "inspect", str(path)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tflm-train: error: "), proc.stderr
        assert name in proc.stderr and "Traceback" not in proc.stderr
