"""Coverage-guided fuzzing of the C++ micro runtime with libFuzzer.

Three targets (tflm_train/micro_ops/fuzz/), each built with clang
-fsanitize=fuzzer,address,undefined (every report fatal) and -DTT_POISON_ARENA (the
runtime poisons every arena byte no live buffer owns, so an overrun that stays inside
the arena is caught too); each gives the runtime an arena of exactly the size it uses:

- ``inference``: the TFLite reader, tt_init (prepare) and tt_invoke;
- ``train``: the training-metadata reader, tt_train_init (prepare), two steps, a prediction;
- ``checkpoint``: tt_checkpoint_restore of a fuzzed storage image (after a successful
  restore: save, then restore into a fresh trainer, parameter bytes compared).

Build: -O2, ASan + UBSan; the kernels without comparison tracing (KERNEL_FLAGS).

Seeds: tflm_train/micro_ops/fuzz/corpus/<target>/ (small real exported models and
checkpoint images, ``--write-corpus`` regenerates them; crash inputs found and fixed
are kept there as regression cases, names starting with ``regression-``).

Writes benchmarks/results/fuzz.json (per target: executions, crashes, seconds,
coverage, command, machine, commit). Run:
    python benchmarks/fuzz.py --seconds 600            # every target
    python benchmarks/fuzz.py --seconds 3600 --executions 1000000 --targets train --merge
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from tflm_train.micro.mcu import library_sources  # noqa: E402  (the firmware's list of runtime sources)
MICRO_OPS = os.path.join(REPO, "tflm_train", "micro_ops")
FUZZ_DIR = os.path.join(MICRO_OPS, "fuzz")
CORPUS = os.path.join(FUZZ_DIR, "corpus")
CHECKPOINT_MODEL = os.path.join(CORPUS, "checkpoint_model.tflite")
RESULTS = os.path.join(HERE, "results", "fuzz.json")
TARGETS = ("inference", "train", "checkpoint")
CXX = os.environ.get("CLANGXX", "clang++")
FLAGS = ["-std=c++17", "-O2", "-gline-tables-only", "-fno-exceptions", "-fno-rtti", "-ffp-contract=off",
         "-DTT_POISON_ARENA", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
         f"-I{os.path.join(MICRO_OPS, 'include')}"]
# Kernels get edge coverage but no comparison tracing: their loop bounds and data compares
# carry no magic values for the mutator, and tracing them took a third of the train target's time
# (readers, prepare and the C API keep it: that is where input values meet constants).
KERNEL_FLAGS = ["-fno-sanitize-coverage=trace-cmp"]
ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:allocator_may_return_null=1",
       "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def _compile(args):
    src, obj = args
    headers = glob.glob(os.path.join(MICRO_OPS, "**", "*.h"), recursive=True)
    if os.path.exists(obj) and os.path.getmtime(obj) > max(os.path.getmtime(p) for p in [src, *headers]):
        return obj  # up to date (a build directory reused between runs)
    extra = KERNEL_FLAGS if f"{os.sep}kernels{os.sep}" in src else []
    proc = subprocess.run([CXX, *FLAGS, *extra, "-fsanitize=fuzzer-no-link,address,undefined", "-c", src, "-o", obj],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compiling {os.path.relpath(src, REPO)} failed:\n{proc.stderr[-3000:]}")
    return obj


def build_targets(out_dir: str, jobs: int = 2) -> Dict[str, str]:
    """The three fuzz targets, linked against the runtime compiled with the sanitizers."""
    os.makedirs(out_dir, exist_ok=True)
    sources = library_sources()
    objects = [os.path.join(out_dir, os.path.relpath(s, MICRO_OPS).replace(os.sep, "_") + ".o") for s in sources]
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(_compile, zip(sources, objects)))
    exes = {}
    for target in TARGETS:
        exe = os.path.join(out_dir, f"fuzz_{target}")
        cmd = [CXX, *FLAGS, "-fsanitize=fuzzer,address,undefined", os.path.join(FUZZ_DIR, f"fuzz_{target}.cc"),
               *objects, "-o", exe]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"linking fuzz_{target} failed:\n{proc.stderr[-3000:]}")
        exes[target] = exe
    return exes


def run_target(exe: str, target: str, seconds: float, work_dir: str, extra: List[str] = (),
               executions: int = 0) -> Dict:
    """Fuzz one target for `seconds` (or until `executions` inputs ran, if given) from its
    seed corpus (new inputs go to a scratch corpus
    in `work_dir`, crashes to `work_dir`/crash-*). Returns the run's figures."""
    corpus = os.path.join(work_dir, f"corpus_{target}")
    os.makedirs(corpus, exist_ok=True)
    artifacts = os.path.join(work_dir, f"artifacts_{target}") + os.sep
    os.makedirs(artifacts, exist_ok=True)
    cmd = [exe, f"-max_total_time={int(seconds)}", "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=2560",
           "-max_len=65536", f"-artifact_prefix={artifacts}", *([f"-runs={executions}"] if executions else []),
           *extra, corpus, os.path.join(CORPUS, target)]
    env = dict(os.environ, **ENV, TT_FUZZ_MODEL=CHECKPOINT_MODEL)
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 600)
    elapsed = time.time() - start
    log = proc.stderr
    executions = int(_last(r"stat::number_of_executed_units:\s*(\d+)", log) or 0)
    coverage = _last(r"cov: (\d+)", log)
    features = _last(r"ft: (\d+)", log)
    crashes = sorted(os.path.basename(p) for p in glob.glob(artifacts + "*"))
    return {
        "target": target,
        "executions": executions,
        "crashes": len(crashes) + (1 if proc.returncode != 0 and not crashes else 0),
        "crash_files": crashes,
        "exit_code": proc.returncode,
        "seconds": round(elapsed, 1),
        "executions_per_second": round(executions / elapsed, 1) if elapsed else 0,
        "coverage": {"edges": int(coverage) if coverage else None, "features": int(features) if features else None},
        "seed_inputs": len(os.listdir(os.path.join(CORPUS, target))),
        "corpus_inputs_at_end": len(os.listdir(corpus)),
        "log_tail": log[-3000:] if proc.returncode != 0 else "",
    }


