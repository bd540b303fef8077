"""load_image_dataset and load_recipe_splits: built-ins, local folders, splits, columns, errors. Never online."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

from pdiff_hub.data.images import BUILTIN_DATASETS, load_image_dataset, load_recipe_splits, num_classes

from .common import fake_idx_folder, labels_of, needs_fashion, needs_mnist, tiny_pil_dataset

SPLITS = ["train", "validation", "test"]


def _assert_layout(dd: datasets.DatasetDict) -> None:
    assert list(dd) == SPLITS
    for split in dd.values():
        assert split.column_names == ["image", "label"]
        assert isinstance(split.features["label"], datasets.ClassLabel)


def _sizes(dd: datasets.DatasetDict) -> dict[str, int]:
    return {k: len(v) for k, v in dd.items()}


# ---------------------------------------------------------------------------------------------------------------
# Built-in datasets
# ---------------------------------------------------------------------------------------------------------------


def test_digits_splits_and_features() -> None:
    dd = load_image_dataset("digits", val_size=0.1, seed=0)
    _assert_layout(dd)
    sizes = _sizes(dd)
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
    train_counts = Counter(labels_of(dd["train"]).tolist())
    val_counts = Counter(labels_of(dd["validation"]).tolist())
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
        assert np.array_equal(labels_of(a[split]), labels_of(b[split]))
    val_a = a["validation"].with_format("numpy")[:]["image"]
    val_c = c["validation"].with_format("numpy")[:]["image"]
    assert not np.array_equal(val_a, val_c), "a different seed must give a different validation split"
    # The test split does not depend on the seed.
    assert np.array_equal(a["test"].with_format("numpy")[:]["image"], c["test"].with_format("numpy")[:]["image"])


def test_digits_recipe_splits_are_the_recorded_ones() -> None:
    """The digits-mlp recipe's tensors, pinned: the published digits numbers were computed from these splits."""
    data = SimpleNamespace(dataset="digits", image_size=8, val_size=200, split_seed=0)
    splits = load_recipe_splits(data, {"num_classes": 10, "in_chans": 1})
    recorded = {  # (rows, first labels, label sum, pixel sum) from the splits the results were computed with
        "train": (1237, [0, 1, 2, 3, 4, 7, 8, 9, 0, 1, 2, 3], 5552, -30855.089567780495),
        "validation": (200, [5, 6, 7, 1, 1, 3, 4, 6, 9, 1, 0, 3], 900, -4932.658720552921),
        "test": (360, [1, 4, 8, 6, 5, 9, 9, 1, 3, 2, 2, 2], 1618, -8994.360602080822),
    }
    for name, (rows, first, label_sum, pixel_sum) in recorded.items():
        images, labels = splits[name]
        assert images.shape == (rows, 1, 8, 8) and labels[:12].tolist() == first
        assert int(labels.sum()) == label_sum and float(images.double().sum()) == pytest.approx(pixel_sum, abs=1e-6)


def test_recipe_splits_check_the_class_count() -> None:
    data = SimpleNamespace(dataset="digits", image_size=8, val_size=200, split_seed=0)
    with pytest.raises(ValueError, match="digits has 10 classes but the model is built with num_classes=100"):
        load_recipe_splits(data, {"num_classes": 100, "in_chans": 1})
    three = load_recipe_splits(SimpleNamespace(**{**vars(data), "image_size": 16}), {"in_chans": 3})
    assert three["test"][0].shape == (360, 3, 16, 16)


def test_builtin_names_are_normalized() -> None:
    assert len(load_image_dataset("DIGITS", val_size=10)["validation"]) == 10


def test_val_size_errors() -> None:
    with pytest.raises(ValueError, match="val_size=5000 asks for 5000 of 1437 rows"):
        load_image_dataset("digits")  # default 5000 > 1437 training rows
    with pytest.raises(ValueError, match="fraction"):
        load_image_dataset("digits", val_size=1.5)
    with pytest.raises(ValueError, match="negative"):
        load_image_dataset("digits", val_size=-1)


def test_val_size_zero_gives_empty_validation() -> None:
    dd = load_image_dataset("digits", val_size=0)
    assert len(dd["validation"]) == 0 and len(dd["train"]) == 1797 - 360


def test_idx_folder_gets_a_stratified_validation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    arrays = fake_idx_folder(tmp_path / "idx", compress=True)
    monkeypatch.setenv("PDIFF_HUB_MNIST_DIR", str(tmp_path / "idx"))
    dd = load_image_dataset("mnist", val_size=10)
    assert _sizes(dd) == {"train": 50, "validation": 10, "test": 20}
    assert np.array_equal(dd["test"].with_format("numpy")[:]["image"], arrays["test"][0])
    assert Counter(labels_of(dd["validation"]).tolist()) == dict.fromkeys(range(10), 1)


