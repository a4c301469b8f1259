"""`tflm-train arduino`: the generated Arduino library follows the library specification, and
every example sketch, compiled for a Cortex-M4F as the Arduino Mbed OS core compiles it and
linked into 256 KB RAM / 1 MB flash, learns in QEMU (mps2-an386) from real Fashion-MNIST
images arriving over its Serial line: the loss falls and the held-out accuracy rises; what
KeepLearning learned survives a reset byte for byte (equal to the host runtime's parameters).

The model: the bundled backbone (tflm_train/data/fmnist_backbone.tflite), a new float head
of 4 classes, scheme last-2. The board: tests/arduino_board.py + tests/arduino_api.
"""
import configparser
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests import arduino_board as board
from tests.paths import REPO
from tflm_train import arduino
from tflm_train.micro import mcu

CLASSES = {"LearnNewClasses": [0, 1, 8, 7], "AdaptToPlace": [2, 5, 3, 9], "KeepLearning": [0, 1, 8, 7]}
NAMES = ["t-shirt", "trouser", "bag", "sneaker"]
HELD_OUT = 12
LR = 0.05


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    import tflm_train
    from tflm_train.cli import main
    from tflm_train.io.train_export import export

    try:
        mcu.check_tools()
    except mcu.McuError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("arduino")
    model = out / "train.tflite"
    export(tflm_train.load(os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")), "last-2",
           str(model), num_classes=4, lr=LR)
    lib = out / "TinyTrainer"
    assert main(["arduino", str(model), "-o", str(lib), "--zip", "--labels", ",".join(NAMES)]) == 0
    return {"dir": str(lib), "model": model.read_bytes(), "out": str(out)}


@pytest.fixture(scope="module")
def library_objects(library):
    """The library and the test board's core, compiled once for every sketch."""
    return board.build_library(library["dir"], os.path.join(library["out"], "build"))


def sketch(library, objects, example):
    return board.build_sketch(library["dir"], example, objects, os.path.join(library["out"], "build"))


def samples(model: bytes, example: str, count: int):
    """Fashion-MNIST test images of the example's four classes (labels 0..3), quantized for the model."""
    from tflm_train.datasets import fashion_mnist, prepare_images, to_int8_input
    from tflm_train.micro import Interpreter

    classes = CLASSES[example]
    x, y = fashion_mnist("test")
    keep = np.isin(y, classes)
    x, y = x[keep], np.array([classes.index(v) for v in y[keep]])
    order = np.random.default_rng(0).permutation(len(y))[:count]
    info = Interpreter(model).train_info
    xs = to_int8_input(prepare_images(x[order], (32, 32), 1), *info["image_quantization"])
    return xs.reshape(count, -1), y[order]


def held_out_lines(xs, ys):
    return [board.hex_line("E", y, x) for x, y in zip(xs, ys)] + ["R"]


def held_out(lines):
    found = [board.HELD_OUT_LINE.match(l) for l in lines]
    return [(int(m[2]), int(m[3])) for m in found if m]


def steps(lines):
    return [m for m in (board.STEP_LINE.match(l) for l in lines) if m]


# --------------------------------------------------------------------------- the library
def test_library_follows_the_arduino_library_specification(library):
    lib = library["dir"]
    # library.properties: every required key (1.5 format rev. 2.2), values in their allowed forms
    text = open(os.path.join(lib, "library.properties")).read()
    props = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
    props.read_string("[library]\n" + text)
    p = props["library"]
    for key in ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url",
                "architectures", "includes"):
        assert p.get(key, "").strip(), f"library.properties: {key} missing"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]*", p["name"]) and len(p["name"]) <= 63
    assert re.fullmatch(r"\d+\.\d+\.\d+", p["version"])
    assert p["category"] in ("Display", "Communication", "Signal Input/Output", "Sensors", "Device Control",
                             "Timing", "Data Storage", "Data Processing", "Other")
    assert re.fullmatch(r"https?://\S+", p["url"])
    assert all(re.fullmatch(r"[a-z0-9_]+|\*", a.strip()) for a in p["architectures"].split(","))
    for header in p["includes"].split(","):
        assert os.path.isfile(os.path.join(lib, "src", header.strip()))
    # layout: src/ (recursive compile), examples/<Name>/<Name>.ino, keywords.txt; no 1.0-format utility/
    assert os.path.isdir(os.path.join(lib, "src")) and not os.path.exists(os.path.join(lib, "utility"))
    assert sorted(os.listdir(os.path.join(lib, "examples"))) == sorted(arduino.EXAMPLES)
    for ex in arduino.EXAMPLES:
        folder = os.path.join(lib, "examples", ex)
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", ex)
        assert [f for f in os.listdir(folder) if f.endswith(".ino")] == [ex + ".ino"]  # the sketch names its folder
    for line in open(os.path.join(lib, "keywords.txt")).read().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\t(KEYWORD1|KEYWORD2|KEYWORD3|LITERAL1)", line), line
    # the runtime is copied from tflm_train/micro_ops at generation time, byte for byte
    sources = arduino.runtime_sources()
    assert any(s.endswith("c_api.cc") for s in sources) and "include/tflm_train.h" in sources
    for rel in sources:  # (a .cc file as .cpp, with the no-fused-multiply-add line first)
        original = open(os.path.join(arduino.MICRO_OPS, rel), "rb").read()
        path, text = arduino.runtime_copy(rel, original)
        assert open(os.path.join(lib, path), "rb").read() == text and text.endswith(original), rel
    built = board.library_sources(lib)
    assert not [f for d, _, fs in os.walk(os.path.join(lib, "src")) for f in fs if f.endswith(".cc")]
    assert len([f for f in built if f.startswith(os.path.join(lib, arduino.RUNTIME_DIR))]) == \
        len([s for s in sources if s.endswith(".cc")])
    # ... and the repository keeps no second copy of it
    template = [f for _, _, fs in os.walk(arduino.TEMPLATE) for f in fs]
    assert not set(template) & {os.path.basename(s).replace(".cc", ".cpp") for s in sources}
    # the model: the training .tflite as a C array
    c = open(os.path.join(lib, "src", "TinyTrainerModel.cpp")).read()
    body = c[c.index("tinytrainer_model[] = {") + 23:c.index("};")]
    assert bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)) == library["model"]
    assert '"t-shirt", "trouser", "bag", "sneaker"' in c
    # the zip: one top folder, the library inside it
    with zipfile.ZipFile(library["dir"] + ".zip") as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"TinyTrainer"} and "TinyTrainer/library.properties" in names
    assert len(names) == sum(len(fs) for _, _, fs in os.walk(lib))


