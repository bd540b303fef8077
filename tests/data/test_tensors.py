"""dataset_to_tensors and num_classes on every kind of image column."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from pdiff_hub.data.images import load_image_dataset
from pdiff_hub.data.tensors import dataset_to_tensors, num_classes

from .common import labels_of, needs_fashion, tiny_pil_dataset


@pytest.fixture(scope="module")
def digits_test() -> datasets.Dataset:
    return load_image_dataset("digits", val_size=0.1)["test"]


def test_resize_and_range(digits_test: datasets.Dataset) -> None:
    images, labels = dataset_to_tensors(digits_test, image_size=32)
    assert images.shape == (360, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (360,) and labels.dtype == torch.int64
    assert -1.0 <= images.min() < -0.99 and 0.9 < images.max() <= 1.0
    raw, _ = dataset_to_tensors(digits_test, image_size=8, mean=0.0, std=1.0)
    expected = torch.from_numpy(digits_test.with_format("numpy")[:]["image"]).float()[:, None] / 255.0
    assert torch.equal(raw, expected)  # no resize at the native size: exact pixels
    three, _ = dataset_to_tensors(digits_test, image_size=8, in_chans=3, mean=0.0, std=1.0)
    assert three.shape == (360, 3, 8, 8) and torch.equal(three[:, 0], three[:, 2])


def test_batches_do_not_change_the_result(digits_test: datasets.Dataset) -> None:
    whole, labels = dataset_to_tensors(digits_test, image_size=12)
    batched, batched_labels = dataset_to_tensors(digits_test, image_size=12, batch_size=7)
    assert torch.equal(whole, batched) and torch.equal(labels, batched_labels)


def test_pixel_arrays_rgb_to_gray_and_channels_first() -> None:
    red = np.zeros((2, 10, 10, 3), dtype=np.uint8)
    red[..., 0] = 255
    ds = datasets.Dataset.from_dict(
        {"image": red, "label": [0, 1]},
        features=datasets.Features({"image": datasets.Array3D((10, 10, 3), "uint8"), "label": datasets.Value("int64")}),
    )
    gray, labels = dataset_to_tensors(ds, image_size=10, mean=0.0, std=1.0)
    assert gray.shape == (2, 1, 10, 10) and labels.tolist() == [0, 1]
    assert torch.allclose(gray, torch.full_like(gray, 0.299), atol=2e-4)  # ITU-R 601-2 luma of pure red

    chw = datasets.Dataset.from_dict(
        {"img": np.full((2, 3, 8, 8), 0.25, dtype=np.float32), "labels": [1, 2]},
        features=datasets.Features({"img": datasets.Array3D((3, 8, 8), "float32"), "labels": datasets.Value("int64")}),
    )
    images, _ = dataset_to_tensors(chw, image_size=12, in_chans=3)
    assert images.shape == (2, 3, 12, 12) and torch.allclose(images, torch.full_like(images, -0.5))
    assert num_classes(chw) == 3


def test_pil_images_convert_like_pil() -> None:
    rgba = tiny_pil_dataset(4, seed=0, sizes=(8, 20), mode="RGBA")
    rgb, _ = dataset_to_tensors(rgba, image_size=8, in_chans=3, mean=0.0, std=1.0)
    gray, _ = dataset_to_tensors(rgba, image_size=8, in_chans=1, mean=0.0, std=1.0)
    first = rgba[0]["img"]  # 8x8, so no resize
    assert torch.equal(rgb[0], torch.from_numpy(np.array(first.convert("RGB"))).permute(2, 0, 1).float() / 255)
    assert torch.equal(gray[0, 0], torch.from_numpy(np.array(first.convert("L"))).float() / 255)
    assert gray.shape == (4, 1, 8, 8)  # the 20x20 images are shrunk


def test_nested_lists() -> None:
    pixels = np.full((3, 9, 9), 255, dtype=np.uint8).tolist()
    ds = datasets.Dataset.from_dict({"pixel_values": pixels, "label": [0] * 3})
    images, _ = dataset_to_tensors(ds, image_size=9)
    assert images.shape == (3, 1, 9, 9) and torch.equal(images, torch.ones_like(images))


def test_grayscale_pil_images_to_three_channels() -> None:
    ds = datasets.Dataset.from_dict({"image": [Image.new("L", (9, 9), color=51)], "label": [0]})
    images, _ = dataset_to_tensors(ds, image_size=9, in_chans=3, mean=0.0, std=1.0)
    assert torch.allclose(images, torch.full((1, 3, 9, 9), 0.2))


def test_errors(digits_test: datasets.Dataset) -> None:
    with pytest.raises(ValueError, match="image_size"):
        dataset_to_tensors(digits_test, image_size=4)
    with pytest.raises(ValueError, match="in_chans"):
        dataset_to_tensors(digits_test, image_size=8, in_chans=2)
    with pytest.raises(ValueError, match="std"):
        dataset_to_tensors(digits_test, image_size=8, std=0.0)
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
    with pytest.raises(ValueError, match="empty"):
        num_classes(ds.select([]))


@needs_fashion
def test_fashion_mnist_to_tensors() -> None:
    train = load_image_dataset("fashion_mnist", val_size=5000)["train"]
    images, labels = dataset_to_tensors(train, image_size=32)
    assert images.shape == (55000, 1, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert torch.equal(labels, torch.from_numpy(labels_of(train)))
