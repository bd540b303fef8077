"""One tiny evaluation chain shared by the evaluation tests: splits, a parameter dataset, a pipeline, a run."""

import pytest
import torch

from pdiff_hub.evaluation.run import run_evaluation
from pdiff_hub.recipes.config import EvaluateConfig

from ..components import tiny_pipeline, tiny_target
from .helpers import make_params, seeded

CONFIG = EvaluateConfig(num_models=5, num_inference_steps=2, noise_amplitudes=[0.01, 0.06], average_size=4)


@pytest.fixture(scope="session")
def splits():
    images = torch.randn(96, 1, 32, 32, generator=seeded(3))
    labels = torch.randint(0, 10, (96,), generator=seeded(4))
    return {"train": (images[:16], labels[:16]), "validation": (images[16:56], labels[16:56]),
            "test": (images[56:], labels[56:])}


@pytest.fixture(scope="session")
def chain(splits):
    """(pipeline, parameter dataset): 12 checkpoints whose recorded test accuracy is the true one."""
    target = tiny_target()
    params = make_params(target, test_split=splits["test"])
    pipe = tiny_pipeline(target)
    pipe.autoencoder.fit_normalization(params.vectors)
    return pipe, params


@pytest.fixture(scope="session")
def result(chain, splits):
    pipe, params = chain
    return run_evaluation(pipe, params, splits, CONFIG, progress=False)
