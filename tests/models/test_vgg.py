"""VGG (Simonyan & Zisserman, 2014) against torchvision and against the paper's Table 2."""
from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.models.classification.vgg import CONFIGS, VGG


@pytest.mark.paper("vgg")
@pytest.mark.parametrize("name", ["vgg11", "vgg19_bn"])
def test_equals_torchvision(name: str) -> None:
    """torchvision's weights (random, perturbed) load strictly and give the same logits (configuration A
    without BN and E with BN; the other variants' tensors are checked below)."""
    ref = perturb_(getattr(torchvision.models, name)()).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vgg")
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"])
def test_every_variant_has_torchvision_tensors(name: str, record_property) -> None:
    """All eight variants hold exactly torchvision's tensors: strict loading checks every name and shape
    (on the meta device, so no memory or time is spent on values)."""
    with torch.device("meta"):
        ref = getattr(torchvision.models, name)()
        strict_load(record_property, pz.create_model(name), ref.state_dict(), source="torchvision")


@pytest.mark.paper("vgg")
@pytest.mark.parametrize("cfg, params_m", [("A", 133), ("B", 133), ("C", 134), ("D", 138), ("E", 144)])
def test_params_match_paper_table2(cfg: str, params_m: int) -> None:
    """Table 2: 133, 133, 134, 138 and 144 million parameters for configurations A-E (C has 1x1 convs)."""
    with torch.device("meta"):
        assert round(n_params(VGG(CONFIGS[cfg])) / 1e6) == params_m


def test_registered_names_are_the_paper_configs() -> None:
    depth = {"vgg11": 11, "vgg13": 13, "vgg16": 16, "vgg19": 19}
    for name, layers in depth.items():
        with torch.device("meta"):
            model = pz.create_model(name)
        weight_layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weight_layers) == layers and model.meta.paper == "vgg"
        assert all(m.kernel_size == (3, 3) for m in weight_layers if isinstance(m, torch.nn.Conv2d))


def test_two_3x3_convs_see_5x5_with_fewer_weights() -> None:
    """Sec. 2.3: two stacked 3x3 convs have a 5x5 receptive field and 2*9*C^2 < 25*C^2 weights."""
    c = 8
    stack = VGG([c, c], num_classes=0, in_chans=c, pool_size=1).features
    single = VGG([(c, 5)], num_classes=0, in_chans=c, pool_size=1).features
    for conv in stack[::2]:
        torch.nn.init.ones_(conv.weight)  # positive weights: every ReLU passes, the gradient maps the field
    x = torch.ones(1, c, 11, 11, requires_grad=True)
    stack(x)[0, :, 5, 5].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 7, 3, 7)
    assert n_params(stack) < n_params(single)


def test_features_only() -> None:
    model = pz.create_model("vgg11_bn", features_only=True)
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == model.feature_info.channels() == [64, 128, 256, 512, 512]
    assert [64 // f.shape[-1] for f in feats] == model.feature_info.reduction() == [1, 2, 4, 8, 16]


def test_common_kwargs_and_pre_logits() -> None:
    m = pz.create_model("vgg11", num_classes=7, in_chans=1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert m.forward_head(m.forward_features(torch.randn(2, 1, 32, 32)), pre_logits=True).shape == (2, 4096)
