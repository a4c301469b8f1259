"""The ``tflm-train`` command."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .graph import CONV_LIKE_OPS, DEFAULT_GRAD_DTYPE, GRAD_DTYPES, GraphError
from .tf_quiet import set_verbose, verbose


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``tflm-train: error: ...``, exit code 2), as every other error."""

    def error(self, message):
        self.exit(2, f"tflm-train: error: {self.prog.replace('tflm-train ', '')}: {message}\n"
                  if self.prog != "tflm-train" else f"tflm-train: error: {message}\n")


def _progress(message: str) -> None:
    """A progress line on stderr (the result stays alone on stdout)."""
    print(f"tflm-train: {message}", file=sys.stderr, flush=True)


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
        "inputs": [dict({"name": n, "shape": list(graph.tensors[n].shape), "dtype": graph.tensors[n].dtype},
                        **({"shape_in_file": list(graph.original_input_shapes[n])}
                           if n in graph.original_input_shapes else {})) for n in graph.inputs],
        "normalized": list(graph.normalizations),
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
        in_file = f" (reshaped at load; {'x'.join(map(str, t['shape_in_file']))} in the file)" if "shape_in_file" in t else ""
        print(f"  input  {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}{in_file}")
    for t in info["outputs"]:
        print(f"  output {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}")
    for line in info.get("normalized", []):
        print(f"  normalized at load: {line}")
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


def _budget_kwargs(args) -> dict:
    return dict(ram_kb=args.ram_kb, flash_kb=args.flash_kb)


def _finish_budget(budget, args, name: str) -> int:
    """Exit code 2 with one line on stderr when over the budget and the check is on."""
    if budget.fits or args.no_budget_check:
        return 0
    try:
        budget.check(name)
    except GraphError as e:
        print(f"tflm-train: error: {e}", file=sys.stderr)
    return 2


def cmd_plan(args) -> int:
    from .budget import BudgetReport
    from .io.train_export import export
    from .planner import plan
    from .training.scheme import scheme_of

    graph = _load_for_training(args)
    if args.scheme:
        scheme = scheme_of(args.scheme, graph, force=args.force_scheme)
        # the file's size: the training file exported to memory (its plan is the reordered one)
        r = export(graph, scheme, None, num_classes=args.num_classes, head=args.head, budget_check=False,
                   grad_dtype=args.grad_dtype, stream_input=args.stream_input, **_budget_kwargs(args))
        p = r.plan if not args.no_reorder else plan(graph, scheme, reorder=False, num_classes=args.num_classes,
                                                    head=args.head, grad_dtype=args.grad_dtype,
                                                    stream_input=args.stream_input)
        budget = BudgetReport(p.peak_bytes, args.ram_kb, r.nbytes, args.flash_kb, r.budget.inference_bytes)
    else:
        if args.stream_input:
            raise GraphError("plan --stream-input streams a training step's image: give --scheme")
        p = plan(graph, None, reorder=not args.no_reorder)
        budget = BudgetReport(p.peak_bytes, args.ram_kb, len(graph.to_tflite()), args.flash_kb,
                              what="inference model")
    if args.plot:
        p.plot(args.plot)
    if args.json:
        d = p.summary() if not args.full_json else p.to_dict()
        d["budget"] = budget.to_dict()
        json.dump(d, sys.stdout, indent=1)
        print()
    else:
        print(p.describe())
        print(budget.describe())
        if args.plot:
            print(f"wrote {args.plot}")
    return _finish_budget(budget, args, graph.name)


def cmd_export(args) -> int:
    from .io.train_export import export
    from .training.autodiff import check_lr, default_lr

    lr = default_lr(args.head) if args.lr is None else check_lr(args.lr)
    graph = _load_for_training(args)
    r = export(graph, args.scheme, None, num_classes=args.num_classes, head=args.head, lr=lr, seed=args.seed,
               budget_check=False, force_scheme=args.force_scheme, debug_names=args.debug_names,
               grad_dtype=args.grad_dtype, stream_input=args.stream_input, **_budget_kwargs(args))
    code = _finish_budget(r.budget, args, graph.name)
    if code:
        return code  # nothing written
    with open(args.output, "wb") as f:
        f.write(r.data)
    print(f"wrote {args.output} ({r.nbytes:,} bytes): signatures infer + train, {len(r.train_graph.ops)} training "
          f"ops, planned peak {r.plan.peak_bytes:,} bytes (arena {r.plan.arena_bytes:,})")
    print(f"learning rate {lr:g}" + (f" (the default for --head {args.head}; --lr sets another)"
                                     if args.lr is None else ""))
    print(r.budget.describe())
    return 0


def cmd_mcu_run(args) -> int:
    from .micro import MicroRuntimeError
    from .micro.mcu import McuError, mcu_run

    with open(args.model, "rb") as f:
        data = f.read()
    try:
        report = mcu_run(data, steps=args.steps, samples=args.samples, data=args.data, ram_bytes=args.ram_kb * 1024,
                         profile=args.profile, progress=_progress)
    except (McuError, MicroRuntimeError, ValueError) as e:
        print(f"tflm-train: error: {_one_line(e)}", file=sys.stderr)
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


