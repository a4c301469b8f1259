"""What the kernel-side memory levers of issue 11 would give, computed by the planner.

For the ~100 KB published scheme of each seed model (128x128, batch 1, new 10-class float
head) the training graph is planned as exported (``tflm_train.planner.plan_train_graph``,
reordered), then again with only tensor sizes changed, the way each lever would change them:

- ``fp16 gradients``: every activation gradient of more than 64 elements stored in 2 bytes
  (float16, or int16 with a per-tensor scale: the same bytes);
- ``int8 gradients``: the same in 1 byte (a per-tensor or per-row scale not counted);
- ``dw-output bands``: the output of every forward DEPTHWISE_CONV_2D that only forward ops
  read held as 4 rows (row-band execution of pointwise + depthwise + pointwise);
- ``stage bands``: every forward-only activation of 32 rows or more, the input image
  included, held as 8 rows (the whole high-resolution forward in bands; the image then has
  to arrive in rows from the caller);
and the combinations, all planned without the planner's band chains (``bands=False``). The
planner's placement, in-place and fusion rules run unchanged, so these figures are what the
planner would give if the kernels existed (docs/training_file_format.md has the numeric rules
they must keep). Two rows are real: ``band chains`` is the plan as exported (the planner's
band chains, tflm_train/planner/bands.py, implemented in the runtime), and ``band chains +
fp16`` the same planner on the fp16-narrowed graph.

Writes benchmarks/results/memory_levers.json and prints a Markdown table (KB = 1024 bytes).
Run: python benchmarks/memory_levers.py   (about 10 minutes on 2 shared cores)
"""
from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tflm_train  # noqa: E402
from tflm_train.planner.plan import plan_train_graph  # noqa: E402
from tflm_train.training import SparseScheme, build_train_graph  # noqa: E402

SHARED = os.environ.get("TFLM_TRAIN_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
CASES = (("mcunet-5fps", "99kb", 138), ("mbv2-w0.35", "99kb", 113), ("proxyless-w0.3", "98kb", 108))


def narrowed(tg, dtype: str):
    """Activation gradients (more than 64 elements) stored as ``dtype``."""
    out = copy.deepcopy(tg)
    for t in out.tensors.values():
        if t.kind == "gradient" and t.dtype == "float32" and int(np.prod(t.shape)) > 64:
            t.dtype = dtype
    return out


def _forward_only(tg):
    readers = {}
    for op in tg.ops:
        for x in op.inputs:
            readers.setdefault(x, []).append(op)
    return {n for n in tg.tensors if all(r.phase == "forward" for r in readers.get(n, []))}


def banded(tg, rows: int, whole_stage: bool):
    """Forward-only activations held as ``rows`` rows: depthwise outputs, or every one of
    32 rows or more (the image included) when ``whole_stage``."""
    out = copy.deepcopy(tg)
    forward_only = _forward_only(out)
    if whole_stage:
        targets = {n for n, t in out.tensors.items() if t.kind in ("activation", "input") and len(t.shape) == 4
                   and t.shape[1] >= 32}
    else:
        targets = {op.outputs[0] for op in out.ops if op.phase == "forward" and op.type == "DEPTHWISE_CONV_2D"}
    for n in targets & forward_only:
        t = out.tensors[n]
        if t.shape[1] > rows:
            t.shape = (t.shape[0], rows) + tuple(t.shape[2:])
    return out


def variants(tg):
    dw, stage = banded(tg, 4, False), banded(tg, 8, True)
    fp16 = narrowed(tg, "float16")
    return (("no bands", tg, False), ("band chains", tg, True), ("fp16 gradients", fp16, False),
            ("band chains + fp16", fp16, True), ("int8 gradients", narrowed(tg, "int8"), False),
            ("dw-output bands", dw, False), ("dw-output bands + fp16", narrowed(dw, "float16"), False),
            ("stage bands", stage, False), ("stage bands + fp16", narrowed(stage, "float16"), False),
            ("stage bands + int8", narrowed(stage, "int8"), False))


def main() -> int:
    rows = []
    for model, key, target_kb in CASES:
        graph = tflm_train.load(os.path.join(SHARED, "models", model + ".npz"), input_size=128)
        scheme = SparseScheme.from_json(os.path.join(SHARED, "schemes", model + ".json"), key)
        tg = build_train_graph(graph, scheme, num_classes=10, head="float")
        for label, variant, bands in variants(tg):
            p = plan_train_graph(variant, reorder=True, bands=bands)
            s = p.summary()
            rows.append(dict(model=model, scheme=key, lever=label, peak_bytes=p.peak_bytes, peak_op=s["peak_op"],
                             breakdown=s["breakdown"], target_kb=target_kb, band_chains=p.bands))
            print(f"{model:15s} {key:5s} {label:24s} {p.peak_bytes / 1024:7.1f} KB at {s['peak_op']}", file=sys.stderr)
    doc = dict(command="python benchmarks/memory_levers.py", host=platform.platform(),
               commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                     text=True).stdout.strip(),
               setting=dict(input=[128, 128, 3], batch=1, num_classes=10, head="float", kb=1024), rows=rows)
    with open(os.path.join(HERE, "results", "memory_levers.json"), "w") as f:
        json.dump(doc, f, indent=1)
    labels = list(dict.fromkeys(r["lever"] for r in rows))
    print("| model / scheme | " + " | ".join(labels) + " | target |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for model, key, target_kb in CASES:
        cells = {r["lever"]: r["peak_bytes"] for r in rows if r["model"] == model and r["scheme"] == key}
        print(f"| {model} {key} | " + " | ".join(f"{cells[lb] / 1024:.1f}" for lb in labels) + f" | {target_kb} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
