"""The held-out task evaluation on a tiny task family: every number is what the building blocks give."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch

from pdiff_hub.core.layout import ParameterLayout
from pdiff_hub.data.subsets import subsample_splits
from pdiff_hub.data.tasks import binary_labels, task_accuracy, task_conditions, task_seed
from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.fitting import fit_generated_parameters
from pdiff_hub.engine.split import FrozenPrefixSplit
from pdiff_hub.evaluation.generation import generate_parameters
from pdiff_hub.evaluation.metrics import summarize
from pdiff_hub.evaluation.task_baselines import (
    RidgeTaskMap,
    coordinates_of,
    gaussian_of_checkpoints,
    nearest_task_average,
    nearest_task_checkpoints,
)
from pdiff_hub.evaluation.task_result import (
    AVERAGE,
    COLLECTED,
    GAUSSIAN,
    GENERATED,
    HEAD_RIDGE,
    NEAREST,
    RIDGE,
    SGD,
)
from pdiff_hub.evaluation.task_run import (
    head_parameter_names,
    run_task_evaluation,
    sgd_reference,
    training_tasks_to_evaluate,
)

from ..components import tiny_pipeline
from .task_family import RECIPE, task_chain, task_result


@pytest.fixture(scope="module")
def chain():
    return task_chain()


@pytest.fixture(scope="module")
def result():
    return task_result()


def _measured(params, splits, vectors, codes):
    """Each (Q, m, D) model's (test, validation) accuracy on its own task, straight from the engine."""
    subsets = subsample_splits(splits, {"validation": RECIPE.evaluate.val_images, "test": RECIPE.evaluate.test_images},
                               RECIPE.evaluate.seed)
    tasks = [c for c in codes for _ in range(vectors.shape[1])]
    out = []
    for split in ("test", "validation"):
        images, labels = subsets[split]
        evaluator = ParameterEvaluator(params.target.model, params.target.layout, images, labels)
        predictions = evaluator.predictions(vectors.reshape(-1, vectors.shape[-1]))
        out.append(task_accuracy(predictions, labels, tasks).reshape(vectors.shape[:2]))
    return out


def _assert_rows(rows, method, codes, test, val):
    for i, code in enumerate(codes):
        row = next(r for r in rows if r.code == code)
        stats = summarize(test[i], val[i])
        assert row.methods[method].n == test.shape[1]
        assert row.methods[method].mean == pytest.approx(stats.mean, abs=1e-3)
        assert row.methods[method].best == pytest.approx(stats.best, abs=1e-3)


def test_every_method_for_every_heldout_task_and_training_tasks(chain, result):
    _, params, _ = chain
    split = params.task_split
    assert [r.code for r in result.heldout] == split.heldout
    assert result.setup.methods == [GENERATED, SGD, NEAREST, AVERAGE, GAUSSIAN, RIDGE, HEAD_RIDGE]
    counts = {GENERATED: 3, SGD: 3, NEAREST: 3, AVERAGE: 1, GAUSSIAN: 3, RIDGE: 1, HEAD_RIDGE: 1}
    assert all({m: a.n for m, a in row.methods.items()} == counts for row in result.heldout)
    assert [r.code for r in result.training] == training_tasks_to_evaluate(split.train, 4, RECIPE.evaluate.seed)
    assert all(set(r.methods) == {GENERATED, COLLECTED} for r in result.training)
    s = result.setup
    assert (s.num_heldout_tasks, s.num_train_tasks, s.num_training_tasks_evaluated) == (4, 10, 4)
    assert s.guidance_scale == 1.5 and s.nearest_k == 3 and s.head_names == ["3.weight", "3.bias"]
    assert s.split_sizes == {"validation": 50, "test": 80} and s.full_split_sizes["validation"] == 60
    assert s.sgd["keep"] == [2, 4, 6] and s.backbone["backbone_test_accuracy"] == 97.5 and "train" not in s.backbone