def _one_line(e: Exception) -> str:
    """An error's message on one line (a compiler's or QEMU's output tail can span many)."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[0] + (f" ... {lines[-1]}" if len(lines) > 1 else "") if lines else type(e).__name__


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def _budget_kb(text: str) -> int:
    from .budget import MAX_BUDGET_KB

    v = _positive_int(text)
    if v > MAX_BUDGET_KB:
        raise argparse.ArgumentTypeError(f"{v} KB is more than {MAX_BUDGET_KB} KB")
    return v


def _learning_rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"the learning rate must be a finite positive number, not {text}")
    return v


def _training_args(s, scheme_required: bool) -> None:
    from .budget import DEFAULT_FLASH_KB, DEFAULT_RAM_KB

    s.add_argument("model", help=".tflite or seed .npz/.json")
    s.add_argument("--scheme", required=scheme_required,
                   help="full | bias-only (bias_only) | last-K (last_k(K)) | FILE[:KEY] (a scheme file, KEY for a "
                        "file holding several)" + ("" if scheme_required else "; without it the inference pass is "
                                                                             "planned"))
    s.add_argument("--force-scheme", action="store_true",
                   help="apply a scheme file made for another model (its 'model' field names another graph)")
    s.add_argument("--input-size", type=int, help="input resolution for seed models (default: as stored)")
    s.add_argument("--num-classes", type=int, default=10, help="classes of the new head (default 10)")
    s.add_argument("--head", choices=("float", "int8", "keep"), default="float",
                   help="new classifier head, or keep training the model's own int8 classifier (default float)")
    s.add_argument("--grad-dtype", choices=GRAD_DTYPES, default=DEFAULT_GRAD_DTYPE,
                   help=f"storage of the activation gradients (default {DEFAULT_GRAD_DTYPE}; float16: IEEE "
                        "binary16, half the bytes, arithmetic still float32)")
    s.add_argument("--stream-input", action="store_true",
                   help="the device delivers the image row by row (tt_train_step_rows): its first band chain "
                        "holds only the rows it needs, never the whole image")
    s.add_argument("--ram-kb", type=_budget_kb, default=DEFAULT_RAM_KB,
                   help=f"device RAM budget for the planned peak (default {DEFAULT_RAM_KB})")
    s.add_argument("--flash-kb", type=_budget_kb, default=DEFAULT_FLASH_KB,
                   help=f"device flash budget for the file (default {DEFAULT_FLASH_KB})")
    s.add_argument("--no-budget-check", action="store_true",
                   help="report but do not refuse a plan or file over the budget")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tflm-train", description="On-device training for TensorFlow Lite Micro")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show TensorFlow's own start-up logging (or set TFLM_TRAIN_VERBOSE=1)")
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
    s.add_argument("--lr", type=_learning_rate, default=None,
                   help="SGD learning rate on the device (default per head: "
                        + ", ".join(f"{h} {v:g}" for h, v in _default_lrs().items()) + "; a kept, already trained "
                        "classifier needs a smaller one)")
    s.add_argument("--seed", type=int, default=1, help="stochastic-rounding RNG seed (default 1)")
    s.add_argument("--debug-names", action="store_true",
                   help="keep every tensor and op name in the training metadata (tools, messages; a larger file)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("mcu-run", help="train a training .tflite on an emulated Cortex-M4 (QEMU mps2-an386, "
                                       "256 KB RAM / 1 MB flash): losses, RAM, flash, instructions")
    s.add_argument("model", help="training .tflite (tflm-train export)")
    s.add_argument("--steps", type=_mcu_steps, default=3,
                   help=f"training steps on the device (default 3, at most {_mcu_limits()['steps']})")
    s.add_argument("--samples", type=_positive_int, default=3,
                   help="images embedded in flash (default 3; fewer if the flash overflows, then generated)")
    s.add_argument("--data", default="fmnist", metavar="fmnist|random|synthetic|FILE.npz",
                   help="sample images: Fashion-MNIST test images (default), random, generated on the device, or "
                        "your own: an .npz with x (images, [N,H,W] or [N,H,W,C]: uint8 pixels, float in [0, 1], or "
                        "int8 already quantized) and y (integer labels)")
    s.add_argument("--ram-kb", type=_mcu_ram_kb, default=256,
                   help="RAM region of the link (default 256: the budget; larger only to measure)")
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


def _default_lrs() -> dict:
    from .training.autodiff import DEFAULT_LRS

    return DEFAULT_LRS


def _mcu_limits() -> dict:
    from .micro.mcu import MAX_RAM_KB, MAX_STEPS, MIN_RAM_KB

    return dict(steps=MAX_STEPS, ram_min=MIN_RAM_KB, ram_max=MAX_RAM_KB)


def _mcu_steps(text: str) -> int:
    v = _positive_int(text)
    if v > _mcu_limits()["steps"]:
        raise argparse.ArgumentTypeError(f"{v} steps is more than {_mcu_limits()['steps']}")
    return v


def _mcu_ram_kb(text: str) -> int:
    v = _positive_int(text)
    lim = _mcu_limits()
    if not lim["ram_min"] <= v <= lim["ram_max"]:
        raise argparse.ArgumentTypeError(f"{v} KB is outside [{lim['ram_min']}, {lim['ram_max']}] (QEMU mps2-an386 "
                                         f"has {lim['ram_max']} KB of RAM at 0x20000000)")
    return v


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        set_verbose(True)
    elif not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
