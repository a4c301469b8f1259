"""Host speed of the C++ runtime against Keras 3 and LiteRT, single thread, same run.

For MCUNet-5FPS, MobileNetV2-w0.35 and ProxylessNAS-w0.3 at 128x128 with their ~100 KB
published schemes ("99kb", "99kb", "98kb") and a new 10-class float head, one process measures:

- ours: `tflm_train.micro.Interpreter.train_step` (one SGD step of the sparse scheme on one
  sample, the exported training .tflite) and `infer` (the int8 inference .tflite);
- Keras 3: `train_on_batch` (batch 1) of the same network emulated by `tflm_train.keras.from_graph`
  with the same trainable set (`SparseUpdate(scheme)`, QAS(SGD)), TensorFlow limited to one
  thread;
- LiteRT (ai-edge-litert): inference of the same int8 .tflite, one thread;
- TFLite + Flex (with `--flex-python PY` or `--make-flex-venv DIR`): a `.tflite` training
  signature of the same network (float32, dequantized weights) and trainable set, run by TFLite's
  interpreter with the Flex delegate, one thread (`flex_peer.py`, in a separate environment:
  tensorflow-cpu 2.16.2 with numpy<2, since TF 2.21's interpreter has no Flex delegate; never in CI).

Each figure is the median of `--repeat` timed calls after `--warmup` calls. Writes
benchmarks/results/host_speed.json and replaces its section of benchmarks/README.md.
Run: python benchmarks/host_speed.py [--make-flex-venv /tmp/flexenv | --flex-python PY]
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


FLEX_REQUIREMENTS = ["tensorflow-cpu==2.16.2", "numpy<2"]


def make_flex_venv(path: str) -> str:
    """Creates (once) a virtual environment whose TFLite interpreter has the Flex delegate; its python."""
    python = os.path.join(path, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *FLEX_REQUIREMENTS], check=True)
    return python


def float_network(graph, scheme, x, label: int, num_classes: int, seed: int, path: str) -> None:
    """Writes the network as `flex_peer.py` reads it: ops in order, constants dequantized to float32
    in TensorFlow's layouts (conv HWIO, depthwise [kh, kw, C, multiplier], fully connected [in, out]),
    each int8 output's range as a clamp, the scheme's trained tensors with masks of their trained
    elements, a new float head of
    `num_classes` in place of the classifier (as `export(..., num_classes)` makes), and the sample."""
    from tflm_train.training.scheme import weight_update_axis

    def real(t):
        q = t.data.astype(np.float64)
        if not t.quantized:
            return t.data
        shape = [1] * q.ndim
        if t.per_channel:
            shape[t.quantized_dim] = -1
        return ((q - t.zero_point.reshape(shape)) * t.scale.reshape(shape)).astype(np.float32)

    def tf_layout(op, w):
        if op.type == "CONV_2D":
            return w.transpose(1, 2, 3, 0)
        if op.type == "DEPTHWISE_CONV_2D":
            c = graph.tensors[op.inputs[0]].shape[-1]
            return w.reshape(w.shape[1], w.shape[2], c, w.shape[3] // c)
        return w.T  # FULLY_CONNECTED

    updates = {u.op_index: u for u in scheme.resolve(graph)}
    classifier = graph.conv_op_indices()[-1]
    ops, arrays, trained = [], {}, {}
    for i, op in enumerate(graph.ops):
        out = graph.tensors[op.outputs[0]]
        # the int8 output's range (a ReLU6 folded into the quantization is a clamp of the float network)
        clamp = ([float((-128 - out.scalar_zero_point()) * out.scalar_scale()),
                  float((127 - out.scalar_zero_point()) * out.scalar_scale())]
                 if out.quantized and i != classifier and op.type not in ("RESHAPE", "PAD") else None)
        ops.append(dict(type=op.type, name=op.name, inputs=list(op.inputs), outputs=list(op.outputs),
                        attrs=dict(op.attrs), clamp=clamp))
        for k, name in enumerate(op.inputs):
            t = graph.tensors[name] if name else None
            if t is None or not t.is_constant:
                continue
            if i == classifier and k in (1, 2):
                continue
            value = real(t)
            if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and k == 1:
                value = tf_layout(op, value)
                u = updates.get(i)
                if u is not None and u.updates_weights:
                    mask = np.zeros(t.shape, np.float32)
                    index = [slice(None)] * len(t.shape)
                    index[weight_update_axis(op.type)] = list(u.weight_channels)
                    mask[tuple(index)] = 1.0
                    arrays["mask:" + name] = tf_layout(op, mask)
                    trained[name] = True
            elif k == 2 and i in updates and updates[i].update_bias:
                trained[name] = False
            arrays["t:" + name] = value
    # the new head: a float 1x1 convolution (HWIO) over the pooled features, all trained
    op = graph.ops[classifier]
    features = graph.tensors[op.inputs[0]].shape[-1]
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (features + num_classes))
    arrays["t:" + op.inputs[1]] = rng.uniform(-limit, limit, (1, 1, features, num_classes)).astype(np.float32)
    arrays["t:" + op.inputs[2]] = np.zeros(num_classes, np.float32)
    trained[op.inputs[1]] = trained[op.inputs[2]] = False
    for o in ops:  # the logits' reshape now makes [1, num_classes]
        if o["type"] == "RESHAPE" and o["inputs"][0] == op.outputs[0]:
            arrays["t:" + o["inputs"][1]] = np.array([1, num_classes], np.int32)
    image = graph.tensors[graph.inputs[0]]
    xf = ((x.astype(np.float32) - image.scalar_zero_point()) * image.scalar_scale()).astype(np.float32)
    np.savez(path, ops=json.dumps(ops), trained=json.dumps(trained), input=graph.inputs[0],
             output=graph.outputs[0], x=xf.reshape(image.shape), y=np.array([label], np.int32), **arrays)


def flex_step(flex_python: str, net_path: str, lr: float, warmup: int, repeat: int) -> dict:
    """Runs flex_peer.py in the Flex environment; its JSON line."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
               TF_NUM_INTEROP_THREADS="1", PYTHONPATH="")
    done = subprocess.run([flex_python, os.path.join(HERE, "flex_peer.py"), "--net", net_path, "--lr", str(lr),
                           "--warmup", str(warmup), "--repeat", str(repeat)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"flex peer failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_one(model: str, key: str, work: str, warmup: int, repeat: int, flex_python: str = "") -> dict:
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
    by_type = {}
    for r in ours.profile(x, label):  # where our step's time goes (Interpreter.profile, one step)
        by_type[r["type"]] = by_type.get(r["type"], 0.0) + r["share"]
    row["ours_train_step_share_by_type"] = {t: round(v, 4) for t, v in sorted(by_type.items(), key=lambda kv: -kv[1])}

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

    km = from_graph(graph, num_classes=NUM_CLASSES, head="float")
    km.compile(optimizer=QAS(keras.optimizers.SGD(LR)),
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    SparseUpdate(scheme_of(scheme_path, graph)).apply_to(km)
    xk = x.reshape((1,) + tuple(info["image_shape"][1:])).astype(np.float32)
    yk = np.array([label])
    row["keras_train_on_batch_s"] = timed(lambda: km.train_on_batch(xk, yk), warmup, repeat)
    row["train_speedup_vs_keras"] = row["keras_train_on_batch_s"] / row["ours_train_step_s"]
    row["infer_ratio_vs_litert"] = row["litert_infer_s"] / row["ours_infer_s"]
    if flex_python:
        net_path = os.path.join(work, f"{model}_{key}_net.npz")
        float_network(graph, scheme_of(scheme_path, graph), x, label, NUM_CLASSES, SEED, net_path)
        row.update(flex_step(flex_python, net_path, LR, warmup, repeat))
        row["train_speedup_vs_flex"] = row["flex_train_step_s"] / row["ours_train_step_s"]
    return row


def markdown(result) -> str:
    lines = [BEGIN, "## Host speed (`host_speed.py`)", "",
             "`python benchmarks/host_speed.py`: one process, one thread each, median CPU time (the process's, "
             "all threads) of "
             f"{result['repeat']} timed calls after {result['warmup']} warm-up calls, 128x128, ~100 KB schemes, "
             "10-class float head. Ours: the C++ runtime through `tflm_train.micro.Interpreter` "
             f"(`setup.py`: -O3, baseline x86-64). Machine: {result['host']} ({result['cpu']}). "
             "Results: `results/host_speed.json`.", "",
             "| model | scheme | our train_step (ms) | Keras 3 train_on_batch (ms) | speed-up | "
             "TFLite + Flex train (ms) | speed-up | our infer (ms) "
             "| LiteRT infer (ms) | LiteRT / ours | output bytes equal LiteRT's |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['scheme']} | — | — | — | — | — | — | — | — | {r['error']} |")
            continue
        flex = (f"{1e3 * r['flex_train_step_s']:.2f} | {r['train_speedup_vs_flex']:.2f}x" if "flex_train_step_s" in r
                else "not run | —")
        lines.append(f"| {r['label']} | {r['scheme']} | {1e3 * r['ours_train_step_s']:.2f} | "
                     f"{1e3 * r['keras_train_on_batch_s']:.2f} | {r['train_speedup_vs_keras']:.2f}x | {flex} | "
                     f"{1e3 * r['ours_infer_s']:.2f} | {1e3 * r['litert_infer_s']:.2f} | "
                     f"{r['infer_ratio_vs_litert']:.2f} | {'yes' if r['infer_equal_litert'] else 'no'} |")
    lines += ["", "Speed-up = Keras time / our time (above 1: ours is faster). LiteRT / ours above 1: ours is "
              "faster. Our int8 inference equals TFLite Micro's byte for byte (tests/test_micro_host.py); LiteRT "
              "runs int8 through XNNPACK, whose float32 requantization can differ from TFLite (Micro)'s integer one "
              "by one step, hence the last column. CPU time rather than wall time because the machine is shared "
              "(the ratios within one run are the comparison). TFLite + Flex: `flex_peer.py` in a tensorflow-cpu "
              "2.16.2 environment (`--make-flex-venv DIR`): the same network in float32 (dequantized weights, int8 "
              "ranges as clamps) and the same trained elements (masked SGD), a `.tflite` `train` signature run by "
              "TFLite's interpreter with the Flex delegate."]
    profiled = [r for r in result["runs"] if "ours_train_step_share_by_type" in r]
    if profiled:
        lines += ["", "Where our training step's host time goes (`Interpreter.profile`, one step; top op types): "
                  + "; ".join(f"{r['label']}: " + ", ".join(f"{t} {100 * v:.0f}%" for t, v in
                                                            list(r["ours_train_step_share_by_type"].items())[:4])
                              for r in profiled) + "."]
    lines.append(END)
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    replace_section(text, BEGIN, END)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite benchmarks/README.md")
    flex = p.add_mutually_exclusive_group()
    flex.add_argument("--flex-python", default="",
                      help="python of an environment whose TFLite interpreter has the Flex delegate: adds the "
                           "TFLite + Flex training peer")
    flex.add_argument("--make-flex-venv", default="", metavar="DIR",
                      help=f"create DIR as that environment ({', '.join(FLEX_REQUIREMENTS)}) and use it")
    p.add_argument("--models", default=",".join(m for m, _, _ in RUNS), help="comma-separated subset of the models")
    p.add_argument("--readme-only", action="store_true",
                   help="rewrite the README section from results/host_speed.json without measuring")
    args = p.parse_args(argv)
    if args.readme_only:
        with open(os.path.join(HERE, "results", "host_speed.json")) as f:
            update_readme(markdown(json.load(f)))
        return 0
    flex_python = make_flex_venv(args.make_flex_venv) if args.make_flex_venv else args.flex_python
    wanted = args.models.split(",")
    unknown = sorted(set(wanted) - {m for m, _, _ in RUNS})
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(m for m, _, _ in RUNS)}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for model, label, key in RUNS:
            if model not in wanted:
                continue
            try:
                row = run_one(model, key, work, args.warmup, args.repeat, flex_python)
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
