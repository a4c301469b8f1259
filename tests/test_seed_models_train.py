"""The three seed models at full size (128x128) with their ~100 KB published schemes
(MCUNet-5FPS "99kb", MobileNetV2-w0.35 "99kb", ProxylessNAS-w0.3 "98kb"): the C++ runtime's
training steps (host build, the optimized kernels) equal the NumPy reference trainer byte for
byte, loss and every trained parameter after each step. These are the shapes the kernels are
trusted on (the 48x48 tests in test_micro_train.py cover the execution modes on small planes),
with float32 and (MCUNet) float16 gradient storage."""
import pytest

from tests.paths import seed_model
from tests.test_micro_train import scheme_file, train_both
from tflm_train import load
from tflm_train.io.train_export import export


@pytest.mark.parametrize("model,key", [("mcunet-5fps", "99kb"), ("mbv2-w0.35", "99kb"), ("proxyless-w0.3", "98kb")])
def test_seed_model_128_matches_reference(model, key):
    graph = load(seed_model(model), input_size=128)
    r = export(graph, scheme_file(model) + f":{key}", num_classes=10, lr=1e-3, seed=1)
    train_both(r.data, steps=2, seed=5)


def test_mcunet_128_float16_gradients_match_reference():
    graph = load(seed_model("mcunet-5fps"), input_size=128)
    r = export(graph, scheme_file("mcunet-5fps") + ":99kb", num_classes=10, lr=1e-3, seed=1, grad_dtype="float16")
    assert {s.mode for s in r.plan.steps} >= {"in_place", "fused", "skip"}
    train_both(r.data, steps=2, seed=5)
