"""libFuzzer targets of the C++ micro runtime (tflm_train/micro_ops/fuzz/), briefly.

Each target is built with clang -fsanitize=fuzzer,address,undefined and -DTT_POISON_ARENA
(benchmarks/fuzz.py) and runs ~12 s: first every input of its committed corpus (seeds
from real exported models and the regression inputs of crashes found and fixed), then
coverage-guided mutations. Any sanitizer report, crash, leak or timeout fails the test.
The long runs (>= 10^6 executions per target) are `python benchmarks/fuzz.py --seconds N`
with committed results in benchmarks/results/fuzz.json.
"""
import shutil

import pytest

from benchmarks.fuzz import CXX, TARGETS, build_targets, run_target

pytestmark = pytest.mark.skipif(shutil.which(CXX) is None, reason="needs clang++ with libFuzzer (scripts/install.sh)")

SECONDS = 12


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    return build_targets(str(tmp_path_factory.mktemp("fuzz_build")))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_briefly(targets, target, tmp_path):
    result = run_target(targets[target], target, SECONDS, str(tmp_path))
    assert result["crashes"] == 0 and result["exit_code"] == 0, result["log_tail"]
    assert result["executions"] > result["seed_inputs"] > 0, result
