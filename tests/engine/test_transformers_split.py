"""The frozen prefix of transformers classifiers: split where the graph allows, the exact whole model where not."""

from __future__ import annotations

import pytest
import torch

from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.split import FrozenPrefixSplit

from ..components import tiny_transformers_target

IMAGES = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
LABELS = torch.randint(0, 10, (24,), generator=torch.Generator().manual_seed(1))
STAGE = "resnet.encoder.stages.1.layers.0.layer.2.normalization"


@pytest.mark.parametrize("model_name, patterns, is_split", [
    ("resnet", [STAGE, "classifier.*"], True),  # frozen embeddings and first stage: cached
    ("vit", ["classifier"], True),  # everything before the head: cached
    ("vit", ["vit.layernorm", "classifier"], False),  # ViTModel.forward checks the dtype: the whole model runs
])
def test_transformers_targets_are_evaluated_exactly_split_or_not(model_name, patterns, is_split):
    target = tiny_transformers_target(model_name, patterns)
    split = FrozenPrefixSplit.from_model(target.model, target.layout.names, IMAGES[:3])
    assert split.is_split is is_split
    assert split.tracer == ("frozen-leaves" if is_split else None)
    vectors = target.base_vector() + 0.3 * torch.randn(3, target.layout.num_params,
                                                       generator=torch.Generator().manual_seed(2))
    direct = torch.stack([target.build_model(v)(IMAGES).argmax(-1) for v in vectors])
    evaluated = ParameterEvaluator(target.model, target.layout, IMAGES, LABELS, split=split).predictions(vectors)
    assert torch.equal(evaluated, direct)
    assert not torch.equal(evaluated[0], evaluated[1])  # the vectors make different models: the check can fail
