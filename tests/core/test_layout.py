import pytest
import timm
import torch

from pdiff_hub import ParameterLayout, select_parameters


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)


def test_select_by_module_pattern_keeps_model_order(resnet):
    names = select_parameters(resnet, ["layer4.0.bn2", "layer4.0.bn1"])
    assert names == ["layer4.0.bn1.weight", "layer4.0.bn1.bias", "layer4.0.bn2.weight", "layer4.0.bn2.bias"]


def test_whole_model_pattern(resnet):
    layout = ParameterLayout.from_model(resnet, "*")
    assert layout.num_params == sum(p.numel() for p in resnet.parameters())


def test_flatten_unflatten_round_trip(resnet):
    layout = ParameterLayout.from_model(resnet, ["layer4.*.bn*"])
    vector = layout.flatten(resnet.state_dict())
    assert vector.dtype == torch.float32 and vector.shape == (layout.num_params,)
    tensors = layout.unflatten(vector)
    for name in layout.names:
        torch.testing.assert_close(tensors[name], resnet.state_dict()[name])
    batch = layout.unflatten(torch.stack([vector, 2 * vector]))
    torch.testing.assert_close(batch[layout.names[0]][1], 2 * resnet.state_dict()[layout.names[0]])


def test_load_into_writes_only_the_subset(resnet):
    model = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)
    model.load_state_dict(resnet.state_dict())
    layout = ParameterLayout.from_model(model, ["fc.*"])
    before = model.conv1[0].weight.clone()
    layout.load_into(model, torch.zeros(layout.num_params))
    assert model.fc.weight.abs().sum() == 0 and torch.equal(model.conv1[0].weight, before)


def test_pattern_matching_nothing_names_it(resnet):
    with pytest.raises(ValueError, match=r"'layer9\.\*' matches no parameter"):
        select_parameters(resnet, ["layer9.*"])


def test_wrong_vector_length_is_refused(resnet):
    layout = ParameterLayout.from_model(resnet, ["fc.*"])
    with pytest.raises(ValueError, match=f"length {layout.num_params}"):
        layout.unflatten(torch.zeros(layout.num_params + 1))


def test_nan_vector_is_refused(resnet):
    layout = ParameterLayout.from_model(resnet, ["fc.*"])
    with pytest.raises(ValueError, match="NaN"):
        layout.load_into(resnet, torch.full((layout.num_params,), float("nan")))


def test_model_with_other_shapes_names_the_parameter(resnet):
    layout = ParameterLayout.from_model(resnet, ["fc.*"])
    other = timm.create_model("test_resnet", pretrained=False, num_classes=7, in_chans=1)
    with pytest.raises(ValueError, match=r"'fc\.weight'.*shape"):
        layout.flatten(other.state_dict())

