"""subsample_splits: seeded subsets of tensor splits, in the original order, images and labels kept together."""

import pytest
import torch

from pdiff_hub.data.subsets import subsample_splits


@pytest.fixture(scope="module")
def splits():
    images = torch.randn(96, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 10, (96,), generator=torch.Generator().manual_seed(4))
    return {"train": (images[:16], labels[:16]), "validation": (images[16:56], labels[16:56]),
            "test": (images[56:], labels[56:])}


def test_subsample_splits_is_seeded_and_keeps_pairs(splits):
    cut = subsample_splits(splits, {"validation": 10, "test": 0, "missing": 5}, seed=1)
    assert cut["test"] is splits["test"] and cut["train"] is splits["train"]  # 0 and unnamed splits: unchanged
    images, labels = cut["validation"]
    assert len(images) == len(labels) == 10
    full_images, full_labels = splits["validation"]
    index = [next(i for i in range(len(full_images)) if torch.equal(full_images[i], image)) for image in images]
    assert index == sorted(index) and len(set(index)) == 10  # a subset, in the original order
    assert torch.equal(labels, full_labels[index])
    assert torch.equal(subsample_splits(splits, {"validation": 10}, seed=1)["validation"][0], images)
    assert not torch.equal(subsample_splits(splits, {"validation": 10}, seed=2)["validation"][0], images)
    assert subsample_splits(splits, {"validation": 1000})["validation"] is splits["validation"]
    with pytest.raises(ValueError, match="positive"):
        subsample_splits(splits, {"test": -1})