def _last(pattern: str, text: str):
    found = re.findall(pattern, text)
    return found[-1] if found else None


# --------------------------------------------------------------------------- seed corpus
def write_corpus() -> None:
    """Seeds from real exported models: small .tflite files (inference), small training
    files (train), checkpoint storage images of one training file (checkpoint)."""
    sys.path.insert(0, REPO)
    import numpy as np

    from tests.model_factory import synthetic_graphs
    from tests.test_micro_train import ZOO_SCHEME, zoo_graph
    from tflm_train.io.train_export import export
    from tflm_train.micro import Interpreter

    def put(target, name, data):
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        with open(os.path.join(CORPUS, target, name), "wb") as f:
            f.write(data)

    for target in TARGETS:  # regenerate the seeds, keep the regression inputs
        for p in glob.glob(os.path.join(CORPUS, target, "seed-*")):
            os.remove(p)
    put("inference", "seed-zoo.tflite", zoo_graph().to_tflite())
    for name, g in synthetic_graphs().items():
        data = g.to_tflite()
        if len(data) <= 16384:
            put("inference", f"seed-{name}.tflite", data)
    float_head = export(zoo_graph(), ZOO_SCHEME, num_classes=3, lr=0.01).data
    int8_head = export(zoo_graph(), ZOO_SCHEME, head="int8", num_classes=3, lr=0.01).data
    put("train", "seed-zoo_float_head.tflite", float_head)
    put("train", "seed-zoo_int8_head.tflite", int8_head)
    with open(CHECKPOINT_MODEL, "wb") as f:
        f.write(float_head)
    # Storage images: empty, one checkpoint, two, the second one torn in its header.
    it = Interpreter(float_head)
    size = it.checkpoint_storage_bytes(page_size=256, write_size=8)
    image = bytearray(b"\xff" * size)
    put("checkpoint", "seed-empty.bin", bytes(image))
    rng = np.random.default_rng(0)
    shape = it.train_info["image_shape"]
    it.save_checkpoint(image, page_size=256, write_size=8)
    put("checkpoint", "seed-one.bin", bytes(image))
    it.train_step(rng.integers(-128, 128, shape, dtype=np.int8), 1)
    it.save_checkpoint(image, page_size=256, write_size=8)
    put("checkpoint", "seed-two.bin", bytes(image))
    torn = bytearray(image)
    torn[size // 2 + 16:size // 2 + 32] = b"\xff" * 16
    put("checkpoint", "seed-torn.bin", bytes(torn))


def _git_commit() -> str:
    """HEAD, marked when the fuzzed runtime sources differ from it (a shared working tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "tflm_train/micro_ops"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" + uncommitted changes under tflm_train/micro_ops" if dirty else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="fuzzing time per target")
    parser.add_argument("--executions", type=int, default=0,
                        help="stop a target after this many executions (--seconds stays the limit)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--merge", action="store_true", help="keep other targets' entries in the results file")
    parser.add_argument("--write-corpus", action="store_true", help="regenerate the seed corpus and exit")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args(argv)
    if args.write_corpus:
        write_corpus()
        return 0
    if shutil.which(CXX) is None:
        print(f"error: {CXX} not found (scripts/install.sh installs clang and libFuzzer)", file=sys.stderr)
        return 2
    commit = _git_commit()  # the sources the targets are built from
    work = tempfile.mkdtemp(prefix="tflm_fuzz_")
    exes = build_targets(os.path.join(work, "build"))
    results = {}
    if args.merge and os.path.exists(args.output):
        with open(args.output) as f:
            results = {r["target"]: r for r in json.load(f)["targets"]}
    for target in args.targets:
        r = run_target(exes[target], target, args.seconds, work, executions=args.executions)
        r.update(command="python benchmarks/fuzz.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                 commit=commit, date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 machine=f"{platform.machine()}, {os.cpu_count()} CPUs (shared), {platform.platform()}",
                 compiler=subprocess.run([CXX, "--version"], capture_output=True, text=True).stdout.split("\n")[0],
                 flags=" ".join([*FLAGS[:-1], "-fsanitize=fuzzer,address,undefined"]) + "; kernels: " + " ".join(KERNEL_FLAGS))
        results[target] = r
        print(f"{target}: {r['executions']} executions in {r['seconds']} s, {r['crashes']} crashes, "
              f"coverage {r['coverage']['edges']} edges", flush=True)
        for name in r["crash_files"]:
            shutil.copy(os.path.join(work, f"artifacts_{target}", name), os.path.join(HERE, "results", f"fuzz-{name}"))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"description": "libFuzzer runs of the C++ micro runtime (benchmarks/fuzz.py)",
                   "targets": [results[t] for t in TARGETS if t in results]}, f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(results[t]["crashes"] for t in args.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
