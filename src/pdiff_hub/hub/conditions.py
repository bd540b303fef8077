"""What a conditional pipeline's generated models are for, checked against the pipeline and described for the cards
and ``generation.json``: the task ``--condition`` names (:mod:`pdiff_hub.data.tasks` defines the codes), or the
validation accuracy ``--accuracy`` prompts an accuracy-prompted pipeline (``train.accuracy_prompt``) for.

Example:
    ```py
    >>> code = check_task_condition(pipe, parse_condition("0,1,1,0,0,1,0,0,1,0"))
    >>> describe_task(code, pipe.condition_info, class_names=None, guidance_scale=1.0).label_names
    ['not 1, 2, 5 or 8', '1, 2, 5 or 8']
    >>> prompt = check_accuracy_prompt(accuracy_pipe, 90.3, guidance_scale=1.0)  # condition: (90.3 - mean) / std
    ```
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..data.tasks import check_code, positive_classes
from ..evaluation.prompts import is_accuracy_prompted
from ..pipeline import PDiffPipeline
from ..pipeline.pipeline_pdiff import accuracy_conditions
from .export import AccuracyPrompt, TaskRecord

__all__ = ["check_accuracy_prompt", "check_task_condition", "describe_task", "is_accuracy_prompted",
           "parse_condition"]


def parse_condition(value: str) -> str:
    """The task code of ``--condition``: 0/1 values separated by commas (``0,1,1,0``) or the bare code (``0110``).

    Raises:
        ValueError: naming the value and what a task code is.
    """
    text = "".join(value.split())  # spaces are harmless: "0, 1, 1, 0"
    if ";" in text:
        raise ValueError(f"--condition {value!r} names several tasks; give one task per run")
    bits = text.split(",") if "," in text else list(text)
    if not bits or any(bit not in ("0", "1") for bit in bits):
        raise ValueError(f"--condition {value!r} is not a task code: give one 0 or 1 per class, as 0,1,1,0 or 0110")
    code = "".join(bits)
    try:
        return check_code(code)
    except ValueError as err:
        raise ValueError(f"--condition {value!r}: {_lower_first(str(err))}") from None


def check_task_condition(pipe: PDiffPipeline, code: str | None, name: str | None = None) -> str | None:
    """``code`` checked against the pipeline: a task code of its condition size for a task family's pipeline, None
    for an unconditional one or an accuracy-prompted one (which takes ``--accuracy`` and samples unconditionally
    without it).

    Args:
        pipe: the pipeline.
        code: the task asked for (:func:`parse_condition`), or None.
        name: how to name the pipeline in messages (its folder or Hub id).

    Raises:
        ValueError: a code for an unconditional or accuracy-prompted pipeline, none for a task family's, or one of
            the wrong length.
    """
    name = name or pipe.name_or_path or "the pipeline"
    condition_dim = int(pipe.denoiser.config.condition_dim or 0)
    if is_accuracy_prompted(pipe):
        if code is not None:
            raise ValueError(f"--condition names a task, but {name} is prompted with a validation accuracy "
                             f"(train.accuracy_prompt): give --accuracy instead (e.g. --accuracy "
                             f"{pipe.condition_info['accuracy_max']:.1f})")
        return None
    if not condition_dim:
        if code is not None:
            raise ValueError(f"--condition needs a conditional pipeline, but {name} is unconditional (its denoiser "
                             "has condition_dim 0); leave --condition out")
        return None
    if code is None:
        example = "1" + "0" * (condition_dim - 1)
        raise ValueError(f"{name} is a conditional pipeline: give the task to generate models for with --condition, "
                         f"one 0 or 1 per class of its {condition_dim} (e.g. --condition {example})")
    try:
        return check_code(code, condition_dim)
    except ValueError as err:
        raise ValueError(f"--condition {code}: {_lower_first(str(err))}") from None


def check_accuracy_prompt(pipe: PDiffPipeline, accuracy: float | None, guidance_scale: float,
                          name: str | None = None) -> AccuracyPrompt | None:
    """``--accuracy`` checked against the pipeline and described for the cards and ``generation.json``; None
    without a prompt.

    Args:
        pipe: the pipeline.
        accuracy: the validation accuracy in percent to generate models of, or None.
        guidance_scale: the classifier-free guidance scale the models are sampled with.
        name: how to name the pipeline in messages (its folder or Hub id).

    Raises:
        ValueError: a prompt for a pipeline not trained with ``train.accuracy_prompt``.
    """
    if accuracy is None:
        return None
    name = name or pipe.name_or_path or "the pipeline"
    if not is_accuracy_prompted(pipe):
        what = ("conditioned on tasks: give the task with --condition" if pipe.denoiser.config.condition_dim
                else "unconditional: leave --accuracy out")
        raise ValueError(f"--accuracy needs a pipeline trained with train.accuracy_prompt, but {name} is {what}")
    info = pipe.condition_info
    with warnings.catch_warnings():  # the sampler warns of a far prompt when it samples: once, not here as well
        warnings.simplefilter("ignore")
        condition = accuracy_conditions(info, [accuracy]).item()
    low, high = float(info["accuracy_min"]), float(info["accuracy_max"])
    return AccuracyPrompt(float(accuracy), condition, float(guidance_scale), [low, high],
                          extrapolated=not low <= accuracy <= high)


def describe_task(code: str, condition_info: Mapping[str, Any], class_names: Sequence[str] | None,
                  guidance_scale: float) -> TaskRecord:
    """What the card and ``generation.json`` say about the task ``code``.

    The class names are the pipeline's (``condition_info["class_names"]``) when it records them, else
    ``class_names`` (the dataset's), else the class indices. The task is a ``"training"`` or ``"held-out"`` one
    when ``condition_info``'s ``train_conditions`` / ``held_out_conditions`` list it (as codes or as 0/1 lists),
    else ``"new"``.
    """
    names = condition_info.get("class_names") or class_names
    if not names or len(names) != len(code):
        names = [str(i) for i in range(len(code))]
    positive = [str(names[i]) for i in positive_classes(code)]
    if code in _codes(condition_info.get("train_conditions")):
        status = "training"
    elif code in _codes(condition_info.get("held_out_conditions")):
        status = "held-out"
    else:
        status = "new"
    positive_text = positive[0] if len(positive) == 1 else f"{', '.join(positive[:-1])} or {positive[-1]}"
    return TaskRecord(code, positive, status, float(guidance_scale), [f"not {positive_text}", positive_text])


def _codes(conditions: Sequence | None) -> set[str]:
    """Recorded conditions (codes, or 0/1 lists) as codes."""
    return {c if isinstance(c, str) else "".join(str(int(v)) for v in c) for c in conditions or []}


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