def test_cli_refuses_what_it_cannot_write(library, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "tflm_train.cli", "arduino", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=120)

    inference = os.path.join(REPO, "tflm_train", "data", "fmnist_backbone.tflite")
    r = run(inference, "-o", str(tmp_path / "lib"))
    assert r.returncode == 2 and "not a training .tflite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lib").exists()
    model = os.path.join(library["out"], "train.tflite")
    r = run(model, "-o", str(tmp_path / "lib"), "--labels", "a,b")
    assert r.returncode == 2 and "2 class names given; the model has 4 classes" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = run(model, "-o", str(tmp_path / "mine"))
    assert r.returncode == 2 and "not a library written by tflm-train arduino" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert run(model, "-o", str(tmp_path / "again")).returncode == 0
    (tmp_path / "again" / "src" / "TinyTrainerModel.cpp").write_text("stale")
    assert run(model, "-o", str(tmp_path / "again")).returncode == 0  # a library it wrote: replaced
    assert "tinytrainer_model[]" in (tmp_path / "again" / "src" / "TinyTrainerModel.cpp").read_text()


# --------------------------------------------------------------------------- the examples on the board
def _fits(elf, lines):
    mem = board.memory(elf)
    stack = [int(m[1]) for m in (re.match(r"^TT stack high_water=(\d+)", l) for l in lines) if m]
    assert mem["flash"] <= mcu.FLASH_BYTES and stack and mem["ram_static"] + stack[0] <= mcu.RAM_BYTES
    return mem, stack[0]


