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


def _load_for_training(args):
    from . import load

    return load(args.model, **({"input_size": args.input_size} if args.input_size else {}))


def cmd_plan(args) -> int:
    from .io.train_export import parse_scheme
    from .planner import plan

    graph = _load_for_training(args)
    scheme = parse_scheme(args.scheme, graph) if args.scheme else None
    kwargs = dict(num_classes=args.num_classes, head=args.head) if scheme is not None else {}
    p = plan(graph, scheme, reorder=not args.no_reorder, **kwargs)
    if args.plot:
        p.plot(args.plot)
    if args.json:
        json.dump(p.summary() if not args.full_json else p.to_dict(), sys.stdout, indent=1)
        print()
    else:
        print(p.describe())
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def cmd_export(args) -> int:
    from .io.train_export import export

    graph = _load_for_training(args)
    r = export(graph, args.scheme, args.output, num_classes=args.num_classes, head=args.head, lr=args.lr,
               seed=args.seed)
    print(f"wrote {args.output} ({r.nbytes:,} bytes): signatures infer + train, {len(r.train_graph.ops)} training "
          f"ops, planned peak {r.plan.peak_bytes:,} bytes (arena {r.plan.arena_bytes:,})")
    return 0


def cmd_mcu_run(args) -> int:
    from .micro import MicroRuntimeError
    from .micro.mcu import McuError, mcu_run

    with open(args.model, "rb") as f:
        data = f.read()
    try:
        report = mcu_run(data, steps=args.steps, samples=args.samples, data=args.data, ram_bytes=args.ram_kb * 1024,
                         profile=args.profile)
    except (McuError, MicroRuntimeError, ValueError) as e:
        print(f"tflm-train: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(dict(command="tflm-train mcu-run", model=args.model, steps=args.steps, **report.to_dict()),
                  sys.stdout, indent=1)
        print()
    else:
        print(report.summary())
        if args.profile:
            print(report.profile_table())
    return 0 if report.matches_host else 1


def _training_args(s, scheme_required: bool) -> None:
    s.add_argument("model", help=".tflite or seed .npz/.json")
    s.add_argument("--scheme", required=scheme_required,
                   help="FILE[:KEY] (a scheme file, KEY for a file holding several), or full | bias-only | last-K"
                        + ("" if scheme_required else "; without it the inference pass is planned"))
    s.add_argument("--input-size", type=int, help="input resolution for seed models (default: as stored)")
    s.add_argument("--num-classes", type=int, default=10, help="classes of the new head (default 10)")
    s.add_argument("--head", choices=("float", "int8", "keep"), default="float",
                   help="new classifier head, or keep training the model's own int8 classifier (default float)")


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

    s = sub.add_parser("plan", help="memory plan of a training step: peak SRAM, breakdown, operator order")
    _training_args(s, scheme_required=False)
    s.add_argument("--no-reorder", action="store_true",
                   help="plan the conventional order: all updates after the backward, weight gradients kept")
    s.add_argument("--json", action="store_true", help="machine-readable summary")
    s.add_argument("--full-json", action="store_true", help="with --json: also schedule, tensors, timeline")
    s.add_argument("--plot", metavar="PNG", help="draw memory over time into this PNG file")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("export", help="write the training .tflite (signatures infer and train)")
    _training_args(s, scheme_required=True)
    s.add_argument("-o", "--output", required=True, help="output .tflite")
    s.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    s.add_argument("--seed", type=int, default=1, help="stochastic-rounding RNG seed (default 1)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("mcu-run", help="train a training .tflite on an emulated Cortex-M4 (QEMU mps2-an386, "
                                       "256 KB RAM / 1 MB flash): losses, RAM, flash, instructions")
    s.add_argument("model", help="training .tflite (tflm-train export)")
    s.add_argument("--steps", type=int, default=3, help="training steps on the device (default 3)")
    s.add_argument("--samples", type=int, default=3,
                   help="images embedded in flash (default 3; fewer if the flash overflows, then generated)")
    s.add_argument("--data", choices=("fmnist", "random", "synthetic"), default="fmnist",
                   help="sample images: Fashion-MNIST test images (default), random, or generated on the device")
    s.add_argument("--ram-kb", type=int, default=256, help="RAM region of the link (default 256: the budget)")
    s.add_argument("--json", action="store_true", help="machine-readable report")
    s.add_argument("--profile", action="store_true",
                   help="instructions per op (name, type, execution mode, share) of a training step and an inference")
    s.set_defaults(func=cmd_mcu_run)

    from .scheme_search import add_parser as add_search_parser  # the search command lives in its own module

    add_search_parser(sub)
    from .arduino.cli import add_parser as add_arduino_parser  # tflm-train arduino: its own module too

    add_arduino_parser(sub)
    from .federated.cli import add_parser as add_fleet_parser  # tflm-train fleet: Flower, its own module

    add_fleet_parser(sub)
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
