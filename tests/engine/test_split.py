"""FrozenPrefixSplit end to end: the split computes what the full model computes, for any generated parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from pdiff_hub.engine.split import FrozenPrefixSplit

from .nets import (
    ATOL,
    check_fallback,
    convnet,
    full_labels,
    full_logits,
    images,
    layout_of,
    mlp,
    norm_names,
    perturbations,
    timm_model,
)

# model factory, generated parameter names
SPLIT_CASES = {
    "test_resnet": (timm_model("test_resnet"), norm_names(["layer4.0.bn1", "layer4.0.bn2"])),
    "test_vit": (timm_model("test_vit"), norm_names(["blocks.5.norm2", "norm"])),
    "test_convnext": (timm_model("test_convnext"), norm_names(["stages.3.blocks.1.norm", "head.norm"])),
    "resnet18": (timm_model("resnet18"), norm_names(["layer4.1.bn1", "layer4.1.bn2"])),
    "convnet": (convnet, norm_names(["3", "7"])),
}


@pytest.fixture(scope="module", params=list(SPLIT_CASES))
def case(request: pytest.FixtureRequest) -> tuple:
    """Model, layout, split, images, frontier and perturbed parameter vectors."""
    factory, names = SPLIT_CASES[request.param]
    model = factory()
    layout = layout_of(model, names)
    x = images()
    split = FrozenPrefixSplit.from_model(model, layout.names, example_input=x[:3])
    frontier = split.compute_prefix(x, batch_size=5)  # several prefix batches
    return model, layout, split, x, frontier, perturbations(model, layout, 3)


def test_split_matches_full_model(case: tuple) -> None:
    model, _, split, x, frontier, _ = case
    assert split.is_split, split.fallback_reason
    assert split.tracer in {"timm", "torch.fx"}
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 and t.shape[0] == len(x) for t in frontier)
    with torch.no_grad():
        torch.testing.assert_close(split.suffix(*frontier), model(x), atol=ATOL, rtol=0)
    # the generated parameters live in the suffix under their own names, none in the prefix, which is not empty
    suffix_params = dict(split.suffix.named_parameters())
    assert all(suffix_params[n] is model.get_parameter(n) for n in split.param_names)
    prefix_ids = {id(p) for p in split.prefix.parameters()}
    assert prefix_ids and not prefix_ids & {id(model.get_parameter(n)) for n in split.param_names}


def test_swapped_params_match_a_loaded_model(case: tuple) -> None:
    model, layout, split, x, frontier, vectors = case
    before = layout.flatten(dict(model.named_parameters()))
    for vector in vectors:
        params = layout.unflatten(vector)
        with torch.no_grad():
            got = functional_call(split.suffix, params, frontier)
        torch.testing.assert_close(got, full_logits(model, params, x), atol=ATOL, rtol=0)
    assert torch.equal(layout.flatten(dict(model.named_parameters())), before), "the model itself is unchanged"


@pytest.mark.parametrize("method", ["vmap", "loop", "auto"])
def test_predict_many_matches_per_model_evaluation(case: tuple, method: str) -> None:
    model, layout, split, x, frontier, vectors = case
    labels = split.predict_many(frontier, layout.unflatten(vectors), method=method, batch_size=5, chunk_size=2)
    assert labels.dtype == torch.int64
    assert torch.equal(labels, full_labels(model, layout, vectors, x))
    assert split.vmap_error is None


def test_check_runs_on_the_first_images_without_example_input() -> None:
    model = convnet()
    split = FrozenPrefixSplit.from_model(model, norm_names(["7"]))
    x = images(1)  # a single image is enough: it is cycled to build the check batches
    frontier = split.compute_prefix(x)
    assert split.is_split, split.fallback_reason
    with torch.no_grad():
        torch.testing.assert_close(split.suffix(*frontier), model(x), atol=ATOL, rtol=0)


def test_whole_network_falls_back_to_the_full_model() -> None:
    model = mlp()
    split = FrozenPrefixSplit.from_model(model, [n for n, _ in model.named_parameters()])
    assert split.suffix is model
    check_fallback(split, model, images(5), "nothing worth caching")


def test_rejects_what_it_cannot_replace() -> None:
    model = convnet()
    split = FrozenPrefixSplit.from_model(model, norm_names(["7"]), example_input=images(3))
    frontier = split.compute_prefix(images(4))
    with pytest.raises(KeyError, match="0.weight"):
        split.predict_many(frontier, {"0.weight": torch.zeros(1, 8, 1, 3, 3)})
    with pytest.raises(ValueError, match="not parameters"):
        FrozenPrefixSplit.from_model(model, ["nope.weight"])
    with pytest.raises(ValueError, match="empty"):
        FrozenPrefixSplit.from_model(model, [])
    with pytest.raises(ValueError, match="duplicates"):
        FrozenPrefixSplit.from_model(model, ["7.bias", "7.bias"])


def test_suffix_trains_the_generated_parameters_only() -> None:
    model = convnet()
    names = norm_names(["7"])
    split = FrozenPrefixSplit.from_model(model, names, example_input=images(3))
    x = images(8)
    frontier = split.compute_prefix(x)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([model.get_parameter(n) for n in names], lr=0.1)
    nn.functional.cross_entropy(split.suffix(*frontier), torch.arange(8) % 10).backward()
    optimizer.step()
    assert {n for n, p in model.named_parameters() if not torch.equal(p, before[n])} == set(names)
    with torch.no_grad():  # the trained model and the split still agree
        torch.testing.assert_close(split.suffix(*frontier), model(x), atol=ATOL, rtol=0)