@needs_fashion
def test_fashion_mnist() -> None:
    dd = load_image_dataset("fashion_mnist", val_size=5000)
    _assert_layout(dd)
    assert _sizes(dd) == {"train": 55000, "validation": 5000, "test": 10000}
    assert dd["train"].features["image"].shape == (28, 28)
    assert dd["test"].features["label"].names[9] == "Ankle boot"
    assert dd["test"][0]["label"] == 9  # first Fashion-MNIST test image is an ankle boot
    assert Counter(labels_of(dd["validation"]).tolist()) == dict.fromkeys(range(10), 500)  # balanced, stratified


@needs_mnist
def test_mnist() -> None:
    dd = load_image_dataset("mnist", val_size=5000)
    _assert_layout(dd)
    assert _sizes(dd) == {"train": 55000, "validation": 5000, "test": 10000}
    assert dd["test"][0]["label"] == 7  # first MNIST test digit is a 7
    assert num_classes(dd["train"]) == 10


# ---------------------------------------------------------------------------------------------------------------
# Local folders, column normalization, errors
# ---------------------------------------------------------------------------------------------------------------


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
    assert _sizes(dd) == {"train": 32, "validation": 8, "test": 12}
    assert dd["train"].features["label"].names == ["0", "1", "2", "3"]  # int labels became a ClassLabel
    assert num_classes(dd) == 4
    assert labels_of(dd["test"]).tolist() == [i % 4 for i in range(12)]


def test_save_to_disk_single_dataset_gets_test_split(tmp_path: Path) -> None:
    tiny_pil_dataset(30, seed=0).save_to_disk(str(tmp_path / "single"))
    with pytest.warns(UserWarning, match="no test split"):
        dd = load_image_dataset(str(tmp_path / "single"), val_size=0.2)
    _assert_layout(dd)
    assert _sizes(dd) == {"train": 19, "validation": 5, "test": 6}


def test_existing_validation_split_is_kept(tmp_path: Path) -> None:
    parts = {"train": tiny_pil_dataset(9, seed=0), "valid": tiny_pil_dataset(6, seed=1)}
    datasets.DatasetDict({**parts, "test": tiny_pil_dataset(3, seed=2)}).save_to_disk(str(tmp_path / "d"))
    dd = load_image_dataset(str(tmp_path / "d"), val_size=5000)  # val_size ignored: the source has a validation
    assert _sizes(dd) == {"train": 9, "validation": 6, "test": 3}


def test_parquet_folder_with_pil_images(tmp_path: Path) -> None:
    folder = tmp_path / "pq"
    folder.mkdir()
    tiny_pil_dataset(24, seed=0).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    tiny_pil_dataset(6, seed=1, sizes=(12, 20)).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    dd = load_image_dataset(str(folder), val_size=6, seed=0, cache_dir=str(tmp_path / "cache"))
    _assert_layout(dd)
    assert _sizes(dd) == {"train": 18, "validation": 6, "test": 6}
    assert isinstance(dd["train"].features["image"], datasets.Image)
    assert dd["train"].features["label"].names == ["cat", "dog", "fox"]
    assert Counter(labels_of(dd["validation"]).tolist()) == {0: 2, 1: 2, 2: 2}
    splits = load_recipe_splits(SimpleNamespace(dataset=str(folder), image_size=16, val_size=6, split_seed=0),
                                {"num_classes": 3, "in_chans": 3})
    assert splits["test"][0].shape == (6, 3, 16, 16) and splits["test"][1].dtype == torch.int64


def test_single_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    tiny_pil_dataset(20, seed=0).to_parquet(str(path))
    with pytest.warns(UserWarning, match="no test split"):
        dd = load_image_dataset(str(path), val_size=3, cache_dir=str(tmp_path / "cache"))
    assert _sizes(dd) == {"train": 13, "validation": 3, "test": 4}


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
    assert labels_of(dd["test"]).tolist() == [2, 2]
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


def test_unloadable_hub_id_lists_builtins() -> None:
    with pytest.raises(ValueError) as info:
        load_image_dataset("pdiff-hub-test/no-such-dataset")  # offline: the Hub cannot be reached
    message = str(info.value)
    assert all(name in message for name in BUILTIN_DATASETS) and "pdiff-hub-test/no-such-dataset" in message


def test_a_bare_name_is_tried_on_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Canonical Hub datasets have no org ("cifar10"): a name that is not a path and not a built-in goes to the Hub."""
    asked = []
    train = datasets.Dataset.from_dict({"img": [[[0, 1], [2, 3]]] * 10, "label": [0, 1] * 5})

    def load_dataset(name: str, **kwargs) -> datasets.DatasetDict:
        asked.append(name)
        return datasets.DatasetDict({"train": train, "test": train})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    splits = load_image_dataset("cifar10", val_size=2)
    assert asked == ["cifar10"] and len(splits["validation"]) == 2


def test_an_unloadable_bare_name_says_what_it_is_not() -> None:
    with pytest.raises(ValueError, match=r"'no-such-dataset'.*not a built-in dataset.*not a local folder.*Hub"):
        load_image_dataset("no-such-dataset")  # offline: the Hub cannot be reached


@pytest.mark.parametrize("name", ["./missing", "/no/such/folder", "a/b/c"])
def test_neither_folder_nor_hub_id(name: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"fashion_mnist.*Hub dataset id \('org/name'\)"):
        load_image_dataset(name)
