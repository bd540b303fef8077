"""The task family: codes, seeded draws and splits, labels, conditions and Hamming neighbours."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.data.tasks import (
    binary_labels,
    check_code,
    hamming_distances,
    nearest_tasks,
    num_tasks_possible,
    positive_classes,
    sample_task_codes,
    split_tasks,
    task_accuracy,
    task_conditions,
)


def test_sampled_codes_are_distinct_proper_subsets_and_seeded():
    codes = sample_task_codes(300, 10, seed=0)
    assert len(codes) == len(set(codes)) == 300
    assert all(len(c) == 10 and set(c) == {"0", "1"} for c in codes)  # neither the empty nor the full set
    assert codes == sample_task_codes(300, 10, seed=0)
    assert codes != sample_task_codes(300, 10, seed=1)


def test_every_task_can_be_drawn_and_no_more():
    assert num_tasks_possible(3) == 6
    assert sorted(sample_task_codes(6, 3, seed=4)) == ["001", "010", "011", "100", "101", "110"]
    with pytest.raises(ValueError, match="Cannot draw 7 distinct tasks over 3 classes: there are 6"):
        sample_task_codes(7, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        sample_task_codes(1, 1)


def test_split_is_seeded_disjoint_and_keeps_order():
    codes = sample_task_codes(50, 10, seed=0)
    split = split_tasks(codes, 10, seed=3)
    assert len(split.train) == 40 and len(split.heldout) == 10
    assert set(split.train) | set(split.heldout) == set(codes) and not set(split.train) & set(split.heldout)
    assert split.train == [c for c in codes if c in split.train]  # order of the input
    assert split == split_tasks(codes, 10, seed=3)
    assert split.heldout != split_tasks(codes, 10, seed=4).heldout


@pytest.mark.parametrize("num_heldout", [-1, 3])
def test_split_keeps_a_training_task(num_heldout):
    with pytest.raises(ValueError, match="keep at least one for training"):
        split_tasks(["011", "100", "110"], num_heldout)


def test_split_refuses_repeats_and_bad_codes():
    with pytest.raises(ValueError, match="repeats"):
        split_tasks(["0110", "0110", "1000"], 1)
    with pytest.raises(ValueError, match="has 3 characters; the dataset has 4 classes"):
        split_tasks(["0110", "011"], 1)


@pytest.mark.parametrize(("code", "message"), [
    ("0000", "every image negative"), ("1111", "every image positive"), ("01a0", "string of 0s and 1s"),
    ("", "string of 0s and 1s"),
])
def test_bad_codes_are_named(code, message):
    with pytest.raises(ValueError, match=message):
        check_code(code)


def test_labels_conditions_and_positive_classes():
    labels = torch.tensor([0, 1, 2, 3, 9, 1])
    code = "0110000001"
    assert binary_labels(labels, code).tolist() == [0, 1, 1, 0, 1, 1]
    assert binary_labels(labels, code).dtype == torch.int64
    assert positive_classes(code) == [1, 2, 9]
    assert task_conditions(code).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    assert task_conditions([code, "1000000000"]).shape == (2, 10)
    with pytest.raises(ValueError, match=r"Class labels must lie in \[0, 2\]"):
        binary_labels(labels, "011")


def test_task_accuracy_compares_each_row_with_its_own_task():
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0]])
    assert task_accuracy(predictions, labels, ["0110", "1001"]).tolist() == [100.0, 0.0]
    with pytest.raises(ValueError, match="Expected predictions of shape"):
        task_accuracy(predictions, labels, ["0110"])


def test_hamming_distances_and_nearest_tasks():
    train = ["1100", "1000", "0011", "0100"]
    assert hamming_distances(["1100"], train).tolist() == [[0, 1, 4, 1]]
    # "1110" is 1 from "1100", 2 from "1000" and "0100": the tie breaks towards the earlier training task.
    assert nearest_tasks(["1110", "0011"], train, k=3).tolist() == [[0, 1, 3], [2, 1, 3]]
    with pytest.raises(ValueError, match="Cannot take the 5 nearest of 4"):
        nearest_tasks(["1110"], train, k=5)
    assert hamming_distances([], train).shape == (0, 4)
