"""One split of an image classification dataset as tensors: normalized float images and int64 labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import datasets
import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ["DEFAULT_MEAN", "DEFAULT_STD", "IMAGE_COLUMNS", "LABEL_COLUMNS", "class_names", "dataset_to_tensors",
           "num_classes"]

#: Accepted image column names, in order of preference; the chosen one is renamed to ``image``.
IMAGE_COLUMNS: tuple[str, ...] = ("image", "img", "pixel_values")
#: Accepted label column names, in order of preference; the chosen one is renamed to ``label``.
LABEL_COLUMNS: tuple[str, ...] = ("label", "labels", "fine_label")
#: Normalization used by :func:`dataset_to_tensors` when ``mean``/``std`` are not given: maps [0, 1] to [-1, 1].
DEFAULT_MEAN: float = 0.5
DEFAULT_STD: float = 0.5


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
    ``in_chans`` channels (PIL images with ``convert("L")``/``convert("RGB")``, pixel arrays with torchvision's
    grayscale conversions, alpha dropped), resized to ``image_size`` x ``image_size`` with bilinear interpolation
    (antialiased when shrinking) and normalized as ``(x - mean) / std``, by default with 0.5/0.5
    (:data:`DEFAULT_MEAN`, :data:`DEFAULT_STD`), which maps [0, 1] to [-1, 1].

    Works with :class:`datasets.Image` columns, ``Array2D``/``Array3D`` columns and nested lists. Images of
    different sizes are allowed. Channels-last (H, W, C) and channels-first (C, H, W) pixel arrays are recognized by
    a channel dimension of size 1 to 4.

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

    image_col = find_column(split.column_names, IMAGE_COLUMNS, "image")
    label_col = find_column(split.column_names, LABEL_COLUMNS, "label")
    labels = torch.from_numpy(label_array(split, label_col))

    images = torch.empty((len(split), in_chans, image_size, image_size), dtype=torch.float32)
    for start, batch in _pixel_batches(split, image_col, batch_size, in_chans):
        if isinstance(batch, np.ndarray) and batch.dtype != object:  # one size: convert and resize together
            images[start : start + len(batch)] = _resize(_to_chw(batch, in_chans), image_size)
        else:
            for i, pixels in enumerate(batch):
                images[start + i] = _resize(_to_chw(np.asarray(pixels)[None], in_chans), image_size)[0]
    return TF.normalize(images, [mean] * in_chans, [std] * in_chans, inplace=True), labels


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
    label_col = find_column(splits[0].column_names, LABEL_COLUMNS, "label")
    feature = splits[0].features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        return int(feature.num_classes)
    maxima = [int(label_array(s, label_col).max()) for s in splits if len(s)]
    if not maxima:
        raise ValueError("cannot infer the number of classes of an empty dataset without a ClassLabel feature")
    return max(maxima) + 1


def find_column(columns: Sequence[str], accepted: Sequence[str], kind: str, where: str = "dataset") -> str:
    """The first of ``accepted`` in ``columns``; a ``ValueError`` naming the columns there are otherwise."""
    for name in accepted:
        if name in columns:
            return name
    raise ValueError(f"{where} has no {kind} column: expected one of {list(accepted)}, found columns {list(columns)}")


def label_array(split: datasets.Dataset, column: str = "label") -> np.ndarray:
    """One integer column as an int64 array of shape (N,), reading only that column."""
    return np.asarray(split.select_columns([column]).with_format("numpy")[:][column], dtype=np.int64).reshape(-1)


def _pixel_batches(
    split: datasets.Dataset, column: str, batch_size: int, in_chans: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, pixels)``: one array (B, ...) when the batch's images share a shape, else an object array."""
    feature = split.features[column]
    only = split.select_columns([column])
    numpy_kwargs = {}
    if isinstance(feature, datasets.Image):
        only = only.cast_column(column, datasets.Image(mode="L" if in_chans == 1 else "RGB"))
        numpy_kwargs = {"dtype": np.uint8}
    elif isinstance(feature, (datasets.Array2D, datasets.Array3D)):
        numpy_kwargs = {"dtype": feature.dtype}  # the numpy format widens integers to int64 otherwise
    rows = only.with_format("numpy", **numpy_kwargs)
    for start in range(0, len(split), batch_size):
        yield start, rows[start : start + batch_size][column]


def _to_chw(pixels: np.ndarray, in_chans: int) -> torch.Tensor:
    """Pixels (B, H, W), (B, H, W, C) or (B, C, H, W) -> float32 (B, in_chans, H, W) in [0, 1]."""
    if pixels.ndim not in (3, 4):
        raise ValueError(
            f"expected each image to have 2 (H, W) or 3 (H, W, C or C, H, W) dimensions, got {pixels.ndim - 1} "
            f"(array shape {pixels.shape})"
        )
    if pixels.dtype == object:
        raise ValueError(f"cannot convert an image array of dtype object (shape {pixels.shape})")
    x = torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy())  # torch warns on read-only Arrow memory
    x = x.float() if x.is_floating_point() or x.dtype == torch.bool else x.float().div_(255.0)
    if pixels.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] <= 4:
        x = x.permute(0, 3, 1, 2)
    elif x.shape[1] > 4:
        raise ValueError(f"cannot find the channel dimension (size 1 to 4) of images with shape {pixels.shape}")
    if x.shape[1] in (2, 4):  # drop alpha (LA, RGBA)
        x = x[:, :-1]
    if x.shape[1] == 3 and in_chans == 1:
        x = TF.rgb_to_grayscale(x)
    elif x.shape[1] == 1 and in_chans == 3:
        x = TF.grayscale_to_rgb(x)
    return x.contiguous()


def _resize(x: torch.Tensor, image_size: int) -> torch.Tensor:
    # Antialias only when shrinking: enlarging with the antialiased kernel changes the last bits of the pixels
    # every recorded result was computed with.
    shrinking = x.shape[-2] > image_size or x.shape[-1] > image_size
    return TF.resize(x, [image_size, image_size], antialias=shrinking)


def class_names(dataset: datasets.Dataset | datasets.DatasetDict) -> list[str]:
    """The name of each class: the label column's :class:`datasets.ClassLabel` names, else the class indices as text."""
    split = next(iter(dataset.values())) if isinstance(dataset, datasets.DatasetDict) else dataset
    feature = split.features[find_column(split.column_names, LABEL_COLUMNS, "label")]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    return [str(i) for i in range(num_classes(dataset))]
