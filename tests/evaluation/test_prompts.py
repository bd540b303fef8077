"""Accuracy prompts in the Table 1 evaluation: a row per prompt right after p-diff, generated in one call as
pipe(accuracy=...) generates them, judged against the originals and the baselines, with the goal stated plainly;
nothing changes for an unconditional pipeline."""

import dataclasses
import json

import pytest
import torch
from diffusers import DDIMScheduler

from pdiff_hub import PDiffPipeline
from pdiff_hub.evaluation.figures import CALIBRATION_FIGURE, FIGURES, write_figures
from pdiff_hub.evaluation.generation import generate_parameters
from pdiff_hub.evaluation.prompts import (
    automatic_prompts,
    goal_met,
    prompt_results,
    prompt_row,
    prompted_rows,
    resolve_prompts,
    standard_error,
)
from pdiff_hub.evaluation.report import render_report
from pdiff_hub.evaluation.result import EvaluationResult, Similarity
from pdiff_hub.evaluation.run import run_evaluation
from pdiff_hub.evaluation.verdicts import compare_rows

from ..components import tiny_target
from .accuracy_chain import accuracy_params, accuracy_pipeline
from .conftest import CONFIG
from .helpers import plain_accuracy, seeded, similarity, statistics

PROMPTS = [53.75, 64.75, 70.0]
ROWS = ["original", "ensemble", "p-diff", *(f"p-diff @ {a:.2f}" for a in PROMPTS), "noise 0.01", "noise 0.06",
        "average of 4", "gaussian"]


@pytest.fixture(scope="module")
def accuracy_chain(splits):
    target = tiny_target()
    params = accuracy_params(target, test_split=splits["test"])
    return accuracy_pipeline(target, params), params


@pytest.fixture(scope="module")
def prompted(accuracy_chain, splits):
    pipe, params = accuracy_chain
    return run_evaluation(pipe, params, splits, CONFIG, progress=False)


def test_a_row_per_prompt_right_after_p_diff(prompted):
    assert prompted.setup.accuracy_prompts == PROMPTS  # median, 90th percentile and maximum of the recorded ones
    assert prompted.setup.rows == list(prompted.table) == list(prompted.per_model) == ROWS
    for row in ROWS[3:6]:
        assert prompted.table[row].n == prompted.val_table[row].n == CONFIG.num_models
        assert len(prompted.per_model[row].max_iou) == len(prompted.latents[row]) == CONFIG.num_models
        assert row in prompted.similarity.rows
    assert list(prompted.verdict) == [row for row in ROWS if row != "p-diff" and "@" not in row]
    assert list(prompted.prompts) == ROWS[3:6]


def test_prompted_rows_are_what_pipe_accuracy_generates(prompted, accuracy_chain, splits):
    pipe, params = accuracy_chain
    sampler = PDiffPipeline(pipe.target, pipe.autoencoder, pipe.denoiser,
                            DDIMScheduler.from_config(pipe.scheduler.config))
    sampler.register_condition_info(**pipe.condition_info)
    sampler.set_progress_bar_config(disable=True)
    expected = sampler(num_models=CONFIG.num_models, num_inference_steps=CONFIG.num_inference_steps, output_type="pt",
                       accuracy=PROMPTS, generator=seeded(CONFIG.seed)).parameters
    rows = prompted_rows(pipe, PROMPTS, CONFIG, progress=False)
    assert list(rows) == ROWS[3:6]
    assert torch.equal(torch.cat(list(rows.values())), expected)
    unconditional = generate_parameters(pipe, CONFIG.num_models, CONFIG.num_inference_steps, CONFIG.scheduler,
                                        seeded(CONFIG.seed), progress=False)
    assert not torch.allclose(rows[ROWS[3]], unconditional)  # the prompt changes the models
    for row, vectors in {"p-diff": unconditional, **rows}.items():  # p-diff stays the null condition's samples
        accuracy = plain_accuracy(params.target, vectors, *splits["test"])
        assert prompted.per_model[row].test_accuracy == pytest.approx(accuracy.tolist(), abs=1e-3)


def test_each_prompt_is_judged_against_the_originals_and_the_baselines(prompted):
    average = "average of 4"
    for row, p in prompted.prompts.items():
        table, sim = prompted.table, prompted.similarity.rows
        assert list(p.versus) == ["original", "ensemble", average, "gaussian"]
        assert p.versus[average] == compare_rows(table[row], table[average], sim[row], sim[average])
        assert p.goal_met == (p.versus[average].mean_beats and p.versus[average].more_novel)
        assert (p.test_mean, p.best, p.mean_max_iou) == (table[row].mean, table[row].best, sim[row].max_iou.mean)
        assert p.val_mean == prompted.val_table[row].mean
        assert p.val_minus_prompted == pytest.approx(p.val_mean - p.prompted)
        assert p.test_se == pytest.approx(torch.tensor(prompted.per_model[row].test_accuracy).std().item()
                                          / CONFIG.num_models ** 0.5, rel=1e-3)
    assert prompted.prompts[ROWS[5]].condition == pytest.approx(1.785875, rel=1e-5)  # (70 - mean) / std


