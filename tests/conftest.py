"""Session fixtures shared by the tests."""
import glob
import os
import subprocess
import sys

import pytest

from tests.paths import REPO


@pytest.fixture(scope="session")
def factory_models(tmp_path_factory):
    """{name: path} of the converter-made int8 models of tests/model_factory.py, generated once
    per session in a subprocess (tfmot's Keras 2 setting stays out of this process)."""
    out = tmp_path_factory.mktemp("factory_models")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "tests.model_factory", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tests.model_factory failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {os.path.splitext(os.path.basename(p))[0]: p for p in sorted(glob.glob(os.path.join(out, "*.tflite")))}


@pytest.fixture(scope="session")
def contract_models(tmp_path_factory):
    """{name: bytes} of tests/make_contract_models.py's converter-made models (Keras 3, dynamic batch,
    int8 PTQ; one 16x8), generated once per session in a subprocess."""
    out = tmp_path_factory.mktemp("contract_models")
    proc = subprocess.run([sys.executable, "-m", "tests.make_contract_models", str(out)], cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tests.make_contract_models failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return {os.path.splitext(n)[0]: (out / n).read_bytes() for n in sorted(os.listdir(out))}
