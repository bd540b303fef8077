import pytest
import torch

from pdiff_hub import TargetModel

from ..components import PATTERNS, tiny_target


@pytest.fixture(scope="module")
def target():
    return tiny_target()


def test_layout_is_resolved_once_and_recorded_in_the_config(target, tmp_path):
    assert target.config.param_names == list(target.layout.names)
    assert all(n.startswith("layer4.") and ".bn" in n for n in target.layout.names)
    assert [list(s) for s in target.layout.shapes] == target.config.param_shapes
    target.save_pretrained(tmp_path)
    again = TargetModel.from_pretrained(tmp_path)
    assert again.layout == target.layout and list(again.config.param_patterns) == PATTERNS
    assert torch.equal(again.base_vector(), target.base_vector())


def test_recorded_names_that_the_network_lacks_are_refused(target):
    with pytest.raises(ValueError, match="layer9"):
        TargetModel("test_resnet", {"num_classes": 10, "in_chans": 1}, PATTERNS,
                    param_names=["layer9.weight"], param_shapes=[[4]])


def test_train_mode_never_updates_the_frozen_statistics(target):
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    target.train()
    target(torch.randn(4, 1, 32, 32))
    assert not target.training and not target.model.training
    assert all(torch.equal(before[k], v) for k, v in target.model.state_dict().items())


def test_generated_models_share_the_frozen_tensors_but_not_the_generated_ones(target):
    base = target.base_vector()
    a, b = target.build_model(base + 1), target.build_model(base - 1)
    generated = set(target.layout.names)
    frozen = [n for n, _ in target.model.named_parameters() if n not in generated]
    own = dict(target.model.named_parameters())
    params_a, params_b = dict(a.named_parameters()), dict(b.named_parameters())
    assert all(params_a[n] is own[n] for n in frozen)
    assert all(params_a[n].data_ptr() != params_b[n].data_ptr() for n in generated)
    assert torch.equal(target.layout.flatten(params_a), base + 1) and torch.equal(target.base_vector(), base)