def test_the_report_states_the_goal_per_prompt_and_the_figure_exists(prompted, tmp_path):
    figures = write_figures(prompted, tmp_path)
    assert figures == {**FIGURES, **CALIBRATION_FIGURE}
    assert (tmp_path / "accuracy_calibration.png").stat().st_size > 0
    report = render_report(prompted, figures)
    section = report.split("## Accuracy prompts")[1].split("## Similarity")[0]
    for row, p in prompted.prompts.items():
        assert f"| **{row}** | {p.prompted:.2f} |" in section
        assert f"- {row}: **{'met' if p.goal_met else 'not met'}**" in section
    assert "beats the **average of 4** in mean test accuracy (beyond 2 SE) at a lower mean max IoU" in section
    met = sum(p.goal_met for p in prompted.prompts.values())
    assert f"The goal is {'met' if met else 'not met'}: {met} of 3 prompts." in section
    assert "![accuracy_calibration](accuracy_calibration.png)" in report


def test_metrics_json_records_the_prompts_and_reads_back(prompted, result):
    data = json.loads(json.dumps(prompted.to_dict()))
    assert data["setup"]["accuracy_prompts"] == PROMPTS and list(data["prompts"]) == ROWS[3:6]
    assert {"prompted", "val_mean", "test_mean", "test_se", "best", "mean_max_iou", "versus",
            "goal_met"} <= set(data["prompts"][ROWS[3]])
    assert EvaluationResult.from_dict(data) == prompted
    # a metrics.json written before prompts existed reads back without them
    old = result.to_dict()
    assert "prompts" not in old and "accuracy_prompts" not in old["setup"]
    assert EvaluationResult.from_dict(old) == result and result.prompts == {} and result.setup.accuracy_prompts == []


def test_an_unconditional_pipeline_gets_no_prompts(chain, splits, result):
    pipe, params = chain
    assert result.setup.rows == ["original", "ensemble", "p-diff", "noise 0.01", "noise 0.06", "average of 4",
                                 "gaussian"]
    assert "## Accuracy prompts" not in render_report(result, FIGURES)
    asked = run_evaluation(pipe, params, splits, dataclasses.replace(CONFIG, accuracy_prompts=[50.0]), progress=False)
    assert asked.prompts == {} and asked.table == result.table and asked.per_model == result.per_model


def test_prompts_given_in_the_recipe_and_the_automatic_ones(accuracy_chain, chain):
    pipe, params = accuracy_chain
    assert resolve_prompts(pipe, params, dataclasses.replace(CONFIG, accuracy_prompts=[61, 45.5])) == [61.0, 45.5]
    assert resolve_prompts(chain[0], chain[1], dataclasses.replace(CONFIG, accuracy_prompts=[61])) == []
    with pytest.raises(ValueError, match=r"evaluate.accuracy_prompts .* name the same row twice"):
        resolve_prompts(pipe, params, dataclasses.replace(CONFIG, accuracy_prompts=[61.001, 61.004]))
    assert automatic_prompts([90.0, 90.0, 90.0]) == [90.0]  # each once
    assert automatic_prompts([90.123, 91.0, 92.456]) == [91.0, 92.16, 92.46]
    assert prompt_row(90.2) == "p-diff @ 90.20"


@pytest.mark.parametrize(("mean", "max_iou", "met"), [
    (91.5, 0.4, True),    # beyond 2 SE (1.414) and less similar
    (91.4, 0.4, False),   # within 2 SE
    (91.5, 0.5, False),   # as similar
    (91.5, 0.6, False),   # more similar
    (88.5, 0.4, False),   # below
])
def test_the_goal_flips_at_each_threshold(mean, max_iou, met):
    ours, average = statistics(mean), statistics(90.0)  # std 1, n 5: 2 SE of the difference = 1.414
    verdict = compare_rows(ours, average, similarity(max_iou), similarity(0.5))
    assert goal_met(verdict) is met
    table = {"original": statistics(89.0), "p-diff @ 91.00": ours, "average of 16": average}
    sim = Similarity(None, None, None, {"original": similarity(0.5), "p-diff @ 91.00": similarity(max_iou),
                                        "average of 16": similarity(0.5)})
    info = {"accuracy_mean": 90.0, "accuracy_std": 0.5}
    result = prompt_results([91.0], info, table, None, sim, "average of 16")["p-diff @ 91.00"]
    assert result.goal_met is met and list(result.versus) == ["original", "average of 16"]
    assert result.condition == 2.0 and result.val_mean is None and result.val_minus_prompted is None


def test_standard_error_of_a_row_mean():
    assert standard_error(statistics(90.0, std=2.0, n=5)) == pytest.approx(2.0 * (5 / 4) ** 0.5 / 5 ** 0.5)
    assert standard_error(statistics(90.0, std=0.0, n=1)) is None
