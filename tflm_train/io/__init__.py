"""Model readers and writers."""
import os

from ..graph import GraphError, QuantGraph


def load(path, **kwargs) -> QuantGraph:
    if not os.path.exists(path):
        raise GraphError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npz", ".json"):
        from .npz_reader import load_npz

        return load_npz(path, **kwargs)
    from .tflite_reader import read_tflite

    with open(path, "rb") as f:
        data = f.read()
    return read_tflite(data, name=os.path.splitext(os.path.basename(path))[0], **kwargs)
