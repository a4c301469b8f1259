"""The C++ micro runtime rebuilt with -fsanitize=address,undefined.

A small driver over the C API (``micro_ops/tests/runtime_check.cc``) is compiled
with AddressSanitizer and UndefinedBehaviorSanitizer (every report fatal) and
runs: inference byte-identical with tflite-micro, the C API's error paths
(arena too small, wrong sizes, misaligned model, wrong magic, every truncation,
caller plans) and tens of thousands of randomly corrupted models, each of which
must be rejected with a message or run without an invalid access.
"""
import os
import re
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
from tflm_train.micro.mcu import library_sources

MICRO_OPS = os.path.join(REPO, "tflm_train", "micro_ops")
CXX = shutil.which("g++")
# TT_POISON_ARENA: the runtime poisons every arena byte no live buffer owns while an op runs
# (src/arena_poison.h), so an overrun that stays inside the arena is reported too.
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
            "-DTT_POISON_ARENA"]
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
           UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")

pytestmark = pytest.mark.skipif(CXX is None, reason="needs the host C++ compiler g++")


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    """runtime_check built from the runtime sources with the sanitizers."""
    out = tmp_path_factory.mktemp("sanitized")
    sources = library_sources()
    sources += [os.path.join(MICRO_OPS, "tests", f) for f in ("runtime_check.cc", "checkpoint_check.cc")]
    exe = str(out / "runtime_check")
    cmd = [CXX, "-std=c++17", "-O1", "-g", "-fno-exceptions", "-fno-rtti", "-ffp-contract=off", "-Wall", "-Wextra",
           "-Werror", *SANITIZE,
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


# --------------------------------------------------------------------------- the training runtime
def _fnv1a(data: bytes) -> int:
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def _training_files():
    from tests.test_backward_random import random_graph, random_scheme
    from tests.test_bands import user_graph
    from tests.test_micro_train import DEFAULT_MODEL, ZOO_SCHEME, scheme_file, zoo_graph
    from tflm_train.io.train_export import export

    mcunet = tflm_train.load(seed_model("mcunet-5fps"), input_size=48)
    return {
        "mcunet48_99kb": export(mcunet, scheme_file("mcunet-5fps") + ":99kb", lr=1e-3).data,
        "zoo_int8_head": export(zoo_graph(), ZOO_SCHEME, head="int8", num_classes=5, lr=0.01).data,
        "default_last2": export(tflm_train.load(DEFAULT_MODEL), "last-2", lr=1e-3).data,
        "user_bands": export(user_graph(), "last-1", num_classes=4, lr=1e-2).data,  # a band chain
        # the image streamed in rows into the band chain's window
        "user_bands_streamed": export(user_graph(), "last-1", num_classes=4, lr=1e-2, stream_input=True).data,
        # float16 gradients: every kernel's binary16 path, the int8 head's float32 -> float16 grad-input
        "mcunet48_99kb_float16": export(mcunet, scheme_file("mcunet-5fps") + ":99kb", lr=1e-3,
                                        grad_dtype="float16").data,
        "zoo_int8_head_float16": export(zoo_graph(), ZOO_SCHEME, head="int8", num_classes=5, lr=0.01,
                                        grad_dtype="float16").data,
        # the backward kernels on random shapes (tests/test_backward_random.py), in place and not
        **{f"random_backward_{seed}_{dtype}": export(random_graph(seed), random_scheme(seed, first_only=first),
                                                     num_classes=4, lr=0.05, grad_dtype=dtype).data
           for seed, dtype, first in ((0, "float32", True), (3, "float16", False), (7, "float32", False),
                                      (9, "float16", True))},
    }


@pytest.fixture(scope="module")
def training_files():
    return _training_files()


def _write_samples(tmp_path, name, tg, n, seed=0):
    from tests.test_micro_train import samples

    s = samples(tg.tensors[tg.inputs[0]].shape, n, seed, tg.num_classes)
    images, labels = tmp_path / f"{name}.images", tmp_path / f"{name}.labels"
    images.write_bytes(b"".join(x.tobytes() for x, _ in s))
    labels.write_bytes(np.array([label for _, label in s], np.int32).tobytes())
    return s, images, labels


def test_sanitized_training_matches_reference(checker, tmp_path, training_files):
    """The training step under ASan/UBSan: losses (bit patterns) and every parameter's bytes
    equal the NumPy reference trainer's."""
    from tflm_train.io.train_export import read_training_file
    from tflm_train.training.trainer import TrainState, train_step

    for name, data in training_files.items():
        _, tg, _ = read_training_file(data)
        steps = 3
        s, images, labels = _write_samples(tmp_path, name, tg, steps)
        model = tmp_path / f"{name}.tflite"
        model.write_bytes(data)
        out = run_checker(checker, "train", model, images, labels, steps)
        assert "FAIL" not in out, out
        state = TrainState.from_train_graph(tg)
        for k, (x, label) in enumerate(s):
            loss = np.float32(train_step(tg, state, x, label))
            assert f"loss {k} {loss.view(np.uint32):08x}" in out, f"{name} step {k}:\n{out}"
        for pname, value in state.values.items():
            assert f"param {pname} {_fnv1a(value.tobytes()):016x}" in out, f"{name}: {pname} differs\n{out}"


def test_sanitized_training_error_paths(checker, tmp_path, training_files):
    from tflm_train.io.train_export import read_training_file

    data = training_files["default_last2"]
    _, tg, _ = read_training_file(data)
    s, images, _ = _write_samples(tmp_path, "errors", tg, 1)
    model = tmp_path / "errors.tflite"
    model.write_bytes(data)
    out = run_checker(checker, "train_errors", model, images)
    assert "FAIL" not in out and "every truncation -> an error with a message" in out, out


def test_sanitized_training_corruption_fuzz(checker, tmp_path, training_files):
    """Random corruptions of the training metadata: rejected with a message, or still a
    valid file that trains without an invalid access."""
    from tests.test_micro_train import _metadata_span
    from tflm_train.io.train_export import read_training_file

    for seed, (name, iterations) in enumerate([("default_last2", 500), ("zoo_int8_head", 500),
                                               ("mcunet48_99kb", 120), ("user_bands", 300),
                                               ("user_bands_streamed", 300)], start=1):
        data = training_files[name]
        _, tg, _ = read_training_file(data)
        s, images, _ = _write_samples(tmp_path, name, tg, 1)
        model = tmp_path / f"{name}.tflite"
        model.write_bytes(data)
        begin, length = _metadata_span(data)
        out = run_checker(checker, "train_fuzz", model, images, iterations, seed, begin, begin + length, timeout=300)
        assert "FAIL" not in out and f"train_fuzz: {iterations} iterations" in out, out
        rejected = int(out.split("malformed ")[1].split(",")[0])
        assert rejected > iterations // 4, out


# --------------------------------------------------------------------------- checkpoints, atomic steps
@pytest.fixture(scope="module")
def zoo_training_files():
    from tests.test_micro_train import ZOO_SCHEME, zoo_graph
    from tflm_train.io.train_export import export

    return {"float": export(zoo_graph(), ZOO_SCHEME, num_classes=3, lr=0.01).data,
            "int8": export(zoo_graph(), ZOO_SCHEME, head="int8", num_classes=3, lr=0.01).data}


def _powercut_figures(out):
    """The counts of runtime_check powercut's summary line."""
    line = next(l for l in out.splitlines() if l.startswith("powercut "))
    nums = [int(v) for v in re.findall(r"(\d+) (?:cuts|erase|program|partial|nothing|new|bad|previous)", line)]
    keys = ["first_cuts", "first_erase", "first_program", "first_partial", "first_nothing", "first_new", "first_bad",
            "later_cuts", "later_erase", "later_program", "later_partial", "later_previous", "later_new", "later_bad"]
    return line, dict(zip(keys, nums))


@pytest.mark.parametrize("head,page,write", [("float", 256, 8), ("int8", 128, 1), ("float", 1024, 32)])
def test_sanitized_checkpoint_power_cuts(checker, tmp_path, zoo_training_files, head, page, write):
    """A power cut at every erase and program of a save (before it, after it, half a page
    erased, after every write unit, a torn unit), then a restart and restore: the first save
    leaves nothing or the new checkpoint; later saves the previous or the new one, byte for
    byte (parameters, RNG, step count, logit range); the next save always recovers."""
    from tflm_train.io.train_export import read_training_file

    data = zoo_training_files[head]
    _, tg, _ = read_training_file(data)
    _, images, _ = _write_samples(tmp_path, head, tg, 4)
    model = tmp_path / f"{head}.tflite"
    model.write_bytes(data)
    out = run_checker(checker, "powercut", model, images, page, write)
    line, f = _powercut_figures(out)
    print(line)
    assert "FAIL" not in out, out
    assert f["first_bad"] == 0 and f["later_bad"] == 0, line
    assert f["first_cuts"] == f["first_nothing"] + f["first_new"] > 0, line
    assert f["later_cuts"] == f["later_previous"] + f["later_new"] > 0, line
    assert f["later_partial"] > f["later_erase"] > 0 and f["later_new"] > 0, line


def test_sanitized_checkpoint_of_another_model_refused(checker, tmp_path, zoo_training_files):
    paths = []
    for head in ("float", "int8"):
        paths.append(tmp_path / f"{head}.tflite")
        paths[-1].write_bytes(zoo_training_files[head])
    out = run_checker(checker, "wrong_model", *paths, 256, 8)
    assert "FAIL" not in out and "slot A: a checkpoint of another model" in out, out


@pytest.mark.parametrize("head", ["float", "int8"])
def test_sanitized_atomic_steps(checker, tmp_path, zoo_training_files, head):
    """Refused steps (labels outside [0, classes), wrong image lengths, NULL) and, for the float
    head, steps with non-finite logits (a checkpoint with 3e38 head weights) change no byte."""
    from tflm_train.io.train_export import read_training_file

    data = zoo_training_files[head]
    _, tg, _ = read_training_file(data)
    _, images, _ = _write_samples(tmp_path, head, tg, 1)
    model = tmp_path / f"{head}.tflite"
    model.write_bytes(data)
    out = run_checker(checker, "atomic", model, images)
    numeric = 3 if head == "float" else 0
    assert "FAIL" not in out and f"atomic: 9 refused steps, {numeric} non-finite steps" in out, out
