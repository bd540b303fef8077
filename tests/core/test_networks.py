import pytest
import timm
import torch

from pdiff_hub.core import networks  # noqa: F401  (registers the models with timm)


@pytest.mark.parametrize(("name", "kwargs", "num_params"), [
    ("pdiff_mlp", {"img_size": 8, "hidden": 32}, 64 * 32 + 32 + 32 * 10 + 10),
    ("pdiff_convnet3", {"width": 4, "img_size": 16}, (9 * 4 + 4) + (36 * 8 + 8) + (72 * 8 + 8) + (8 * 10 + 10)),
])
def test_timm_creates_the_small_networks_by_name(name, kwargs, num_params):
    model = timm.create_model(name, num_classes=10, in_chans=1, **kwargs)
    size = kwargs.get("img_size", 8)
    assert model(torch.randn(2, 1, size, size)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == num_params and model.num_classes == 10


@pytest.mark.parametrize("name", ["pdiff_mlp", "pdiff_convnet3"])
def test_no_pretrained_weights(name):
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(name, pretrained=True)
