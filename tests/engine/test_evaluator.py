"""ParameterEvaluator: the accuracy of many parameter vectors equals a plain forward of each loaded model."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

from pdiff_hub.engine.evaluator import ParameterEvaluator
from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import convnet, images, layout_of, norm_names, perturbations


@pytest.fixture(scope="module")
def setup() -> tuple:
    model = convnet().eval()
    layout = layout_of(model, norm_names(["3", "7"]))
    x = images(20)
    labels = torch.randint(0, 10, (20,), generator=torch.Generator().manual_seed(3))
    return model, layout, x, labels, perturbations(model, layout, 4)


def test_accuracy_equals_a_plain_forward_per_model(setup: tuple) -> None:
    model, layout, x, labels, vectors = setup
    evaluator = ParameterEvaluator(model, layout, x, labels, batch_size=7)
    expected = []
    for vector in vectors:
        loaded = layout.load_into(copy.deepcopy(model), vector)
        with torch.no_grad():
            expected.append(100.0 * (loaded(x).argmax(-1) == labels).float().mean())
    assert torch.equal(evaluator.accuracy(vectors), torch.stack(expected))
    assert torch.equal(evaluator.wrong(vectors), evaluator.predictions(vectors) != labels)
    assert len(set(evaluator.accuracy(vectors).tolist())) > 1, "the vectors must differ for the check to mean much"


def test_one_split_serves_several_data_splits(setup: tuple) -> None:
    model, layout, x, labels, vectors = setup
    split = FrozenPrefixSplit.from_model(model, layout.names)
    for part in (slice(0, 10), slice(10, 20)):
        shared = ParameterEvaluator(model, layout, x[part], labels[part], split=split)
        alone = ParameterEvaluator(model, layout, x[part], labels[part])
        assert torch.equal(shared.accuracy(vectors), alone.accuracy(vectors))


def test_errors(setup: tuple) -> None:
    model, layout, x, labels, vectors = setup
    with pytest.raises(ValueError, match="20 images but 19 labels"):
        ParameterEvaluator(model, layout, x, labels[:19])
    evaluator = ParameterEvaluator(model, layout, x, labels)
    with pytest.raises(ValueError, match="shape"):
        evaluator.predictions(vectors[:, :-1])
    with pytest.raises(ValueError, match="shape"):
        evaluator.predictions(vectors[0])
    broken = vectors.clone()
    broken[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        evaluator.accuracy(broken)


def test_simplified_evaluation_predicts_what_the_exact_split_predicts() -> None:
    torch.manual_seed(0)
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1).eval()
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, in_chans=1, img_size=32,
                            patch_size=4, depth=2, embed_dim=32, num_heads=2).eval()
    x, labels = images(40), torch.randint(0, 10, (40,), generator=torch.Generator().manual_seed(3))
    for model, names in ((resnet, norm_names(["layer4.1.bn1", "layer4.1.bn2"])),
                         (vit, norm_names(["blocks.1.norm2", "norm"]))):
        layout = layout_of(model, names)
        vectors = perturbations(model, layout, 4)
        split = FrozenPrefixSplit.from_model(model, layout.names)
        fast = ParameterEvaluator(model, layout, x, labels, split=split)
        exact = ParameterEvaluator(model, layout, x, labels, split=split, simplify=False)
        assert exact.split is split and fast.split is split.simplified() and fast.split is not split
        assert fast.split.one_pixel_convs or fast.split.kept_tokens  # something was simplified
        assert split.one_pixel_convs == () and split.kept_tokens is None  # the given split is unchanged
        assert fast.frontier[0].numel() <= exact.frontier[0].numel()
        assert torch.equal(fast.predictions(vectors), exact.predictions(vectors))
