"""tflm-train: on-device training of int8 models for TensorFlow Lite Micro."""
from .contract import check
from .graph import GraphError, Op, QuantGraph, Tensor

__version__ = "0.1.0"


def load(path, **kwargs) -> QuantGraph:
    """Load an int8 model: a ``.tflite`` file or a seed ``.npz`` + ``.json`` pair."""
    from .io import load as _load

    return _load(path, **kwargs)


def export(model, scheme, path=None, **kwargs):
    """Write the training .tflite of ``model`` under ``scheme`` (see ``tflm_train.io.train_export.export``)."""
    from .io.train_export import export as _export

    return _export(model, scheme, path, **kwargs)


#: Reachable as ``tflm_train.NAME`` after ``import tflm_train``, imported on first use
#: (``tflm_train.keras`` imports Keras and TensorFlow: ``import tflm_train`` alone must not).
_LAZY = {
    "SparseScheme": ("tflm_train.training.scheme", "SparseScheme"),
    "reference": ("tflm_train.reference", None),
    "keras": ("tflm_train.keras", None),
    "micro": ("tflm_train.micro", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tflm_train' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


def plan(graph, scheme=None, **kwargs):
    """Memory plan of a training step (see ``tflm_train.planner.plan``)."""
    from .planner import plan as _plan

    return _plan(graph, scheme, **kwargs)


def search_scheme(graph, x, y, budget_kb=None, **kwargs):
    """A sparse-update scheme searched on (x, y) under a memory budget (see ``tflm_train.scheme_search``)."""
    from .scheme_search import search_scheme as _search_scheme

    return _search_scheme(graph, x, y, budget_kb, **kwargs)


__all__ = ["GraphError", "Op", "QuantGraph", "SparseScheme", "Tensor", "check", "load", "export", "plan", "search_scheme",
           "__version__"]
