"""Small networks generated whole (the paper's S-x MLPs and ConvNet-3), registered with timm by name."""

from __future__ import annotations

from timm.models import register_model
from torch import nn

__all__ = ["MLP", "ConvNet3"]


class MLP(nn.Sequential):
    """Flatten, one hidden ReLU layer, a linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 8, hidden: int = 32):
        super().__init__(
            nn.Flatten(), nn.Linear(in_chans * img_size * img_size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )
        self.num_classes = num_classes


class ConvNet3(nn.Sequential):
    """Three 3x3 conv + ReLU + 2x2 max-pool blocks, global average pooling, a linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 16):
        layers: list[nn.Module] = []
        channels = [in_chans, width, 2 * width, 2 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], num_classes))
        self.num_classes = num_classes


def _drop_timm_kwargs(kwargs: dict) -> dict:
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return kwargs


@register_model
def pdiff_mlp(pretrained: bool = False, **kwargs) -> MLP:
    """The MLP generated whole; ``timm.create_model("pdiff_mlp", img_size=8, hidden=32)``."""
    if pretrained:
        raise ValueError("pdiff_mlp has no pretrained weights")
    return MLP(**_drop_timm_kwargs(kwargs))


@register_model
def pdiff_convnet3(pretrained: bool = False, **kwargs) -> ConvNet3:
    """The 3-layer ConvNet generated whole; ``timm.create_model("pdiff_convnet3", width=16)``."""
    if pretrained:
        raise ValueError("pdiff_convnet3 has no pretrained weights")
    kwargs = _drop_timm_kwargs(kwargs)
    kwargs.pop("img_size", None)
    return ConvNet3(**kwargs)
