"""The task evaluation's report: a markdown page rendered from a
:class:`~pdiff_hub.evaluation.task_result.TaskEvaluationResult`.

It decides nothing: the goals' verdicts are the result's (:mod:`~pdiff_hub.evaluation.task_verdicts`), written out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .task_result import COLLECTED, GENERATED, TaskEvaluationResult, TaskRow, TaskSetup, method_label

__all__ = ["render_task_report"]

_CAPTIONS = {"heldout_tasks": "Mean test accuracy on each held-out task, tasks sorted by SGD's accuracy."}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _backbone(setup: TaskSetup) -> str:
    """What the frozen backbone is, from the parameter dataset's task record."""
    info = setup.backbone
    classes = info.get("backbone_classes")
    every = not classes or len(classes) == setup.num_classes
    trained = f"all {setup.num_classes} classes" if every else f"classes {', '.join(map(str, classes))} only"
    accuracy = info.get("backbone_test_accuracy")
    text = f"The frozen backbone was trained on {trained}"
    text += f" ({accuracy:.2f}% test accuracy on them)." if isinstance(accuracy, (int, float)) else "."
    names = info.get("class_names")
    if names:
        text += f" Code bit i is class i: {', '.join(f'{i} {n}' for i, n in enumerate(names))}."
    return text


def _split_sizes(setup: TaskSetup) -> str:
    full = setup.full_split_sizes
    return ", ".join(f"{split} {n:,}" + (f" (a random subset of {full[split]:,})" if full.get(split, n) != n else "")
                     for split, n in setup.split_sizes.items())


def _task_table(rows: Sequence[TaskRow], methods: Sequence[str], k: int) -> list[str]:
    """One line per task: each method's mean accuracy, and the best-by-validation one of the first two methods."""
    columns = [(m, "mean") for m in methods]
    columns[1:1] = [(methods[0], "best")]
    columns[3:3] = [(methods[1], "best")] if len(methods) > 1 else []
    names = [method_label(m, k) + (" (best)" if what == "best" else "") for m, what in columns]
    out = [f"| task | {' | '.join(names)} |", "|---|" + "---:|" * len(columns)]
    for row in rows:
        cells = " | ".join(_fmt(getattr(row.methods[m], what)) for m, what in columns)
        out.append(f"| `{row.code}` | {cells} |")
    return out


def render_task_report(result: TaskEvaluationResult, figures: Mapping[str, str]) -> str:
    """The task evaluation as markdown: setup, verdicts, summary per method, timing, per-task and training tables.

    Args:
        result: the output of :func:`~pdiff_hub.evaluation.task_run.run_task_evaluation` (or
            :meth:`~pdiff_hub.evaluation.task_result.TaskEvaluationResult.from_dict` of a ``metrics.json``).
        figures: figure name -> path relative to the report (see
            :func:`~pdiff_hub.evaluation.task_figures.write_task_figures`).
    """
    setup, k, timing = result.setup, result.setup.nearest_k, result.timing
    names = ", ".join(setup.param_names[:6]) + (", ..." if len(setup.param_names) > 6 else "")
    head = (f"the head only ({', '.join(setup.head_names)}, the rest from the network's own values)"
            if setup.head_names else "skipped: the head is every generated value")
    out = [
        f"# Conditional generation on held-out tasks: {setup.model_name}",
        "",
        f"A family of binary tasks over {setup.num_classes} classes: {setup.num_train_tasks} training tasks (seen by "
        f"the generator), **{setup.num_heldout_tasks} held-out tasks** (never seen). {_backbone(setup)} Generated: "
        f"{setup.num_params:,} values ({names}).",
        "",
        f"{setup.num_models} models per task, all tasks in one batch ({setup.scheduler.upper()}, "
        f"{setup.num_inference_steps} steps, seed {setup.seed}), **guidance scale {setup.guidance_scale:g}**. "
        f"Splits: {_split_sizes(setup)}. Each model is measured on its own task; **best** is the test accuracy of "
        f"the model chosen by {setup.best_selected_by} accuracy.",
        "",
        f"SGD is what the collection would have produced for the task: AdamW at lr {setup.sgd['lr']:g} (weight decay "
        f"{setup.sgd['weight_decay']:g}, batch {setup.sgd['batch_size']}) from the common start, checkpoints kept "
        f"after steps {', '.join(map(str, setup.sgd['keep']))}. Baselines: the nearest training task's checkpoints "
        f"(Hamming distance between codes), the average of the {k} nearest tasks' checkpoints, the per-coordinate "
        f"Gaussian of all checkpoints, ridge from the code to all generated values, and ridge over {head}.",
        "",
        "## Verdicts",
        "",
        *(f"- **{'Met' if g.met else 'Not met'}.** {g.statement}" for g in result.goals.values()),
        "",
        "## Held-out tasks: summary",
        "",
        "Over tasks, each task's mean test accuracy (%); SE is the standard error across tasks; *best* is the mean "
        "over tasks of the best-by-validation model; the last column is generated minus the method, task by task.",
        "",
        "| method | mean | SE | median | min | max | best | models per task | generated − method (SE) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, s in result.summary.items():
        d = result.differences.get(method)
        diff = "" if d is None else f"{d.mean:+.2f} ({_fmt(d.se)})"
        name = f"**{method_label(method, k)}**" if method == GENERATED else method_label(method, k)
        out.append(f"| {name} | {_fmt(s.mean)} | {_fmt(s.se)} | {_fmt(s.median)} | {_fmt(s.min)} | {_fmt(s.max)} | "
                   f"{_fmt(s.best_mean)} | {result.heldout[0].methods[method].n} | {diff} |")
    alphas = ", ".join(f"{method_label(m)} {a:g}" for m, a in result.ridge_alphas.items())
    out += [
        "",
        f"Ridge penalties chosen by leave-one-task-out: {alphas}.",
        "",
        "## Time to a model for a new task",
        "",
        "| | seconds per task |",
        "|---|---:|",
        f"| generation (one call for all {setup.num_heldout_tasks} held-out tasks: {timing.generation_s:.3f} s) | "
        f"{timing.generation_s_per_task:.4g} |",
        f"| generation, per model ({setup.num_models} per task) | {timing.generation_s_per_model:.4g} |",
        f"| SGD (the fit alone, mean over tasks; one model each) | {timing.sgd_s_per_task:.4g} |",
        f"| a model by generation / a model by SGD | {timing.ratio:.4g} |",
        "",
        f"The training split's frozen features, computed once and shared by every SGD fit, took "
        f"{timing.features_s:.3f} s (not in the SGD time).",
        "",
        "## Figure",
        "",
    ]
    for name, file in figures.items():
        out += [f"![{name}]({file})", "", f"*{_CAPTIONS.get(name, name)}*", ""]
    out += ["## Per held-out task", "", *_task_table(result.heldout, setup.methods, k), ""]
    gen, col = result.training_summary[GENERATED], result.training_summary[COLLECTED]
    out += [
        "## Training tasks",
        "",
        f"Does generation reproduce the tasks it saw? {setup.num_training_tasks_evaluated} of the "
        f"{setup.num_train_tasks} training tasks (a seeded choice): generated {_fmt(gen.mean)}% (SE {_fmt(gen.se)}) "
        f"vs their collected checkpoints {_fmt(col.mean)}% (SE {_fmt(col.se)}).",
        "",
        *_task_table(result.training, [GENERATED, COLLECTED], k),
        "",
    ]
    if result.timings:
        out.append("Timings (s): " + ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in result.timings.items())
                   + ".")
    return "\n".join(out).rstrip() + "\n"
