"""The ``tflm-train`` command."""
from __future__ import annotations

import argparse
import json
import sys

from .graph import CONV_LIKE_OPS, GraphError


def _shape(t):
    return "x".join(str(d) for d in t.shape)


def inspect_model(graph) -> dict:
    from .planner.liveness import inference_activation_peak

    conv_index = {op_i: k for k, op_i in enumerate(graph.conv_op_indices())}
    layers = []
    for i, op in enumerate(graph.ops):
        out = graph.tensors[op.outputs[0]]
        params = 0
        if op.type in CONV_LIKE_OPS:
            params = sum(graph.tensors[t].size for t in op.inputs[1:] if t is not None)
        layers.append(
            {
                "index": i,
                "name": op.name,
                "type": op.type,
                "conv_index": conv_index.get(i),
                "input_shape": list(graph.tensors[op.inputs[0]].shape),
                "output_shape": list(out.shape),
                "params": params,
                "macs": graph.op_macs(op),
            }
        )
    return {
        "name": graph.name,
        "inputs": [{"name": n, "shape": list(graph.tensors[n].shape), "dtype": graph.tensors[n].dtype} for n in graph.inputs],
        "outputs": [{"name": n, "shape": list(graph.tensors[n].shape), "dtype": graph.tensors[n].dtype} for n in graph.outputs],
        "num_ops": len(graph.ops),
        "num_conv_layers": len(conv_index),
        "params": graph.param_count(),
        "macs": graph.macs(),
        "inference_activation_peak_bytes": inference_activation_peak(graph),
        "layers": layers,
    }


def _print_inspect(info: dict) -> None:
    print(f"model {info['name']}: {info['num_ops']} ops, {info['num_conv_layers']} conv layers")
    for t in info["inputs"]:
        print(f"  input  {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}")
    for t in info["outputs"]:
        print(f"  output {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}")
    print(f"{'#':>3} {'conv':>4} {'type':<18} {'output':<14} {'params':>8} {'MACs':>11}  name")
    for l in info["layers"]:
        ci = "" if l["conv_index"] is None else str(l["conv_index"])
        print(
            f"{l['index']:>3} {ci:>4} {l['type']:<18} {'x'.join(map(str, l['output_shape'])):<14} "
            f"{l['params']:>8} {l['macs']:>11}  {l['name']}"
        )
    print(f"params: {info['params']:,}")
    print(f"MACs: {info['macs']:,}")
    print(f"inference activation peak: {info['inference_activation_peak_bytes']:,} bytes")


def cmd_inspect(args) -> int:
    from . import load

    graph = load(args.model, **({"input_size": args.input_size} if args.input_size else {}))
    info = inspect_model(graph)
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        print()
    else:
        _print_inspect(info)
    return 0


def cmd_convert(args) -> int:
    from . import load

    graph = load(args.src, **({"input_size": args.input_size} if args.input_size else {}))
    data = graph.to_tflite()
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"wrote {args.output} ({len(data):,} bytes, {len(graph.ops)} ops)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tflm-train", description="On-device training for TensorFlow Lite Micro")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("inspect", help="layers, shapes, conv index, params, MACs, activation peak")
    s.add_argument("model", help=".tflite or seed .npz/.json")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--input-size", type=int, help="input resolution for seed models (default: as stored)")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("convert", help="write a model as an inference .tflite")
    s.add_argument("src")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--input-size", type=int, help="input resolution for seed models (default: as stored)")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GraphError as e:
        print(f"tflm-train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"tflm-train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
