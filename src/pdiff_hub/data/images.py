"""Image classification datasets for pdiff_hub, loadable with or without internet.

Everything the rest of the package needs from a dataset goes through two functions:

* :func:`load_image_dataset` returns a :class:`datasets.DatasetDict` with the splits ``"train"``, ``"validation"``
  and ``"test"``, each with exactly the columns ``image`` and ``label`` (a :class:`datasets.ClassLabel`).
* :func:`dataset_to_tensors` (:mod:`pdiff_hub.data.tensors`) turns one split into a normalized ``float32`` image
  tensor and ``int64`` labels; :func:`load_recipe_splits` does both for a recipe.

Sources, tried in this order:

1. The built-in offline datasets ``"fashion_mnist"``, ``"mnist"`` and ``"digits"`` (:mod:`pdiff_hub.data.offline`,
   no network needed). Their ``image`` column is a :class:`datasets.Array2D` of ``uint8`` (not PNG-encoded), which
   keeps building and converting them to tensors fast (about a second for Fashion-MNIST).
2. A local folder: a :meth:`datasets.Dataset.save_to_disk` / :meth:`datasets.DatasetDict.save_to_disk` folder, or
   any folder :func:`datasets.load_dataset` understands (parquet files, an image folder, ...). A single ``.parquet``
   file also works.
3. A Hugging Face Hub dataset id (``org/name``, or a canonical name without an org such as ``cifar10``), loaded
   with :func:`datasets.load_dataset`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch

from ..core.io import is_hub_id
from .offline import BUILTIN_DATASETS, builtin_key, find_mnist_dir, read_builtin
from .tensors import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    dataset_to_tensors,
    find_column,
    label_array,
    num_classes,
)
from .tensors import class_names as dataset_class_names

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "IMAGE_COLUMNS",
    "LABEL_COLUMNS",
    "dataset_to_tensors",
    "find_mnist_dir",
    "load_image_dataset",
    "load_recipe_data",
    "load_recipe_splits",
    "num_classes",
]

# Seed of the test split carved from sources without one (digits, single-split folders). Deliberately independent
# of ``seed`` so that the test set stays the same across runs that vary the train/validation split.
_TEST_SPLIT_SEED = 0
_TEST_FRACTION = 0.2
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test", "testing"),
}


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
            ``name_or_path`` is neither a built-in name, nor a local folder or ``.parquet`` file, nor a Hub id.
        ValueError: A Hub dataset could not be loaded; the dataset has no recognizable image/label column or no
            ``train`` split; or ``val_size`` is out of range.
    """
    _check_val_size(val_size)
    key = builtin_key(name_or_path)
    if key is not None:
        return _builtin_splits(key, val_size=val_size, seed=seed)
    raw = _load_raw(name_or_path, revision=revision, cache_dir=cache_dir)
    return _finalize(raw, val_size=val_size, seed=seed, source=name_or_path)


