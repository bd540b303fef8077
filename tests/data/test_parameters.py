"""The parameter dataset on disk: a round trip, a fingerprint that names its vectors, and damaged folders refused."""

import shutil

import pytest
import torch

from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table

from ..components import tiny_target


def make(vectors: torch.Tensor, target=None) -> ParameterDataset:
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 50.0, "test_accuracy": 50.0} for i in range(len(vectors))]
    return ParameterDataset(build_parameter_table(vectors, rows), target or tiny_target())


@pytest.fixture(scope="module")
def vectors():
    base = tiny_target().base_vector()
    return base + 0.1 * torch.randn(6, base.numel(), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def saved(vectors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("params")
    make(vectors).save(folder)
    return folder


def test_round_trip_keeps_vectors_and_fingerprint(vectors, saved):
    loaded = ParameterDataset.load(saved)
    assert torch.equal(loaded.vectors, vectors)
    assert loaded.fingerprint == make(vectors).fingerprint
    assert loaded.source == str(saved)


def test_fingerprint_follows_the_vectors_not_the_folder_or_metadata(vectors, saved, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(saved, moved)
    assert ParameterDataset.load(moved).fingerprint == ParameterDataset.load(saved).fingerprint
    changed = vectors.clone()
    changed[2, 5] += 1e-3
    assert make(changed).fingerprint != make(vectors).fingerprint
    assert make(vectors.flip(0)).fingerprint != make(vectors).fingerprint  # the row order is part of the data
    assert len(make(vectors).fingerprint) == 64


def test_nan_and_infinite_rows_are_named(vectors, tmp_path):
    bad = vectors.clone()
    bad[1, 0], bad[4, 3] = float("nan"), float("inf")
    make(bad).save(tmp_path)
    with pytest.raises(ValueError, match=r"Rows 1, 4 of the parameter dataset at .* hold NaN or infinite values"):
        ParameterDataset.load(tmp_path)


def test_a_damaged_table_is_one_sentence(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    arrow = next((broken / "dataset").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:200])
    with pytest.raises(OSError, match="cannot be read .*re-collect it") as info:
        ParameterDataset.load(broken)
    assert "\n" not in str(info.value)


def test_a_folder_without_its_table_is_refused(saved, tmp_path):
    broken = tmp_path / "p"
    shutil.copytree(saved, broken)
    shutil.rmtree(broken / "dataset")
    with pytest.raises(FileNotFoundError, match="no dataset/ folder"):
        ParameterDataset.load(broken)


def make_family(vectors: torch.Tensor, codes: list[str], heldout: list[str]) -> ParameterDataset:
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": 90.0, "test_accuracy": 90.0} for i in range(len(vectors))]
    tasks = [codes[i % len(codes)] for i in range(len(vectors))]
    info = {"num_classes": len(codes[0]), "train": codes, "heldout": heldout, "seed": 0}
    return ParameterDataset(build_parameter_table(vectors, rows, tasks), tiny_target(), task_info=info)


def test_a_task_family_keeps_codes_conditions_and_split(vectors, tmp_path):
    family = make_family(vectors, ["0110", "1000", "0011"], ["1100"])
    family.save(tmp_path)
    loaded = ParameterDataset.load(tmp_path)
    assert loaded.is_task_family and loaded.tasks == ["0110", "1000", "0011"] * 2
    assert torch.equal(loaded.conditions[0], torch.tensor([0.0, 1.0, 1.0, 0.0]))
    assert loaded.conditions.dtype == torch.float32 and loaded.conditions.shape == (6, 4)
    assert loaded.task_split.heldout == ["1100"] and loaded.task_split.train == ["0110", "1000", "0011"]
    assert loaded.fingerprint == family.fingerprint
    # The same vectors under other codes are other training data; the same vectors without codes too.
    assert family.fingerprint != make_family(vectors, ["1000", "0110", "0011"], ["1100"]).fingerprint
    assert family.fingerprint != make(vectors).fingerprint
    assert not make(vectors).is_task_family and make(vectors).conditions is None


def test_a_task_family_whose_rows_and_record_disagree_is_refused(vectors, tmp_path):
    with pytest.raises(ValueError, match="not the training tasks"):
        make_family(vectors, ["0110", "1000", "0011"], ["0110"])  # a held-out code among the rows
    family = make_family(vectors, ["0110", "1000", "0011"], ["1100"])
    family.save(tmp_path)
    (tmp_path / "tasks.json").unlink()
    with pytest.raises(ValueError, match="task column but no tasks.json"):
        ParameterDataset.load(tmp_path)