def test_learn_new_classes(library_objects, library, tmp_path):
    """Labels from the button (pin 2) and from 'L'; samples from the sensor ('S' lines)."""
    elf = sketch(library, library_objects, "LearnNewClasses")
    xs, ys = samples(library["model"], "LearnNewClasses", 24 + HELD_OUT)
    test_x, test_y = xs[24:], ys[24:]
    lines, label = held_out_lines(test_x, test_y), 0
    for k in range(24):
        if k % 2:  # the serial command
            lines.append(f"L {ys[k]}")
        else:  # presses of the button: each selects the next class
            while label != ys[k]:
                lines += ["!pin 2 0", "!pin 2 1"]
                label = (label + 1) % 4
        label = int(ys[k])
        lines.append(board.hex_line("S", None, xs[k]))
    lines += held_out_lines(test_x, test_y)
    # bad lines are refused, one error line each, and change nothing
    bad = [board.hex_line("T", 4, xs[0]), "S 12ab", board.hex_line("T", 1, xs[0]) + "00", "Q", "TT 1", "L 7"]
    lines[len(lines) // 2:len(lines) // 2] = bad
    out = board.run_sketch(elf, str(tmp_path), lines)
    print("\n".join(out[-8:]))
    assert out[0].startswith("LearnNewClasses: 4 classes")
    assert [l for l in out if l.startswith("error")] == [
        "error: 'T' needs a label and the sample as hex bytes", "error: 'S' needs the sample as hex bytes",
        "error: 'T' needs a label and the sample as hex bytes", "error: unknown command (S, L, T, E, R)",
        "error: 'T' needs a label and the sample as hex bytes", "error: 'L' needs a label in [0, classes)"]
    st = steps(out)
    assert [int(m[1]) for m in st] == list(range(1, 25))
    assert [int(m[2]) for m in st] == [int(v) for v in ys[:24]]  # every label reached the step
    assert "label 2 (bag)" in out
    losses = [float(m[4]) for m in st]
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])  # the loss falls
    assert float(st[-1][6]) > float(st[7][6])  # the running accuracy (predicted before learning) rises
    print("held-out correct before / after:", held_out(out))
    (before, n0), (after, n1) = held_out(out)
    assert n0 == n1 == HELD_OUT and after >= before + 4 and after >= 0.75 * HELD_OUT
    _fits(elf, out)


def test_adapt_to_place(library_objects, library, tmp_path):
    """Collect 12 labelled samples at the place, adapt (3 epochs over them), test before and after."""
    elf = sketch(library, library_objects, "AdaptToPlace")
    xs, ys = samples(library["model"], "AdaptToPlace", 12 + HELD_OUT)
    lines = held_out_lines(xs[12:], ys[12:])
    lines += [board.hex_line("T", y, x) for x, y in zip(xs[:12], ys[:12])] + ["A"]
    lines += held_out_lines(xs[12:], ys[12:])
    out = board.run_sketch(elf, str(tmp_path), lines)
    print("\n".join(out[-8:]))
    assert "collected 12 samples" in out
    epochs = [float(m[3]) for m in (board.EPOCH_LINE.match(l) for l in out) if m]
    assert len(epochs) == 3 and epochs[2] < 0.6 * epochs[0]
    print("held-out correct before / after:", held_out(out), "epoch losses:", epochs)
    (before, n0), (after, n1) = held_out(out)
    assert n0 == n1 == HELD_OUT and after >= before + 3
    _fits(elf, out)


def test_keep_learning_across_resets(library_objects, library, tmp_path):
    """Run 1 trains 16 steps (checkpoints at 8 and 16); run 2, a reset later, restores them: the
    same held-out answers, and the flash holds exactly the host runtime's parameters."""
    from tflm_train.micro import Interpreter

    elf = sketch(library, library_objects, "KeepLearning")
    xs, ys = samples(library["model"], "KeepLearning", 16 + HELD_OUT)
    test = held_out_lines(xs[16:], ys[16:])
    first = board.run_sketch(elf, str(tmp_path),
                             test + [board.hex_line("T", y, x) for x, y in zip(xs[:16], ys[:16])] + test)
    print("\n".join(first[-6:]))
    assert any(l.startswith("starting from the exported model") for l in first)
    assert "checkpoint 1 saved: 8 steps" in first and "checkpoint 2 saved: 16 steps" in first
    losses = [float(m[4]) for m in steps(first)]
    assert len(losses) == 16 and np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    print("held-out correct before / after:", held_out(first))
    (before, _), (after, _) = held_out(first)
    assert after >= before + 4

    second = board.run_sketch(elf, str(tmp_path), test)  # the reset
    assert "restored checkpoint 2: 16 steps" in second
    assert held_out(second) == [(after, HELD_OUT)]

    # the flash holds what the host runtime learns from the same 16 samples, byte for byte
    host = Interpreter(library["model"])
    shape = host.train_info["image_shape"]
    for x, y in zip(xs[:16], ys[:16]):
        host.train_step(x.reshape(shape), int(y))
    flash = open(os.path.join(tmp_path, "flash.bin"), "rb").read()
    need = host.checkpoint_storage_bytes(4096, 4)
    device = Interpreter(library["model"])
    info = device.restore_checkpoint(flash[len(flash) - need:], 4096, 4)
    assert info["steps_done"] == 16
    want, got = host.parameters(), device.parameters()
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].tobytes() == want[name].tobytes(), name
    _fits(elf, second)
