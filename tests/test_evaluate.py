"""Evaluation: similarity measures, the critique's baselines, Table 1 and the report."""

import json
import math

import pytest
import torch

from pdiff_hub.data.parameters import ParameterDataset, build_parameter_table
from pdiff_hub.evaluation.evaluate import (
    ParameterEvaluator,
    max_iou,
    mean_iou_between,
    mean_pairwise_iou,
    nearest_l2,
    noise_added,
    per_coordinate_gaussian,
    random_averages,
    run_evaluation,
    subsample_splits,
    summarize,
    weight_average,
    wrong_prediction_iou,
)
from pdiff_hub.evaluation.report import FIGURES, render_report, write_figures
from pdiff_hub.recipes.config import EvaluateConfig

from .components import tiny_pipeline, tiny_target
from .scripts import run_script

A = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
B = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
TABLE_KEYS = {"best", "mean", "median", "std", "min", "max", "n"}


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- similarity


def test_wrong_prediction_iou_on_hand_made_sets():
    expected = torch.tensor([[1 / 3, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # two perfect models: IoU 1
    torch.testing.assert_close(wrong_prediction_iou(A, B), expected)
    assert mean_pairwise_iou(B) == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert mean_iou_between(A, B) == pytest.approx(expected.mean().item())
    torch.testing.assert_close(max_iou(A, B), torch.tensor([1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(max_iou(B, B, exclude_self=True), torch.tensor([1 / 3, 0, 1 / 3], dtype=torch.float64))


def test_wrong_prediction_iou_matches_set_arithmetic():
    a = torch.rand(7, 300, generator=seeded(1)) < 0.2
    b = torch.rand(5, 300, generator=seeded(2)) < 0.3
    iou = wrong_prediction_iou(a, b)
    for i in range(7):
        for j in range(5):
            x, y = set(a[i].nonzero().flatten().tolist()), set(b[j].nonzero().flatten().tolist())
            assert iou[i, j].item() == pytest.approx(len(x & y) / len(x | y))


def test_similarity_shape_errors():
    with pytest.raises(ValueError, match="wrong-prediction"):
        wrong_prediction_iou(A, B[:, :3])
    with pytest.raises(ValueError, match="exclude_self"):
        max_iou(A, B, exclude_self=True)
    with pytest.raises(ValueError, match="at least 2"):
        mean_pairwise_iou(A[:1])


def test_nearest_l2_with_and_without_self():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    torch.testing.assert_close(nearest_l2(points, points), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(nearest_l2(points, points, exclude_self=True),
                               torch.tensor([1.0, math.sqrt(18), 1.0], dtype=torch.float64))
    torch.testing.assert_close(nearest_l2(torch.tensor([[0.0, 2.0]]), points), torch.tensor([1.0], dtype=torch.float64))


def test_nearest_l2_resolves_tiny_differences_between_large_vectors():
    # Checkpoints of BatchNorm weights near 1 that differ by 1e-4: float32 cdist would return noise here.
    base = 1.0 + torch.rand(2048, generator=seeded(0))
    offsets = 1e-4 * torch.randn(30, 2048, generator=seeded(1))
    vectors = base + offsets
    expected = torch.cdist(offsets.double(), offsets.double()).fill_diagonal_(float("inf")).min(1).values
    torch.testing.assert_close(nearest_l2(vectors, vectors, exclude_self=True), expected, rtol=1e-3, atol=0)


# ---------------------------------------------------------------------------------------------------- baselines


def test_noise_added_uses_every_original_once_with_absolute_noise():
    originals = torch.randn(6, 4000, generator=seeded(0))
    copies = noise_added(originals, 0.0, generator=seeded(1))
    assert copies.shape == originals.shape
    assert sorted(map(tuple, copies.tolist())) == sorted(map(tuple, originals.tolist()))
    noisy = noise_added(originals, 0.06, num=9, generator=seeded(1))
    assert noisy.shape == (9, 4000)
    nearest = torch.cdist(noisy, originals).argmin(1)
    residual = noisy - originals[nearest]
    assert residual.std().item() == pytest.approx(0.06, rel=0.02)
    assert len(set(nearest[:6].tolist())) == 6  # a full pass over the originals before any repeats
    torch.testing.assert_close(noise_added(originals, 0.06, num=9, generator=seeded(1)), noisy)


def test_random_averages_average_distinct_originals():
    k = 20
    averages = random_averages(torch.eye(k) * 16, 16, num=50, generator=seeded(0))
    assert averages.shape == (50, k)
    # each row averages 16 distinct one-hot originals: 16 ones, 4 zeros
    assert torch.equal((averages > 0).sum(1), torch.full((50,), 16))
    torch.testing.assert_close(averages[averages > 0], torch.ones(50 * 16))
    originals = torch.randn(k, 5, generator=seeded(1))
    hull = random_averages(originals, 4, num=200, generator=seeded(2))
    assert (hull >= originals.min(0).values - 1e-6).all() and (hull <= originals.max(0).values + 1e-6).all()
    torch.testing.assert_close(hull.mean(0), originals.mean(0), atol=0.1, rtol=0)
    with pytest.raises(ValueError, match="average_size"):
        random_averages(originals, 21, num=3)


def test_per_coordinate_gaussian_matches_each_coordinate():
    originals = torch.randn(40, 6, generator=seeded(0)) * torch.tensor([0.01, 0.1, 1, 2, 5, 0.5]) + torch.arange(6)
    samples = per_coordinate_gaussian(originals, num=20000, generator=seeded(1))
    assert samples.shape == (20000, 6)
    torch.testing.assert_close(samples.mean(0), originals.mean(0), rtol=0, atol=0.05 * originals.std(0).max().item())
    torch.testing.assert_close(samples.std(0), originals.std(0), rtol=0.03, atol=0)
    # coordinates are independent
    assert torch.corrcoef(samples.T).fill_diagonal_(0).abs().max() < 0.05


def test_weight_average_is_one_model():
    originals = torch.randn(7, 3, generator=seeded(0))
    average = weight_average(originals)
    assert average.shape == (1, 3)
    torch.testing.assert_close(average[0], originals.mean(0))


def test_summarize_picks_best_by_validation():
    stats = summarize([90.0, 91.0, 92.0, 89.0], acc_val=[80.0, 85.0, 70.0, 85.0])
    assert stats["best"] == 91.0  # highest validation (first of the tie), not the highest test (92)
    assert stats == {"best": 91.0, "mean": 90.5, "median": 90.5, "std": pytest.approx(1.118, abs=1e-3),
                     "min": 89.0, "max": 92.0, "n": 4}
    assert summarize(torch.tensor([90.0, 92.0, 91.0]))["best"] == 92.0
    assert summarize([93.0])["std"] == 0.0
    with pytest.raises(ValueError, match="validation"):
        summarize([1.0, 2.0], acc_val=[1.0])


# ---------------------------------------------------------------------------------------------------- the run


def make_params(target, num=12, seed=0, splits=None):
    base = target.base_vector()
    vectors = base + 0.2 * torch.randn(num, base.numel(), generator=seeded(seed))
    if splits is None:
        acc = {"validation": torch.zeros(num), "test": torch.zeros(num)}
    else:
        acc = {name: ParameterEvaluator(target.model, target.layout, *splits[name]).accuracy(vectors)
               for name in ("validation", "test")}
    rows = [{"step": i, "seed": 0, "lr": 0.1, "val_accuracy": float(acc["validation"][i]),
             "test_accuracy": float(acc["test"][i])} for i in range(num)]
    return ParameterDataset(build_parameter_table(vectors, rows), target)


@pytest.fixture(scope="module")
def splits():
    images = torch.randn(96, 1, 32, 32, generator=seeded(3))
    labels = torch.randint(0, 10, (96,), generator=seeded(4))
    return {"train": (images[:16], labels[:16]), "validation": (images[16:56], labels[16:56]),
            "test": (images[56:], labels[56:])}


@pytest.fixture(scope="module")
def setup(splits):
    target = tiny_target()
    params = make_params(target, splits=splits)
    pipe = tiny_pipeline(target)
    pipe.autoencoder.fit_normalization(params.vectors)
    return pipe, params


CONFIG = EvaluateConfig(num_models=5, num_inference_steps=2, noise_amplitudes=[0.01, 0.06], average_size=4)


@pytest.fixture(scope="module")
def metrics(setup, splits):
    pipe, params = setup
    return run_evaluation(pipe, params, splits, CONFIG, progress=False)


def test_run_evaluation_returns_every_row_and_key(metrics):
    rows = ["original", "ensemble", "p-diff", "noise 0.01", "noise 0.06", "average of 4", "gaussian"]
    assert metrics["setup"]["rows"] == rows
    assert list(metrics["table"]) == rows
    for row in rows:
        assert set(metrics["table"][row]) == TABLE_KEYS
        n = metrics["table"][row]["n"]
        assert n == {"original": 12, "ensemble": 1}.get(row, 5)
        per_model = metrics["per_model"][row]
        assert all(len(per_model[key]) == n for key in ("test_accuracy", "val_accuracy", "max_iou", "nearest_l2"))
        assert len(metrics["latents"][row]) == n and len(metrics["latents"][row][0]) == 16
        sim = metrics["similarity"]["rows"][row]
        assert set(sim) == {"max_iou", "nearest_l2", "mean_iou_within", "mean_iou_to_originals"}
        assert 0.0 <= sim["max_iou"]["min"] <= sim["max_iou"]["max"] <= 1.0
    assert set(metrics["verdict"]) == set(rows) - {"p-diff"}
    assert set(metrics["verdict"]["gaussian"]) == {"mean_beats", "mean_within_2se", "mean_margin", "best_beats",
                                                   "best_margin", "more_novel", "max_iou_margin"}
    for key in ("mean_iou_among_originals", "mean_iou_among_generated", "mean_iou_between"):
        assert 0.0 <= metrics["similarity"][key] <= 1.0
    assert metrics["similarity"]["rows"]["original"]["nearest_l2"]["min"] > 0  # self excluded
    assert metrics["checks"]["max_recorded_vs_recomputed_test_accuracy"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["setup"]["best_selected_by"] == "validation"
    nearest = metrics["checks"]["latent_nearest_original"]
    latents = {row: torch.tensor(metrics["latents"][row]) for row in ("original", "p-diff")}
    expected = torch.cdist(latents["p-diff"], latents["original"]).min(dim=1).values.mean()
    assert nearest["p-diff"] == pytest.approx(expected.item(), rel=1e-3)
    assert 0 < nearest["original"] < float("inf")
    assert {"generation_s", "evaluate_validation_s", "evaluate_test_s", "total_s"} <= set(metrics["timings"])
    assert json.loads(json.dumps(metrics)) == metrics  # JSON-safe


def test_run_evaluation_is_consistent_with_the_evaluator(metrics, setup, splits):
    pipe, params = setup
    test_acc = ParameterEvaluator(params.target.model, params.target.layout, *splits["test"]).accuracy(params.vectors)
    assert metrics["per_model"]["original"]["test_accuracy"] == pytest.approx(test_acc.tolist(), abs=1e-3)
    assert metrics["table"]["original"]["mean"] == pytest.approx(test_acc.double().mean().item(), abs=1e-4)
    assert metrics["table"]["ensemble"]["n"] == 1


def test_run_evaluation_without_validation_and_with_ddpm(setup, splits):
    pipe, params = setup
    config = EvaluateConfig(num_models=2, num_inference_steps=2, scheduler="ddpm", noise_amplitudes=[0.1],
                            average_size=3)
    result = run_evaluation(pipe, params, {"test": splits["test"]}, config, progress=False)
    assert result["setup"]["best_selected_by"].startswith("test")
    assert result["val_table"] is None and result["per_model"]["p-diff"]["val_accuracy"] is None
    assert result["table"]["p-diff"]["best"] == result["table"]["p-diff"]["max"]
    assert pipe.scheduler.__class__.__name__ == "DDPMScheduler"  # the pipeline itself is left as it was


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


def test_run_evaluation_on_a_test_subset(setup, splits):
    pipe, params = setup
    config = EvaluateConfig(num_models=2, num_inference_steps=2, noise_amplitudes=[0.1], average_size=3,
                            val_images=20, test_images=30)
    result = run_evaluation(pipe, params, splits, config, progress=False)
    assert result["setup"]["split_sizes"] == {"validation": 20, "test": 30}
    assert result["setup"]["full_split_sizes"] == {"validation": 40, "test": 40}
    assert result["checks"]["max_recorded_vs_recomputed_test_accuracy"] is None  # recorded on the whole split
    subset = subsample_splits(splits, {"test": 30}, seed=config.seed)["test"]
    expected = ParameterEvaluator(params.target.model, params.target.layout, *subset).accuracy(params.vectors)
    assert result["per_model"]["original"]["test_accuracy"] == pytest.approx(expected.tolist(), abs=1e-3)
    assert "test 30 (a random subset of 40)" in render_report(result, {})


def test_report_renders_with_figures(metrics, tmp_path):
    figures = write_figures(json.loads(json.dumps(metrics)), tmp_path)
    assert figures == FIGURES
    for file in figures.values():
        assert (tmp_path / file).stat().st_size > 10_000
    report = render_report(metrics, figures)
    assert "| **p-diff** |" in report and "| original |" in report
    for file in figures.values():
        assert f"]({file})" in report
    for row, verdict in metrics["verdict"].items():
        line = next(line for line in report.splitlines() if line.startswith(f"- vs **{row}**"))
        # a higher mean counts as beating the row only beyond two standard errors
        assert ("mean is higher" in line and "within 2 SE" not in line) == verdict["mean_beats"]
        assert ("best is higher" in line) == verdict["best_beats"]


def other_layout():
    return tiny_target(patterns=["layer4.*.bn1"])


def other_model():
    return tiny_target("test_convnext", ["stages.3.*norm*"])


def other_frozen_weights():
    target = tiny_target()
    with torch.no_grad():
        target.model.get_parameter("conv1.0.weight").add_(1.0)
    return target


@pytest.mark.parametrize("make_target, match", [(other_layout, "layout"), (other_model, "test_convnext"),
                                                (other_frozen_weights, "frozen weights")])
def test_run_evaluation_rejects_another_network(setup, splits, make_target, match):
    pipe, _ = setup
    with pytest.raises(ValueError, match=match):
        run_evaluation(pipe, make_params(make_target()), splits, CONFIG, progress=False)


def test_run_evaluation_errors(setup, splits):
    pipe, params = setup
    with pytest.raises(ValueError, match="num_models"):
        run_evaluation(pipe, params, splits, EvaluateConfig(num_models=0), progress=False)
    with pytest.raises(ValueError, match="'test' split"):
        run_evaluation(pipe, params, {"validation": splits["validation"]}, CONFIG, progress=False)
    with pytest.raises(ValueError, match="scheduler"):
        run_evaluation(pipe, params, splits, EvaluateConfig(num_models=2, scheduler="euler"), progress=False)


# ---------------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_evaluate_script_end_to_end_on_digits(tmp_path):
    params = tmp_path / "params"
    run_script("collect", "--recipe", "digits-mlp", "--collect.base_epochs", "3", "--collect.num_checkpoints", "20",
               "--output_dir", str(params))
    pipe = tmp_path / "pipe"
    run_script("train", "--recipe", "digits-mlp", "--param_dataset", str(params), "--output_dir", str(pipe),
               "--train.autoencoder_steps", "30", "--train.diffusion_steps", "30", "--skip_eval")
    out = tmp_path / "eval"
    result = run_script("evaluate", "--pipeline", str(pipe), "--param_dataset", str(params), "--num_models", "8",
                        "--evaluate.num_inference_steps", "5", "--output_dir", str(out))
    assert {"metrics.json", "report.md", "args.yaml", *FIGURES.values()} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["setup"]["num_models"] == 8 and metrics["table"]["p-diff"]["n"] == 8
    assert metrics["checks"]["max_recorded_vs_recomputed_test_accuracy"] < 1e-3  # same splits as the collection
    assert "p-diff" in result.stdout and "report.md" in result.stdout
    again = run_script("evaluate", "--pipeline", str(pipe), "--param_dataset", str(params), "--output_dir", str(out),
                       check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
