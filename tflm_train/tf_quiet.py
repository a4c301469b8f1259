"""Keep TensorFlow's C++ start-up noise off stderr unless asked for.

Importing TensorFlow (Keras 3's backend) writes absl's "All log messages before
absl::InitializeLog() ..." warning, CUDA probing lines ("Could not find cuda drivers",
"failed call to cuInit") and oneDNN notices straight to file descriptor 2, before
``TF_CPP_MIN_LOG_LEVEL`` is read by every library that logs them. ``import_keras()`` imports
Keras and starts TensorFlow's runtime with descriptor 2 pointed at /dev/null, so the
main job and the CLI print only their own lines. ``TFLM_TRAIN_VERBOSE=1`` (the CLI's and the
examples' ``-v``) leaves everything as TensorFlow prints it. Python exceptions raised while
importing still propagate (descriptor 2 is restored first).
"""
from __future__ import annotations

import contextlib
import os
import sys

VERBOSE_ENV = "TFLM_TRAIN_VERBOSE"
_started = False


def verbose() -> bool:
    """True when TensorFlow's own logging was asked for (``TFLM_TRAIN_VERBOSE`` set, not 0)."""
    return os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0")


def set_verbose(on: bool) -> None:
    """What ``-v`` does: TensorFlow's logging is shown (on) or kept quiet (off)."""
    os.environ[VERBOSE_ENV] = "1" if on else "0"


@contextlib.contextmanager
def fd2_silenced():
    """Point file descriptor 2 at /dev/null for the block (nothing happens when verbose)."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """``import keras`` (TensorFlow backend) with TensorFlow's runtime started, quietly unless verbose."""
    global _started
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _started:
        with fd2_silenced():
            import keras  # noqa: F401

            try:
                import tensorflow as tf
            except ImportError:  # another Keras backend: nothing of TensorFlow's to start
                tf = None
            if tf is not None:
                tf.config.list_physical_devices()  # device probing (CUDA) logs here
        _started = True
    import keras

    return keras
