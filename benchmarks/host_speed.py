"""Host speed of the C++ runtime against Keras 3 and LiteRT, single thread, same run.

For MCUNet-5FPS, MobileNetV2-w0.35 and ProxylessNAS-w0.3 at 128x128 with their ~100 KB
published schemes ("99kb", "99kb", "98kb") and a new 10-class float head, one process measures:

- ours: `tflm_train.micro.Interpreter.train_step` (one SGD step of the sparse scheme on one
  sample, the exported training .tflite) and `infer` (the int8 inference .tflite);
- Keras 3: `train_on_batch` (batch 1) of the same network emulated by `tflm_train.keras.from_graph`
  with the same trainable set (`SparseUpdate(scheme)`, QAS(SGD)), TensorFlow limited to one
  thread;
- LiteRT (ai-edge-litert): inference of the same int8 .tflite, one thread;
- not measured yet: TFLite with the Flex delegate training the same layers (it needs a
  separate interpreter, tensorflow-cpu 2.16.2 with numpy<2; TF 2.21's has no Flex delegate).

Each figure is the median of `--repeat` timed calls after `--warmup` calls. Writes
benchmarks/results/host_speed.json and replaces its section of benchmarks/README.md.
Run: python benchmarks/host_speed.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# one thread everywhere (set before TensorFlow starts)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import numpy as np  # noqa: E402

from readme_section import replace_section  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
RUNS = [("mcunet-5fps", "MCUNet-5FPS", "99kb"), ("mbv2-w0.35", "MobileNetV2-w0.35", "99kb"),
        ("proxyless-w0.3", "ProxylessNAS-w0.3", "98kb")]
INPUT_SIZE, NUM_CLASSES, LR, SEED = 128, 10, 1e-3, 1
BEGIN, END = "<!-- host_speed:begin -->", "<!-- host_speed:end -->"


def timed(fn, warmup: int, repeat: int) -> float:
    """Median CPU seconds of the process (every thread) per call, over `repeat` calls after
    `warmup` calls. CPU time, not wall time: on a shared machine a call's wall time depends on
    the other processes; its CPU time does not (each peer runs one thread)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def run_one(model: str, key: str, work: str, warmup: int, repeat: int) -> dict:
    import tensorflow as tf

    import tflm_train
    from tflm_train.io.tflite_writer import write_tflite
    from tflm_train.io.train_export import export
    from tflm_train.keras import QAS, SparseUpdate, from_graph
    from tflm_train.micro import Interpreter
    from tflm_train.training.scheme import scheme_of

    graph = tflm_train.load(os.path.join(SHARED, "models", f"{model}.npz"), input_size=INPUT_SIZE)
    scheme_path = os.path.join(SHARED, "schemes", f"{model}.json") + f":{key}"
    r = export(graph, scheme_path, os.path.join(work, f"{model}_{key}_train.tflite"), num_classes=NUM_CLASSES,
               lr=LR, seed=SEED)
    ours = Interpreter(r.data)
    info = ours.train_info
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, info["image_shape"]).astype(np.int8)
    label = 3
    row = dict(model=model, scheme=key, input_size=INPUT_SIZE, num_classes=NUM_CLASSES)
    row["ours_train_step_s"] = timed(lambda: ours.train_step(x, label), warmup, repeat)
    row["ours_predict_s"] = timed(lambda: ours.predict(x), warmup, repeat)

    # int8 inference .tflite of the same graph (the seed model's own classifier)
    infer_bytes = write_tflite(graph)
    infer = Interpreter(infer_bytes)
    xi = rng.integers(-128, 128, infer.input_details[0]["shape"]).astype(infer.input_details[0]["dtype"])
    row["ours_infer_s"] = timed(lambda: infer.infer(xi), warmup, repeat)
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    lite = LiteRT(model_content=infer_bytes, num_threads=1)
    lite.allocate_tensors()
    d_in, d_out = lite.get_input_details()[0], lite.get_output_details()[0]

    def lite_infer():
        lite.set_tensor(d_in["index"], xi.reshape(d_in["shape"]))
        lite.invoke()
        return lite.get_tensor(d_out["index"])

    row["litert_infer_s"] = timed(lite_infer, warmup, repeat)
    same = np.array_equal(lite_infer().reshape(-1), np.asarray(infer.infer(xi)).reshape(-1))
    row["infer_equal_litert"] = bool(same)

    # Keras 3: the same network and trainable set, batch 1
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    km = from_graph(graph, num_classes=NUM_CLASSES, head="float", seed=SEED)
    km.compile(optimizer=QAS(keras.optimizers.SGD(LR)),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    SparseUpdate(scheme_of(scheme_path, graph)).apply_to(km)
    xk = x.reshape((1,) + tuple(info["image_shape"][1:])).astype(np.float32)
    yk = np.array([label])
    row["keras_train_on_batch_s"] = timed(lambda: km.train_on_batch(xk, yk), warmup, repeat)
    row["train_speedup_vs_keras"] = row["keras_train_on_batch_s"] / row["ours_train_step_s"]
    row["infer_ratio_vs_litert"] = row["litert_infer_s"] / row["ours_infer_s"]
    return row


def markdown(result) -> str:
    lines = [BEGIN, "## Host speed (`host_speed.py`)", "",
             "`python benchmarks/host_speed.py`: one process, one thread each, median CPU time (the process's, "
             "all threads) of "
             f"{result['repeat']} timed calls after {result['warmup']} warm-up calls, 128x128, ~100 KB schemes, "
             "10-class float head. Ours: the C++ runtime through `tflm_train.micro.Interpreter` "
             f"(`setup.py`: -O3, baseline x86-64). Machine: {result['host']} ({result['cpu']}). "
             "Results: `results/host_speed.json`.", "",
             "| model | scheme | our train_step (ms) | Keras 3 train_on_batch (ms) | speed-up | our infer (ms) "
             "| LiteRT infer (ms) | LiteRT / ours | output bytes equal LiteRT's |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['scheme']} | — | — | — | — | — | — | {r['error']} |")
            continue
        lines.append(f"| {r['label']} | {r['scheme']} | {1e3 * r['ours_train_step_s']:.2f} | "
                     f"{1e3 * r['keras_train_on_batch_s']:.2f} | {r['train_speedup_vs_keras']:.2f}x | "
                     f"{1e3 * r['ours_infer_s']:.2f} | {1e3 * r['litert_infer_s']:.2f} | "
                     f"{r['infer_ratio_vs_litert']:.2f} | {'yes' if r['infer_equal_litert'] else 'no'} |")
    lines += ["", "Speed-up = Keras time / our time (above 1: ours is faster). LiteRT / ours above 1: ours is "
              "faster. Our int8 inference equals TFLite Micro's byte for byte (tests/test_micro_host.py); LiteRT "
              "runs int8 through XNNPACK, whose float32 requantization can differ from TFLite (Micro)'s integer one "
              "by one step, hence the last column. CPU time rather than wall time because the machine is shared "
              "(the ratios within one run are the comparison). The Flex-delegate peer (TFLite training) is not measured "
              "by this script.", END]
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    replace_section(text, BEGIN, END)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    p.add_argument("--readme-only", action="store_true",
                   help="rewrite the README section from results/host_speed.json without measuring")
    args = p.parse_args(argv)
    if args.readme_only:
        with open(os.path.join(HERE, "results", "host_speed.json")) as f:
            update_readme(markdown(json.load(f)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model, label, key in RUNS:
            try:
                row = run_one(model, key, work, args.warmup, args.repeat)
            except Exception as e:  # one failing peer must not hide the others' figures
                row = dict(model=model, scheme=key, error=f"{type(e).__name__}: {str(e).splitlines()[0]}")
            row["label"] = label
            rows.append(row)
            print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    result = dict(command="python benchmarks/host_speed.py", host=platform.platform(), cpu=cpu, commit=commit,
                  threads=1, warmup=args.warmup, repeat=args.repeat, runs=rows)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "host_speed.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = markdown(result)
    if not args.no_readme:
        update_readme(text)
    print(text)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
