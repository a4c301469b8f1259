"""tflm-train: on-device training of int8 models for TensorFlow Lite Micro."""
from .graph import GraphError, Op, QuantGraph, Tensor

__version__ = "0.1.0"


def load(path, **kwargs) -> QuantGraph:
    """Load an int8 model: a ``.tflite`` file or a seed ``.npz`` + ``.json`` pair."""
    from .io import load as _load

    return _load(path, **kwargs)


__all__ = ["GraphError", "Op", "QuantGraph", "Tensor", "load", "__version__"]
