"""Model readers and writers."""
import os

from ..graph import GraphError, QuantGraph


def load(path, **kwargs) -> QuantGraph:
    """Read a model file into a QuantGraph inside the support contract (``tflm_train.check``,
    ``training=False``), or raise one GraphError line naming the model."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise GraphError(f"{path}: no such file")
    if os.path.isdir(path):
        raise GraphError(f"{path}: is a directory, a model file expected")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npz", ".json"):
        from .npz_reader import load_npz

        return load_npz(path, **kwargs)
    from .tflite_reader import read_tflite

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise GraphError(f"{path}: cannot read ({e.strerror or e})") from None
    return read_tflite(data, name=os.path.splitext(os.path.basename(path))[0], **kwargs)
