"""``tflm-train arduino TRAIN.tflite -o DIR [--zip]``: write the Arduino library of a training model."""
from __future__ import annotations

import sys


def cmd_arduino(args) -> int:
    from . import ArduinoLibraryError, write_library

    names = [s.strip() for s in args.labels.split(",")] if args.labels else None
    try:
        facts = write_library(args.model, args.output, class_names=names, url=args.url, make_zip=args.zip)
    except (ArduinoLibraryError, OSError) as e:
        print(f"tflm-train: error: {e}", file=sys.stderr)
        return 2
    shape = "x".join(str(d) for d in facts.input_shape[1:])
    print(f"wrote the Arduino library {facts.path}: model {facts.model_bytes:,} bytes, {facts.num_classes} classes, "
          f"int8 input {shape}, arena {facts.arena_bytes:,} bytes, {facts.runtime_files} runtime files, "
          f"examples LearnNewClasses, AdaptToPlace, KeepLearning"
          + (f"; zip {facts.zip_path}" if facts.zip_path else ""))
    return 0


def add_parser(sub) -> None:
    from . import DEFAULT_URL

    s = sub.add_parser("arduino", help="write an Arduino library (1.5 format) that trains the model on the board: "
                                       "TinyTrainer class, the runtime, the model, examples")
    s.add_argument("model", help="training .tflite (tflm-train export)")
    s.add_argument("-o", "--output", required=True, help="library folder to write (a new or empty one, or a "
                                                         "library this command wrote before)")
    s.add_argument("--zip", action="store_true", help="also write OUTPUT.zip for Sketch > Include Library > "
                                                     "Add .ZIP Library")
    s.add_argument("--labels", help="class names, comma-separated (default: class 0, class 1, ...)")
    s.add_argument("--url", default=DEFAULT_URL, help="url in library.properties")
    s.set_defaults(func=cmd_arduino)
