"""Python binding of the C++ micro runtime (``tflm_train/micro_ops``).

The runtime is built by ``pip install -e .`` (setup.py) into the shared library
``tflm_train/micro/_runtime*.so``; this module calls its C API
(``micro_ops/include/tflm_train.h``) with ctypes, the same interface the
firmware and Arduino sketches use.

    from tflm_train.micro import Interpreter
    it = Interpreter("model.tflite")                        # a path or the bytes; arena sized exactly
    y = it.infer(x)                                         # int8 in, int8 out
    it.arena_bytes                                          # arena bytes in use

A training .tflite (``tflm_train.export``) also trains in the C++ runtime
(``tt_train_*``), exactly as the NumPy reference trainer does:

    it = Interpreter(open("model_train.tflite", "rb").read())
    loss = it.train_step(x_int8, label)     # one SGD step (QAS, sparse update, planned memory)
    logits = it.predict(x_int8)             # forward with the trained parameters
    it.parameters()                         # name -> array (weights, biases, head, rng/state)
    open("trained.tflite", "wb").write(it.to_tflite())   # inference .tflite of the trained model
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import types
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["Interpreter", "MicroRuntimeError", "library_path"]

TT_MESSAGE_CAPACITY = 200
TT_MAX_RANK = 6
TT_NO_OFFSET = 0xFFFFFFFF

STATUS_NAMES = {
    0: "TT_OK",
    1: "TT_MALFORMED_MODEL",
    2: "TT_UNSUPPORTED",
    3: "TT_ARENA_TOO_SMALL",
    4: "TT_SHAPE_MISMATCH",
    5: "TT_INVALID_ARGUMENT",
    6: "TT_NOT_READY",
    7: "TT_INTERNAL_ERROR",
    8: "TT_NUMERIC_ERROR",
    9: "TT_STORAGE_ERROR",
    10: "TT_NO_CHECKPOINT",
}
ARENA_TOO_SMALL = 3

# TFLite TensorType codes -> numpy dtypes (the types the runtime handles).
TENSOR_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8, 15: np.uint32}

ALIGNMENT = 16


class MicroRuntimeError(ValueError):
    """An error reported by the C++ runtime: ``status`` (e.g. "TT_UNSUPPORTED") and its one-line message."""

    def __init__(self, status: int, message: str):
        self.status = STATUS_NAMES.get(status, f"status {status}")
        self.message = message
        super().__init__(f"{self.status}: {message}")


class _Interpreter(ctypes.Structure):
    _fields_ = [
        ("impl", ctypes.c_void_p),
        ("arena_needed", ctypes.c_size_t),
        ("status", ctypes.c_int),
        ("message", ctypes.c_char * TT_MESSAGE_CAPACITY),
    ]


class _TensorInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int32 * TT_MAX_RANK),
        ("bytes", ctypes.c_size_t),
        ("scale", ctypes.c_float),
        ("zero_point", ctypes.c_int32),
    ]


class _Trainer(ctypes.Structure):
    _fields_ = _Interpreter._fields_


class _TrainInfo(ctypes.Structure):
    _fields_ = [
        ("image", _TensorInfo),
        ("num_classes", ctypes.c_int32),
        ("head_is_float", ctypes.c_int32),
        ("op_count", ctypes.c_uint32),
        ("parameter_count", ctypes.c_uint32),
        ("plan_arena_bytes", ctypes.c_size_t),
        ("persistent_bytes", ctypes.c_size_t),
        ("runtime_state_bytes", ctypes.c_size_t),
        ("steps_done", ctypes.c_uint32),
        ("rng_state", ctypes.c_uint32),
        ("logit_absmax", ctypes.c_float),
        ("input_window_rows", ctypes.c_int32),
    ]


#: tt_row_source: int (*)(void* context, int32_t row, int8_t* dst, size_t row_bytes)
_RowSource = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t)


class _Parameter(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("name_length", ctypes.c_uint32),
        ("kind", ctypes.c_int32),
        ("type", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int32 * TT_MAX_RANK),
        ("bytes", ctypes.c_size_t),
        ("sram_bytes", ctypes.c_size_t),
    ]


class _Storage(ctypes.Structure):
    _fields_ = [
        ("context", ctypes.c_void_p),
        ("size", ctypes.c_uint32),
        ("page_size", ctypes.c_uint32),
        ("write_size", ctypes.c_uint32),
        ("erased_value", ctypes.c_uint8),
        ("erase_page", ctypes.c_void_p),
        ("program", ctypes.c_void_p),
        ("read", ctypes.c_void_p),
    ]


class _RamFlash(ctypes.Structure):
    _fields_ = [("memory", ctypes.c_void_p)] + [
        (n, ctypes.c_uint32) for n in ("size", "page_size", "write_size", "erase_count", "program_count")
    ]


class _CheckpointInfo(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("sequence", "slot", "payload_bytes", "steps_done")]


def library_path() -> str:
    """Path of the compiled runtime library (built by ``pip install -e .``)."""
    spec = importlib.util.find_spec("tflm_train.micro._runtime")
    if spec is None or not spec.origin or not os.path.exists(spec.origin):
        raise ImportError(
            "the C++ micro runtime is not built: run `pip install -e .` "
            "(or `python setup.py build_ext --inplace`) in the repository"
        )
    return spec.origin


_LIB = None


def _lib():
    global _LIB
    if _LIB is not None:
        return _LIB
    lib = ctypes.CDLL(library_path())
    P = ctypes.POINTER
    it, u8p, vp, sz = P(_Interpreter), P(ctypes.c_uint8), ctypes.c_void_p, ctypes.c_size_t
    tr = P(_Trainer)
    sigs = {
        "tt_init": ([it, u8p, sz, u8p, sz], ctypes.c_int),
        "tt_init_planned": ([it, u8p, sz, u8p, sz, P(ctypes.c_uint32), sz], ctypes.c_int),
        "tt_infer": ([it, vp, sz, vp, sz], ctypes.c_int),
        "tt_set_input": ([it, sz, vp, sz], ctypes.c_int),
        "tt_invoke": ([it], ctypes.c_int),
        "tt_get_output": ([it, sz, vp, sz], ctypes.c_int),
        "tt_input_count": ([it], sz),
        "tt_output_count": ([it], sz),
        "tt_input_info": ([it, sz, P(_TensorInfo)], ctypes.c_int),
        "tt_output_info": ([it, sz, P(_TensorInfo)], ctypes.c_int),
        "tt_op_count": ([it], sz),
        "tt_op_name": ([it, sz], ctypes.c_char_p),
        "tt_arena_used": ([it], sz),
        "tt_arena_needed": ([it], sz),
        "tt_error_message": ([it], ctypes.c_char_p),
        "tt_is_training_model": ([u8p, sz], ctypes.c_int),
        "tt_train_init": ([tr, u8p, sz, u8p, sz], ctypes.c_int),
        "tt_train_step": ([tr, vp, sz, ctypes.c_int32, P(ctypes.c_float)], ctypes.c_int),
        "tt_train_predict": ([tr, vp, sz, P(ctypes.c_float), sz], ctypes.c_int),
        "tt_train_step_rows": ([tr, _RowSource, vp, ctypes.c_int32, P(ctypes.c_float)], ctypes.c_int),
        "tt_train_predict_rows": ([tr, _RowSource, vp, P(ctypes.c_float), sz], ctypes.c_int),
        "tt_train_get_info": ([tr, P(_TrainInfo)], ctypes.c_int),
        "tt_parameter_count": ([tr], sz),
        "tt_parameter_info": ([tr, sz, P(_Parameter)], ctypes.c_int),
        "tt_parameter_data": ([tr, sz, vp, sz], ctypes.c_int),
        "tt_parameter_set_data": ([tr, sz, vp, sz], ctypes.c_int),
        "tt_train_input_buffer": ([tr], vp),
        "tt_host_profile_start": ([P(ctypes.c_uint64), ctypes.c_uint32], None),
        "tt_host_profile_stop": ([], ctypes.c_uint32),
        "tt_train_arena_used": ([tr], sz),
        "tt_train_arena_needed": ([tr], sz),
        "tt_train_error_message": ([tr], ctypes.c_char_p),
        "tt_checkpoint_storage_bytes": ([tr, ctypes.c_uint32, ctypes.c_uint32], sz),
        "tt_checkpoint_save": ([tr, P(_Storage), P(_CheckpointInfo)], ctypes.c_int),
        "tt_checkpoint_restore": ([tr, P(_Storage), P(_CheckpointInfo)], ctypes.c_int),
        "tt_ram_flash_storage": ([P(_RamFlash), u8p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                                  P(_Storage)], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    _LIB = lib
    return lib


def with_shares(rows: List[Dict], cost: str) -> List[Dict]:
    """``rows`` (per-op profile rows) with ``share``: each row's ``cost`` over their sum."""
    total = sum(r[cost] for r in rows) or 1
    for r in rows:
        r["share"] = round(r[cost] / total, 6)
    return rows


