"""The C++ micro runtime rebuilt with -fsanitize=address,undefined.

A small driver over the C API (``micro_ops/tests/runtime_check.cc``) is compiled
with AddressSanitizer and UndefinedBehaviorSanitizer (every report fatal) and
runs: inference byte-identical with tflite-micro, the C API's error paths
(arena too small, wrong sizes, misaligned model, wrong magic, every truncation,
caller plans) and tens of thousands of randomly corrupted models, each of which
must be rejected with a message or run without an invalid access.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest

import tflm_train
from tests.model_factory import synthetic_graphs
from tests.paths import PERSON_DETECT, REPO, seed_model
from tests.test_micro_host import tflm_invoke, zoo_graph
from tests.test_reference import random_inputs
from tflm_train.io.tflite_reader import read_tflite

MICRO_OPS = os.path.join(REPO, "tflm_train", "micro_ops")
CXX = shutil.which("g++")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")

pytestmark = pytest.mark.skipif(CXX is None, reason="needs the host C++ compiler g++")


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    """runtime_check built from the runtime sources with the sanitizers."""
    out = tmp_path_factory.mktemp("sanitized")
    src = os.path.join(MICRO_OPS, "src")
    sources = sorted(os.path.join(src, f) for f in os.listdir(src) if f.endswith(".cc"))
    sources += sorted(os.path.join(src, "kernels", f) for f in os.listdir(os.path.join(src, "kernels"))
                      if f.endswith(".cc"))
    sources.append(os.path.join(MICRO_OPS, "tests", "runtime_check.cc"))
    exe = str(out / "runtime_check")
    cmd = [CXX, "-std=c++17", "-O1", "-g", "-fno-exceptions", "-fno-rtti", "-Wall", "-Wextra", "-Werror", *SANITIZE,
           f"-I{os.path.join(MICRO_OPS, 'include')}", *sources, "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"sanitizer build failed:\n{proc.stderr[-4000:]}"
    return exe


def run_checker(exe, *args, timeout=120):
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    output = proc.stdout + proc.stderr
    assert "runtime error" not in output and "AddressSanitizer" not in output, output[-4000:]
    assert proc.returncode == 0, f"runtime_check {' '.join(map(str, args[:1]))} failed:\n{output[-4000:]}"
    return output


def write_case(tmp_path, name, model_bytes, graph, n, seed=0):
    """Model, input and tflite-micro's expected output bytes (all samples concatenated) as files."""
    inputs = random_inputs(graph, n, seed)
    expected = tflm_invoke(model_bytes, inputs)
    paths = [tmp_path / f"{name}.{ext}" for ext in ("tflite", "in", "expected")]
    paths[0].write_bytes(model_bytes)
    paths[1].write_bytes(b"".join(np.ascontiguousarray(a[0]).tobytes() for a in inputs))
    paths[2].write_bytes(b"".join(np.ascontiguousarray(o[0]).tobytes() for o in expected))
    return paths


def test_sanitized_runtime_matches_tflm(checker, tmp_path):
    person = open(PERSON_DETECT, "rb").read()
    mcunet = tflm_train.load(seed_model("mcunet-5fps"), input_size=128)
    cases = [("person_detect", person, read_tflite(person), 3), ("zoo", zoo_graph().to_tflite(), zoo_graph(), 4),
             ("mcunet_128", mcunet.to_tflite(), mcunet, 1)]
    cases += [(n, g.to_tflite(), g, 3) for n, g in synthetic_graphs().items() if len(g.inputs) == 1]
    for name, data, graph, n in cases:
        out = run_checker(checker, "run", *write_case(tmp_path, name, data, graph, n))
        assert out.count(" identical") == n, f"{name}:\n{out}"


def test_sanitized_error_paths(checker, tmp_path):
    for name, data, graph in [("person_detect", open(PERSON_DETECT, "rb").read(), None),
                              ("zoo", zoo_graph().to_tflite(), zoo_graph())]:
        graph = graph or read_tflite(data)
        model, inputs, _ = write_case(tmp_path, name, data, graph, 1)
        out = run_checker(checker, "errors", model, inputs)
        assert "FAIL" not in out and "every truncation -> TT_MALFORMED_MODEL" in out, out


def test_sanitized_corruption_fuzz(checker, tmp_path):
    models = {"zoo": zoo_graph().to_tflite(), "person_detect": open(PERSON_DETECT, "rb").read()}
    models.update({n: g.to_tflite() for n, g in synthetic_graphs().items()})
    iterations = {"zoo": 30000, "person_detect": 60}
    for seed, (name, data) in enumerate(models.items(), start=1):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        out = run_checker(checker, "fuzz", path, iterations.get(name, 4000), seed)
        ran = int(out.split("iterations, ")[1].split(" still valid")[0])
        assert ran > 0 and "FAIL" not in out, out