def test_sgd_reference_is_the_collections_fit(chain, result):
    _, params, splits = chain
    prefix = FrozenPrefixSplit.from_model(params.target.model, params.target.layout.names)
    codes = params.task_split.heldout[:2]
    vectors, seconds, features_s = sgd_reference(prefix, *splits["train"], codes, RECIPE, progress=False)
    assert vectors.shape == (2, 3, params.target.layout.num_params) and set(seconds) == set(codes)
    assert features_s >= 0 and all(s > 0 for s in seconds.values())
    features = prefix.compute_prefix(splits["train"][0])
    init = {n: p.detach().clone() for n, p in params.target.model.named_parameters()}
    for i, code in enumerate(codes):
        fit = fit_generated_parameters(prefix, features, binary_labels(splits["train"][1], code), init, keep=[2, 4, 6],
                                       lr=0.05, batch_size=16,
                                       generator=torch.Generator().manual_seed(task_seed(RECIPE.tasks.seed, code)))
        assert torch.equal(vectors[i], fit.vectors)
    # the common start is left as it was: the network's generated values are still the base vector
    assert torch.equal(params.target.layout.flatten(init), params.target.base_vector())
    everything = sgd_reference(prefix, *splits["train"], params.task_split.heldout, RECIPE, progress=False)[0]
    _assert_rows(result.heldout, SGD, params.task_split.heldout, *_measured(params, splits, everything,
                                                                             params.task_split.heldout))
    assert set(result.timing.sgd_s) == set(params.task_split.heldout)


def test_baselines_are_what_the_functions_give(chain, result):
    _, params, splits = chain
    heldout, vectors, tasks = params.task_split.heldout, params.vectors, params.tasks
    head = coordinates_of(params.target.layout, ["3.weight", "3.bias"])
    ridge = RidgeTaskMap().fit(vectors, tasks)
    head_ridge = RidgeTaskMap(coordinates=head, base=params.target.base_vector()).fit(vectors, tasks)
    answers = {
        NEAREST: nearest_task_checkpoints(vectors, tasks, heldout),
        AVERAGE: nearest_task_average(vectors, tasks, heldout, k=3),
        GAUSSIAN: gaussian_of_checkpoints(vectors, heldout, num=3, generator=torch.Generator().manual_seed(1)),
        RIDGE: ridge(heldout),
        HEAD_RIDGE: head_ridge(heldout),
    }
    for method, answer in answers.items():
        _assert_rows(result.heldout, method, heldout, *_measured(params, splits, answer, heldout))
    assert result.ridge_alphas == {RIDGE: ridge.alpha, HEAD_RIDGE: head_ridge.alpha}


def test_generated_models_are_one_seeded_guided_call_and_training_tasks_use_their_checkpoints(chain, result):
    pipe, params, splits = chain
    heldout, chosen = params.task_split.heldout, [r.code for r in result.training]
    generated = generate_parameters(pipe, 3, 2, "ddim", torch.Generator().manual_seed(0), progress=False,
                                    condition=task_conditions(heldout), guidance_scale=1.5).reshape(4, 3, -1)
    _assert_rows(result.heldout, GENERATED, heldout, *_measured(params, splits, generated, heldout))
    trained = generate_parameters(pipe, 3, 2, "ddim", torch.Generator().manual_seed(2), progress=False,
                                  condition=task_conditions(chosen), guidance_scale=1.5).reshape(len(chosen), 3, -1)
    _assert_rows(result.training, GENERATED, chosen, *_measured(params, splits, trained, chosen))
    rows = [[i for i, t in enumerate(params.tasks) if t == code] for code in chosen]
    collected = torch.stack([params.vectors[r] for r in rows])
    _assert_rows(result.training, COLLECTED, chosen, *_measured(params, splits, collected, chosen))