def load_recipe_splits(data_config: Any, model_kwargs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The splits of a recipe's dataset as ``(images, labels)`` tensors, checked against the model's class count.

    Args:
        data_config: a recipe's ``data`` section (``dataset``, ``image_size``, ``val_size``, ``split_seed``).
        model_kwargs: the network's ``num_classes`` (optional) and ``in_chans`` in timm's words, as
            ``TargetConfig.image_kwargs()`` gives them for either library.

    Returns:
        ``{"train": (images, labels), "validation": ..., "test": ...}``.
    """
    return load_recipe_data(data_config, model_kwargs)[0]


def load_recipe_data(data_config: Any,
                     model_kwargs: dict) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """:func:`load_recipe_splits`'s splits and the name of each class (what a task family's card and codes name)."""
    data = load_image_dataset(data_config.dataset, val_size=data_config.val_size, seed=data_config.split_seed)
    expected = model_kwargs.get("num_classes")
    if expected is not None and num_classes(data) != expected:
        raise ValueError(f"{data_config.dataset} has {num_classes(data)} classes but the model is built with "
                         f"num_classes={expected}")
    in_chans = model_kwargs.get("in_chans", 3)
    splits = {name: dataset_to_tensors(split, image_size=data_config.image_size, in_chans=in_chans)
              for name, split in data.items()}
    return splits, dataset_class_names(data)


# ----------------------------------------------------------------------------------------------------------------
# Built-in datasets: split as numpy arrays, then one Arrow table per split
# ----------------------------------------------------------------------------------------------------------------


def _builtin_splits(key: str, *, val_size: float | int, seed: int) -> datasets.DatasetDict:
    arrays, class_names = read_builtin(key)
    images, labels = arrays["train"]
    if "test" not in arrays:
        keep, test = _split_indices(labels, _TEST_FRACTION, _TEST_SPLIT_SEED, what=f"test split of {key!r}")
        arrays["test"] = images[test], labels[test]
        images, labels = images[keep], labels[keep]
    train, val = _split_indices(labels, val_size, seed, what=f"validation split of {key!r}")
    parts = {"train": (images[train], labels[train]), "validation": (images[val], labels[val]), "test": arrays["test"]}
    features = datasets.Features({
        "image": datasets.Array2D(shape=images.shape[1:], dtype="uint8"),
        "label": datasets.ClassLabel(names=list(class_names)),
    })
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"image": _arrow_images(x), "label": pa.array(y)}, features=features,
                                          split=split)
        for split, (x, y) in parts.items()
    })


def _arrow_images(images: np.ndarray) -> pa.Array:
    """(N, H, W) pixels as nested fixed-size Arrow lists, which ``from_dict`` casts to ``Array2D`` as a whole.

    ``from_dict`` encodes numpy columns row by row (several times slower), hence Arrow arrays for both columns.
    """
    _, height, width = images.shape
    rows = pa.FixedSizeListArray.from_arrays(np.ascontiguousarray(images).reshape(-1), width)
    return pa.FixedSizeListArray.from_arrays(rows, height)


# ----------------------------------------------------------------------------------------------------------------
# Local folders and the Hub
# ----------------------------------------------------------------------------------------------------------------


def _load_raw(
    name_or_path: str, *, revision: str | None, cache_dir: str | os.PathLike[str] | None
) -> datasets.DatasetDict:
    path = Path(name_or_path).expanduser()
    cache = str(cache_dir) if cache_dir is not None else None
    builtins = ", ".join(repr(n) for n in BUILTIN_DATASETS)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(path), cache_dir=cache)
    elif path.is_file() and path.suffix == ".parquet":
        loaded = datasets.load_dataset("parquet", data_files={"train": str(path)}, cache_dir=cache)
    elif is_hub_id(name_or_path) or _is_canonical_hub_name(name_or_path):
        try:
            loaded = datasets.load_dataset(name_or_path, revision=revision, cache_dir=cache)
        except Exception as err:  # any Hub failure: unknown here; the cause is chained
            raise ValueError(
                f"Unknown dataset {name_or_path!r}: it is not a built-in dataset ({builtins}), not a local folder, "
                f"and loading it from the Hugging Face Hub failed ({type(err).__name__}: {err})."
            ) from err
    else:
        raise FileNotFoundError(
            f"No image dataset {name_or_path!r}: pass a built-in dataset name ({builtins}), an existing "
            f"save_to_disk or parquet folder or .parquet file, or a Hugging Face Hub dataset id ('org/name')."
        )
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    if not isinstance(loaded, datasets.DatasetDict):
        raise ValueError(f"{name_or_path!r} loaded as {type(loaded).__name__}, expected a Dataset or DatasetDict")
    return loaded


def _is_canonical_hub_name(name: str) -> bool:
    """A name without an org that the Hub may redirect (``"cifar10"``, ``"mnist"``): no slash, not path-like."""
    text = str(name)
    return "/" not in text and not Path(text).exists() and not text.startswith((".", "~", "\\"))


def _finalize(raw: datasets.DatasetDict, *, val_size: float | int, seed: int, source: str) -> datasets.DatasetDict:
    splits: dict[str, datasets.Dataset] = {}
    for canonical, aliases in _SPLIT_ALIASES.items():
        alias = next((a for a in aliases if a in raw), None)
        if alias is not None:
            splits[canonical] = raw[alias]
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
    """Keep only the image and label columns, named ``image`` and ``label``, with one ClassLabel for all splits."""
    out = {}
    for split_name, split in dd.items():
        where = f"{source!r} split {split_name!r}"
        image_col = find_column(split.column_names, IMAGE_COLUMNS, "image", where)
        label_col = find_column(split.column_names, LABEL_COLUMNS, "label", where)
        out[split_name] = split.select_columns([image_col, label_col]).rename_columns(
            {image_col: "image", label_col: "label"}
        )

    label_features = {name: s.features["label"] for name, s in out.items()}
    if all(isinstance(f, datasets.ClassLabel) for f in label_features.values()):
        return datasets.DatasetDict(out)
    first = next(iter(label_features.values()))
    if isinstance(first, datasets.Value) and first.dtype in ("string", "large_string"):
        # One mapping for all splits (DatasetDict.class_encode_column would encode each split on its own).
        names = sorted({str(v) for s in out.values() for v in s.unique("label") if v is not None})
        encoded = datasets.ClassLabel(names=names)
        return datasets.DatasetDict({k: s.cast_column("label", encoded) for k, s in out.items()})
    class_label = next((f for f in label_features.values() if isinstance(f, datasets.ClassLabel)), None)
    if class_label is None:
        for name, feature in label_features.items():
            if not (isinstance(feature, datasets.Value) and "int" in feature.dtype):
                raise ValueError(f"{source!r} split {name!r}: label column must hold integers or strings, "
                                 f"got {feature}")
        n_classes = max((int(label_array(s).max()) + 1 for s in out.values() if len(s)), default=0)
        class_label = datasets.ClassLabel(names=[str(i) for i in range(n_classes)])
    return datasets.DatasetDict({
        name: s if isinstance(s.features["label"], datasets.ClassLabel) else s.cast_column("label", class_label)
        for name, s in out.items()
    })


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

    scikit-learn's split rather than ``Dataset.train_test_split(stratify_by_column=...)``: the latter draws from a
    different generator (other indices for the same seed) and returns the rows shuffled. Falls back to a plain
    random split (with a warning) when stratifying is impossible, e.g. a class with a single example or fewer
    held-out rows than classes.
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
    kept, held = _split_indices(label_array(split), size, seed, what=what)
    return split.select(kept), split.select(held)