def profile_table(sections: Dict[str, List[Dict]], cost: str = "seconds") -> str:
    """Per-op profile rows (``Interpreter.profile`` with ``cost="seconds"``, ``mcu-run --profile``
    with ``"instructions"``) by section as a text table, like TFLite Micro's MicroProfiler log."""
    unit, fmt = ("us", lambda v: f"{1e6 * v:>13,.1f}") if cost == "seconds" else ("", lambda v: f"{v:>13,}")
    lines = []
    for what, rows in sections.items():
        total = sum(r[cost] for r in rows)
        lines.append(f"{what}: {fmt(total).strip()} {unit or cost} in {len(rows)} ops")
        lines.append(f"{'#':>4}  {'op':<34} {'type':<28} {'mode':<8} {(cost + (' (' + unit + ')' if unit else '')):>13} "
                     f"{'share':>6}")
        for r in rows:
            lines.append(f"{r['step']:>4}  {r['name'][:34]:<34} {r['type'][:28]:<28} {r.get('mode', '')[:8]:<8} "
                         f"{fmt(r[cost])} {100 * r['share']:>5.1f}%")
        by_type: Dict[str, float] = {}
        for r in rows:
            by_type[r["type"]] = by_type.get(r["type"], 0) + r[cost]
        lines.append("by type: " + ", ".join(f"{t} {100 * n / (total or 1):.1f}%"
                                             for t, n in sorted(by_type.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def _model_data(model) -> bytes:
    """The bytes of a model given as bytes-like data or as a file path."""
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    if isinstance(model, (bytes, bytearray, memoryview, np.ndarray)):
        return bytes(model)
    raise TypeError(f"a model is a .tflite path or its bytes, not {type(model).__name__}")


def _aligned_bytes(n: int) -> np.ndarray:
    """A zeroed uint8 array of n bytes whose data starts on a 16-byte boundary."""
    raw = np.zeros(n + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start : start + n]


def _u8ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))


class Interpreter:
    """The C++ micro runtime on the host: one model, one arena.

    ``model_bytes``: a .tflite flatbuffer (subgraph 0 is run). ``arena_size``:
    bytes of arena to give the runtime; ``None`` sizes it exactly (the runtime
    reports what it needs). ``offsets``: optional memory plan, one arena offset
    per tensor of subgraph 0 (``TT_NO_OFFSET`` for none), instead of the runtime's
    own first-fit placement. Errors raise :class:`MicroRuntimeError` with the
    runtime's message.
    """

    def __init__(self, model_bytes, arena_size: Optional[int] = None, offsets: Optional[Sequence[int]] = None,
                 train_arena_size: Optional[int] = None):
        self._lib = _lib()
        data = _model_data(model_bytes)
        self._model = _aligned_bytes(len(data))
        self._model[:] = np.frombuffer(data, dtype=np.uint8)
        self._offsets = None if offsets is None else np.ascontiguousarray(offsets, dtype=np.uint32)
        self._it = _Interpreter()
        if arena_size is None:
            # Ask with an empty arena, then with the size the runtime reports
            # (exact, or an upper bound if even its state did not fit), then shrink to what it used.
            status = self._init(0)
            if status == ARENA_TOO_SMALL:
                status = self._init(self._lib.tt_arena_needed(ctypes.byref(self._it)))
                if status == 0:
                    used = self._lib.tt_arena_used(ctypes.byref(self._it))
                    if used < len(self._arena):
                        status = self._init(used)
        else:
            if int(arena_size) < 0:
                raise ValueError(f"arena_size must be >= 0, got {arena_size}")
            status = self._init(int(arena_size))
        self._check(status)
        self.input_details = [self._info(True, i) for i in range(self._lib.tt_input_count(ctypes.byref(self._it)))]
        self.output_details = [self._info(False, i) for i in range(self._lib.tt_output_count(ctypes.byref(self._it)))]
        self._trainer: Optional[_Trainer] = None
        if self._lib.tt_is_training_model(_u8ptr(self._model), len(self._model)):
            self._init_trainer(train_arena_size)
        elif train_arena_size is not None:
            raise ValueError("train_arena_size given, but the model has no training metadata")

    # ------------------------------------------------------------------ internals
    def _init_trainer(self, arena_size: Optional[int]) -> None:
        self._trainer = _Trainer()
        ref = ctypes.byref(self._trainer)

        def init(n: int) -> int:
            self._train_arena = _aligned_bytes(n)
            return self._lib.tt_train_init(ref, _u8ptr(self._model), len(self._model), _u8ptr(self._train_arena), n)

        if arena_size is None:  # the runtime reports the exact size it needs
            status = init(0)
            if status == ARENA_TOO_SMALL:
                status = init(self._lib.tt_train_arena_needed(ref))
                if status == 0 and self._lib.tt_train_arena_used(ref) < len(self._train_arena):
                    status = init(self._lib.tt_train_arena_used(ref))
        else:
            if int(arena_size) < 0:
                raise ValueError(f"train_arena_size must be >= 0, got {arena_size}")
            status = init(int(arena_size))
        self._check_train(status)

    def _check_train(self, status: int) -> None:
        if status != 0:
            raise MicroRuntimeError(
                status, self._lib.tt_train_error_message(ctypes.byref(self._trainer)).decode(errors="replace"))

    def _require_trainer(self) -> "_Trainer":
        if self._trainer is None:
            raise ValueError("this model has no training metadata (export one with tflm_train.export)")
        return self._trainer

    def _image(self, x) -> np.ndarray:
        info = self.train_info
        x = np.ascontiguousarray(x)
        if x.dtype != np.int8:
            raise ValueError(f"image dtype {x.dtype}, the model expects int8")
        if x.size != int(np.prod(info["image_shape"])) or x.shape not in (info["image_shape"], info["image_shape"][1:]):
            raise ValueError(f"image shape {x.shape}, the model expects {info['image_shape']}")
        return x

    @staticmethod
    def _label(label) -> int:
        """``label`` as an int: an integer (Python or NumPy, or a one-element integer array); a
        string, float or bool is refused, not converted. The runtime checks it is a class index
        (TT_INVALID_ARGUMENT "label L outside [0, N)", changing nothing)."""
        value = label
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(()).item() if value.dtype.kind in "iu" else value.reshape(())[()]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"label must be an integer class index, not {type(label).__name__} {label!r}")
        if not -(1 << 31) <= int(value) < (1 << 31):
            raise ValueError(f"label {int(value)} is outside the int32 range of a class index")
        return int(value)

    def _init(self, arena_size: int) -> int:
        self._arena = _aligned_bytes(arena_size)
        ref = ctypes.byref(self._it)
        if self._offsets is None:
            return self._lib.tt_init(ref, _u8ptr(self._model), len(self._model), _u8ptr(self._arena), arena_size)
        ptr = self._offsets.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
        return self._lib.tt_init_planned(
            ref, _u8ptr(self._model), len(self._model), _u8ptr(self._arena), arena_size, ptr, len(self._offsets)
        )

    def _check(self, status: int) -> None:
        if status != 0:
            raise MicroRuntimeError(status, self._lib.tt_error_message(ctypes.byref(self._it)).decode(errors="replace"))

    def _info(self, is_input: bool, index: int) -> Dict:
        info = _TensorInfo()
        fn = self._lib.tt_input_info if is_input else self._lib.tt_output_info
        self._check(fn(ctypes.byref(self._it), index, ctypes.byref(info)))
        if info.type not in TENSOR_DTYPES:
            raise MicroRuntimeError(2, f"{'input' if is_input else 'output'} {index} has TFLite type {info.type}")
        return {
            "index": index,
            "shape": tuple(int(info.dims[k]) for k in range(info.rank)),
            "dtype": np.dtype(TENSOR_DTYPES[info.type]),
            "quantization": (float(info.scale), int(info.zero_point)),
            "bytes": int(info.bytes),
        }

    def _as_input(self, x, index: int) -> np.ndarray:
        d = self.input_details[index]
        x = np.ascontiguousarray(x)
        if x.dtype != d["dtype"]:
            raise ValueError(f"input {index}: dtype {x.dtype}, the model expects {d['dtype']}")
        return x

    # ------------------------------------------------------------------ public API
    @property
    def arena_bytes(self) -> int:
        """Arena bytes the model uses: for a training file the training arena (what
        ``tt_train_init`` needs: the device runs only that one), else the inference arena."""
        if self._trainer is not None:
            return int(self._lib.tt_train_arena_used(ctypes.byref(self._trainer)))
        return self.infer_arena_bytes

    @property
    def infer_arena_bytes(self) -> int:
        """Arena bytes of subgraph 0's inference (``tt_init``): runtime state, op data and the planned tensors."""
        return int(self._lib.tt_arena_used(ctypes.byref(self._it)))

    @property
    def ops(self) -> List[str]:
        n = self._lib.tt_op_count(ctypes.byref(self._it))
        return [self._lib.tt_op_name(ctypes.byref(self._it), i).decode() for i in range(n)]

    def infer(self, x) -> np.ndarray:
        """Run a single-input, single-output model on ``x``; returns the output (shape and dtype of the model)."""
        if len(self.input_details) != 1 or len(self.output_details) != 1:
            raise ValueError(
                f"infer() needs one input and one output, the model has {len(self.input_details)} and "
                f"{len(self.output_details)}: use invoke()"
            )
        return self.invoke([x])[0]

    def invoke(self, inputs: Sequence) -> List[np.ndarray]:
        """Set every input, run the model, return every output."""
        if len(inputs) != len(self.input_details):
            raise ValueError(f"{len(inputs)} inputs given, the model has {len(self.input_details)}")
        ref = ctypes.byref(self._it)
        for i, x in enumerate(inputs):
            x = self._as_input(x, i)
            self._check(self._lib.tt_set_input(ref, i, x.ctypes.data_as(ctypes.c_void_p), x.nbytes))
        self._check(self._lib.tt_invoke(ref))
        outputs = []
        for d in self.output_details:
            y = np.empty(d["shape"], dtype=d["dtype"])
            self._check(self._lib.tt_get_output(ref, d["index"], y.ctypes.data_as(ctypes.c_void_p), y.nbytes))
            outputs.append(y)
        return outputs

    # ------------------------------------------------------------------ training (training .tflite files)
    @property
    def is_training_model(self) -> bool:
        """True for a training .tflite (``tflm_train.export``): train_step / predict / parameters work."""
        return self._trainer is not None

    @property
    def train_info(self) -> Dict:
        """Facts of the training runtime: image shape, classes, head, arena sizes, steps done, RNG state."""
        tr = self._require_trainer()
        info = _TrainInfo()
        self._check_train(self._lib.tt_train_get_info(ctypes.byref(tr), ctypes.byref(info)))
        return {
            "image_shape": tuple(int(info.image.dims[k]) for k in range(info.image.rank)),
            "image_quantization": (float(info.image.scale), int(info.image.zero_point)),
            "num_classes": int(info.num_classes),
            "head": "float" if info.head_is_float else "int8",
            "ops": int(info.op_count),
            "parameters": int(info.parameter_count),
            "plan_arena_bytes": int(info.plan_arena_bytes),
            "persistent_bytes": int(info.persistent_bytes),
            "runtime_state_bytes": int(info.runtime_state_bytes),
            "arena_bytes": int(self._lib.tt_train_arena_used(ctypes.byref(tr))),
            "steps_done": int(info.steps_done),
            "rng_state": int(info.rng_state),
            "logit_absmax": float(info.logit_absmax),
            "input_window_rows": int(info.input_window_rows),
        }

    def train_step(self, x, label: int) -> float:
        """One SGD step (QAS, sparse update, in the C++ runtime) on the int8 image ``x``
        (the model's input shape, with or without the batch dim) and class ``label``;
        returns the loss before the update. The parameters persist in the runtime.
        ``x`` may also be a callable ``row -> row r of the image`` (W x C int8 values): the
        runtime asks for the rows as it needs them (``tt_train_step_rows``; with a plan
        exported with ``stream_input`` the image never sits whole in the arena)."""
        tr = self._require_trainer()
        label = self._label(label)
        loss = ctypes.c_float()
        if callable(x):
            with self._row_source(x) as source:
                self._check_rows(source, self._lib.tt_train_step_rows(ctypes.byref(tr), source.fn, None, label,
                                                                      ctypes.byref(loss)))
            return float(loss.value)
        x = self._image(x)
        self._check_train(self._lib.tt_train_step(ctypes.byref(tr), x.ctypes.data_as(ctypes.c_void_p), x.nbytes,
                                                  label, ctypes.byref(loss)))
        return float(loss.value)

    def predict(self, x) -> np.ndarray:
        """Real-valued logits ``[num_classes]`` (float32) of ``x`` under the current (trained) parameters:
        the training graph's forward pass in the C++ runtime. ``x``: an image, or a row callable
        as for ``train_step``."""
        tr = self._require_trainer()
        n = self.train_info["num_classes"]
        out = np.empty(n, dtype=np.float32)
        logits = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if callable(x):
            with self._row_source(x) as source:
                self._check_rows(source, self._lib.tt_train_predict_rows(ctypes.byref(tr), source.fn, None, logits, n))
            return out
        x = self._image(x)
        self._check_train(self._lib.tt_train_predict(ctypes.byref(tr), x.ctypes.data_as(ctypes.c_void_p), x.nbytes,
                                                     logits, n))
        return out

    @contextlib.contextmanager
    def _row_source(self, rows):
        """A tt_row_source calling ``rows(r)``; ``.requested``: the rows asked for, in order;
        ``.error``: what made it fail (a wrong row, an exception of ``rows``)."""
        shape = self.train_info["image_shape"]
        row_shape = tuple(shape[2:]) if len(shape) == 4 else None
        source = types.SimpleNamespace(requested=[], error=None)

        def deliver(_context, row, dst, row_bytes):
            source.requested.append(int(row))
            try:
                value = np.ascontiguousarray(rows(int(row)))
                if value.dtype != np.int8 or value.nbytes != row_bytes or (row_shape and value.size != np.prod(row_shape)):
                    raise ValueError(f"row {row}: the row source gave {value.dtype} {value.shape}, the model expects "
                                     f"{row_bytes} int8 values{f' ({row_shape[0]}x{row_shape[1]})' if row_shape else ''}")
                ctypes.memmove(dst, value.ctypes.data, row_bytes)
                return 0
            except Exception as e:  # reported after the call, which fails and changes nothing
                source.error = e
                return 1

        source.fn = _RowSource(deliver)
        yield source

    def _check_rows(self, source, status: int) -> None:
        if source.error is not None:
            raise source.error
        self._check_train(status)

    def profile(self, x, label: Optional[int] = None, run: str = "train_step") -> List[Dict]:
        """Runs one ``train_step(x, label)`` (it trains), ``predict(x)`` or ``infer(x)`` (``run``) with
        the host profile on, like ``mcu-run --profile`` on the device: per executed op, in order, a
        row with ``step``, ``name``, ``type`` (training files also ``phase`` and ``mode``), ``seconds``
        (the thread's CPU time from the end of the previous op, so a row includes the runtime's own
        work between ops) and ``share`` of the run. ``profile_table`` prints them."""
        calls = {"train_step": lambda: self.train_step(x, label), "predict": lambda: self.predict(x),
                 "infer": lambda: self.infer(x)}
        if run not in calls:
            raise ValueError(f"run must be one of {', '.join(calls)}, not {run!r}")
        if run == "train_step" and label is None:
            raise ValueError("profile(run='train_step') needs a label")
        if run == "infer":
            ops = [dict(name=n, type=n) for n in self.ops]
        else:
            self._require_trainer()
            from ..io.train_export import read_training_file

            ops = [dict(name=s.name, type=s.type, phase=s.phase, mode=s.mode)
                   for s in read_training_file(self._model)[2].steps]
        capacity = len(ops) + 1
        readings = np.zeros(2 * capacity, np.uint64)
        self._lib.tt_host_profile_start(readings.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)), capacity)
        try:
            calls[run]()
        finally:
            n = int(self._lib.tt_host_profile_stop())
        pairs = readings[:2 * n].reshape(n, 2)
        rows = [dict(step=int(k), **ops[int(k)], seconds=float(int(t) - int(t0)) * 1e-9)
                for (k, t), (_, t0) in zip(pairs[1:], pairs[:-1])]
        return with_shares(rows, "seconds")

    def parameters(self) -> Dict[str, np.ndarray]:
        """The trainable parameters (and the RNG state ``rng/state``) as they are now, name -> array."""
        tr = self._require_trainer()
        out = {}
        for i in range(self._lib.tt_parameter_count(ctypes.byref(tr))):
            p = _Parameter()
            self._check_train(self._lib.tt_parameter_info(ctypes.byref(tr), i, ctypes.byref(p)))
            name = ctypes.string_at(p.name, p.name_length).decode("utf-8", errors="replace")
            shape = tuple(int(p.dims[k]) for k in range(p.rank))
            value = np.empty(shape, dtype=TENSOR_DTYPES[p.type])
            self._check_train(self._lib.tt_parameter_data(ctypes.byref(tr), i, value.ctypes.data_as(ctypes.c_void_p),
                                                          value.nbytes))
            out[name] = value
        return out

    def set_parameters(self, values: Dict[str, np.ndarray]) -> None:
        """Replace trainable parameters by name (``tt_parameter_set_data``): each value must have the
        parameter's shape and dtype, and a split weight's frozen channels must keep their bytes.
        Every value is checked before anything is written, so a refused call changes nothing."""
        tr = self._require_trainer()
        current = self.parameters()
        unknown = sorted(set(values) - set(current))
        if unknown:
            raise ValueError(f"no trainable parameter named {unknown[0]!r} (the model has {len(current)})")
        staged = []
        for name, value in values.items():
            want = current[name]
            value = np.asarray(value)
            if value.shape != want.shape or value.dtype != want.dtype:
                raise ValueError(f"parameter {name!r} is {want.dtype}{list(want.shape)}, "
                                 f"got {value.dtype}{list(value.shape)}")
            staged.append((list(current).index(name), np.ascontiguousarray(value), want))
        written = []
        try:
            for index, value, _ in staged:
                self._check_train(self._lib.tt_parameter_set_data(
                    ctypes.byref(tr), index, value.ctypes.data_as(ctypes.c_void_p), value.nbytes))
                written.append(index)
        except MicroRuntimeError:
            # The runtime refused one tensor (a frozen channel changed): put back those already written.
            for index, _, before in staged:
                if index in written:
                    self._lib.tt_parameter_set_data(ctypes.byref(tr), index,
                                                    before.ctypes.data_as(ctypes.c_void_p), before.nbytes)
            raise

    def train_state(self):
        """The runtime's state as a ``tflm_train.training.TrainState`` (parameters, RNG, max |logit|, steps)."""
        from ..training.trainer import TrainState

        info = self.train_info
        return TrainState(self.parameters(), logit_absmax=info["logit_absmax"], steps=info["steps_done"])

    def to_tflite(self, calibration=None) -> bytes:
        """The trained model as an inference .tflite: the file's inference graph with the trained
        parameters and the new head (``tflm_train.training.apply_to_graph``; a float head is
        quantized with the largest logit seen while training, or over ``calibration`` images)."""
        self._require_trainer()
        from ..io.train_export import read_training_file
        from ..training.trainer import apply_to_graph

        infer, tg, _ = read_training_file(self._model.tobytes())
        # A .tflite keeps no op names (the reader names ops by their output): give the
        # classifier the name the training graph knows it by.
        for op in infer.ops:
            if op.outputs and op.outputs[0] == tg.head.get("classifier_output"):
                op.name = tg.head.get("classifier_op", op.name)
        return apply_to_graph(infer, tg, self.train_state(), calibration).to_tflite()

    # ------------------------------------------------------------------ checkpoints (tt_checkpoint_*)
    def checkpoint_storage_bytes(self, page_size: int = 4096, write_size: int = 8) -> int:
        """Bytes of checkpoint storage (two slots) this model needs for a flash geometry."""
        n = self._lib.tt_checkpoint_storage_bytes(ctypes.byref(self._require_trainer()), page_size, write_size)
        if not n:
            raise ValueError(f"page_size {page_size} and write_size {write_size} must be powers of two "
                             f"with write_size <= 256 and <= page_size")
        return int(n)

    def _checkpoint(self, save: bool, memory: np.ndarray, page_size: int, write_size: int) -> Dict:
        tr = self._require_trainer()
        flash, storage, info = _RamFlash(), _Storage(), _CheckpointInfo()
        self._lib.tt_ram_flash_storage(ctypes.byref(flash), _u8ptr(memory), len(memory), page_size, write_size,
                                       ctypes.byref(storage))
        fn = self._lib.tt_checkpoint_save if save else self._lib.tt_checkpoint_restore
        self._check_train(fn(ctypes.byref(tr), ctypes.byref(storage), ctypes.byref(info)))
        return {"sequence": info.sequence, "slot": "AB"[info.slot], "payload_bytes": info.payload_bytes,
                "steps_done": info.steps_done}

    def save_checkpoint(self, target, page_size: int = 4096, write_size: int = 8) -> Dict:
        """Save the trained state (parameters, RNG, step count) as the C runtime does into flash:
        A/B slots, header last, CRC32 (``tt_checkpoint_save``). ``target``: a file path (the file
        is the storage image, kept across saves; replaced atomically) or a writable bytearray of
        at least :meth:`checkpoint_storage_bytes` bytes, updated in place. Returns the checkpoint's
        sequence number, slot, payload bytes and step count."""
        if isinstance(target, (bytearray, memoryview)):
            memory = np.frombuffer(target, dtype=np.uint8)
            if not memory.flags.writeable:
                raise ValueError("save_checkpoint needs a writable buffer (bytearray)")
            return self._checkpoint(True, memory, page_size, write_size)
        path = os.fspath(target)
        needed = self.checkpoint_storage_bytes(page_size, write_size)
        old = open(path, "rb").read() if os.path.exists(path) else b""
        memory = np.frombuffer(bytearray(old if len(old) >= needed else b"\xff" * needed), dtype=np.uint8)
        info = self._checkpoint(True, memory, page_size, write_size)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(memory.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return info

    def restore_checkpoint(self, source, page_size: int = 4096, write_size: int = 8) -> Dict:
        """Load the newest valid checkpoint of this model from a file path or bytes
        (``tt_checkpoint_restore``); refuses, with the reason per slot, storage that holds none
        (empty, corrupted, or another model's). Same ``page_size`` / ``write_size`` as the save."""
        data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(source, "rb").read()
        return self._checkpoint(False, np.frombuffer(bytearray(data), dtype=np.uint8), page_size, write_size)