def test_summary_differences_and_timing_follow_the_per_task_numbers(result):
    for method, summary in result.summary.items():
        means = np.array([r.methods[method].mean for r in result.heldout])
        assert summary.mean == pytest.approx(means.mean(), abs=1e-3) and summary.n == 4
        assert summary.se == pytest.approx(means.std(ddof=1) / 2, abs=1e-3)
        assert summary.min == pytest.approx(means.min(), abs=1e-3)
    generated = np.array([r.methods[GENERATED].mean for r in result.heldout])
    for method in (SGD, NEAREST, RIDGE, HEAD_RIDGE):
        d = generated - np.array([r.methods[method].mean for r in result.heldout])
        assert result.differences[method].mean == pytest.approx(d.mean(), abs=1e-3)
    t = result.timing
    assert t.sgd_s_per_task == pytest.approx(np.mean(list(t.sgd_s.values())), rel=1e-2)
    assert t.generation_s_per_task == pytest.approx(t.generation_s / 4, rel=1e-2)
    assert t.generation_s_per_model == pytest.approx(t.generation_s_per_task / result.setup.num_models, rel=1e-2)
    assert t.ratio == pytest.approx(t.generation_s_per_model / t.sgd_s_per_task, rel=1e-2)
    assert set(result.goals) == {"sgd", "ridge", "time", "heldout_tasks"}
    assert not result.goals["heldout_tasks"].met  # 4 tasks, fewer than 20


def test_head_parameter_names():
    mlp = timm.create_model("pdiff_mlp", num_classes=2, img_size=8, hidden=4)
    assert head_parameter_names(mlp, ParameterLayout.from_model(mlp, ["*"])) == ["3.weight", "3.bias"]
    assert head_parameter_names(mlp, ParameterLayout.from_model(mlp, ["3.*"])) is None  # the head is everything
    resnet = timm.create_model("test_resnet", num_classes=2, in_chans=1)
    layout = ParameterLayout.from_model(resnet, ["layer4.0.bn2.*", "fc.*"])
    assert head_parameter_names(resnet, layout) == ["fc.weight", "fc.bias"]
    # the names the collection recorded win, in the layout's order
    assert head_parameter_names(resnet, layout, ["fc.bias", "fc.weight"]) == ["fc.weight", "fc.bias"]
    assert head_parameter_names(resnet, layout, list(layout.names)) is None


def test_training_tasks_are_a_seeded_choice_in_order():
    codes = [f"{i:06b}" for i in range(1, 40)]
    chosen = training_tasks_to_evaluate(codes, 20, seed=3)
    assert len(chosen) == 20 and chosen == sorted(chosen, key=codes.index)
    assert chosen == training_tasks_to_evaluate(codes, 20, seed=3) != training_tasks_to_evaluate(codes, 20, seed=4)
    assert training_tasks_to_evaluate(codes[:5], 20, seed=3) == codes[:5]


def test_wrong_inputs_are_refused(chain):
    pipe, params, splits = chain
    with pytest.raises(ValueError, match="one task"):
        plain = dataclasses.replace(params, dataset=params.dataset.remove_columns(["task", "condition"]),
                                    task_info=None)
        run_task_evaluation(pipe, plain, splits, RECIPE, progress=False)
    with pytest.raises(ValueError, match="pipeline is unconditional"):
        run_task_evaluation(tiny_pipeline(params.target), params, splits, RECIPE, progress=False)
    with pytest.raises(ValueError, match="non-empty 'train' split"):
        run_task_evaluation(pipe, params, {"test": splits["test"]}, RECIPE, progress=False)
    for tasks in ({"lr": 0.01}, {"burn_in_steps": 1}):
        other = dataclasses.replace(RECIPE, tasks=dataclasses.replace(RECIPE.tasks, **tasks))
        with pytest.raises(ValueError, match="differs from the collection's"):
            run_task_evaluation(pipe, params, splits, other, progress=False)
    info = {**params.task_info, "heldout": []}
    with pytest.raises(ValueError, match="no held-out tasks"):
        run_task_evaluation(pipe, dataclasses.replace(params, task_info=info), splits, RECIPE, progress=False)
