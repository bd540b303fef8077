"""The task of a conditional pipeline's models: --condition parsed, checked against the pipeline, described."""

import pytest

from pdiff_hub.hub.conditions import check_accuracy_prompt, check_task_condition, describe_task, parse_condition

from .conftest import HELD_OUT_TASK, TRAIN_TASK


@pytest.mark.parametrize("value", ["0,1,1,0,0,1,0,0,1,0", "0110010010", " 0, 1, 1, 0, 0, 1, 0, 0, 1, 0 "])
def test_parse_condition_takes_comma_separated_bits_or_the_bare_code(value):
    assert parse_condition(value) == "0110010010"


@pytest.mark.parametrize(("value", "match"), [
    ("", "is not a task code"),
    ("0,1,2", "is not a task code"),
    ("01a0", "is not a task code"),
    ("0,,1", "is not a task code"),
    ("0.5,1", "is not a task code"),
    ("0000", "makes every image negative"),
    ("1,1,1", "makes every image positive"),
    ("0110;1001", "several tasks"),
])
def test_parse_condition_refuses_what_is_not_one_task_code(value, match):
    with pytest.raises(ValueError, match=f"^--condition {value!r}.*{match}"):
        parse_condition(value)


def test_check_task_condition_against_the_pipeline(task_pipe, pipe):
    assert check_task_condition(task_pipe, "0110010010") == "0110010010"
    assert check_task_condition(pipe, None) is None
    with pytest.raises(ValueError, match="--condition needs a conditional pipeline, but P is unconditional"):
        check_task_condition(pipe, "0110010010", name="P")
    with pytest.raises(ValueError, match=r"P is a conditional pipeline: give the task .* --condition 1000000000\)$"):
        check_task_condition(task_pipe, None, name="P")
    with pytest.raises(ValueError, match="--condition 0110: task code '0110' has 4 characters; the dataset has 10"):
        check_task_condition(task_pipe, "0110")


def test_describe_task_names_the_classes_and_says_whether_the_pipeline_saw_the_task(task_pipe):
    info = task_pipe.condition_info
    held_out = describe_task(HELD_OUT_TASK, info, [str(i) for i in range(10)], guidance_scale=2)
    assert held_out.status == "held-out" and held_out.guidance_scale == 2.0
    assert held_out.positive == ["digit 1", "digit 2", "digit 5", "digit 8"]  # the pipeline's names come first
    assert held_out.label_names == ["not digit 1, digit 2, digit 5 or digit 8", "digit 1, digit 2, digit 5 or digit 8"]
    assert describe_task(TRAIN_TASK, info, None, 1.0).status == "training"
    new = describe_task("0000000011", {}, [f"c{i}" for i in range(10)], 1.0)
    assert (new.status, new.positive, new.label_names) == ("new", ["c8", "c9"], ["not c8 or c9", "c8 or c9"])
    single = describe_task("0100", {"class_names": ["a", "b"]}, None, 1.0)  # names of another length: indices
    assert single.label_names == ["not 1", "1"]


def test_an_accuracy_prompt_is_checked_against_the_pipeline_and_described(accuracy_pipe, task_pipe, pipe):
    prompt = check_accuracy_prompt(accuracy_pipe, 45.0, guidance_scale=2.0)
    assert (prompt.accuracy, prompt.condition, prompt.guidance_scale) == (45.0, 1.0, 2.0)  # (45 - 40) / 5
    assert prompt.checkpoint_accuracy == [32.5, 47.5] and not prompt.extrapolated
    assert check_accuracy_prompt(accuracy_pipe, 48.0, guidance_scale=1.0).extrapolated  # above the checkpoints'
    assert check_accuracy_prompt(accuracy_pipe, None, guidance_scale=1.0) is None
    assert check_task_condition(accuracy_pipe, None) is None  # no prompt: sampled unconditionally, no error
    with pytest.raises(ValueError, match=r"^--condition names a task, but P is prompted with a validation accuracy "
                                         r"\(train.accuracy_prompt\): give --accuracy instead "
                                         r"\(e.g. --accuracy 47.5\)$"):
        check_task_condition(accuracy_pipe, "0110010010", name="P")
    with pytest.raises(ValueError, match=r"^--accuracy needs a pipeline trained with train.accuracy_prompt, but P is "
                                         r"unconditional: leave --accuracy out$"):
        check_accuracy_prompt(pipe, 45.0, guidance_scale=1.0, name="P")
    with pytest.raises(ValueError, match="but P is conditioned on tasks: give the task with --condition$"):
        check_accuracy_prompt(task_pipe, 45.0, guidance_scale=1.0, name="P")
