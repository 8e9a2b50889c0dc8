"""MobileNetV2 (Sandler et al., 2018) against torchvision and timm, and against the paper's Table 4."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import macs, n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.models.classification._efficient_blocks import DepthwiseSeparable, InvertedResidual
from paperzoo.models.classification.mobilenetv2 import MobileNetV2


@pytest.fixture(scope="module")
def refs() -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's mobilenet_v2 (perturbed) and timm's mobilenetv2_100."""
    return perturb_(torchvision.models.mobilenet_v2()).eval(), perturb_(timm.create_model("mobilenetv2_100")).eval()


@pytest.mark.paper("mobilenetv2")
def test_equals_torchvision(refs) -> None:
    ours = pz.load_weights(pz.create_model("mobilenetv2_100"), refs[0].state_dict(), source="torchvision").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), refs[0](x)) < 1e-5


@pytest.mark.paper("mobilenetv2")
@pytest.mark.parametrize("name", ["mobilenetv2_100", "mobilenetv2_140"])
def test_equals_timm(refs, name: str) -> None:
    ref = refs[1] if name == "mobilenetv2_100" else perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("mobilenetv2")
def test_width_050_has_timms_tensors(record_property) -> None:
    """The 0.5 multiplier rounds channels as timm's mobilenetv2_050 (strict load of names and shapes)."""
    with torch.device("meta"):
        strict_load(record_property, pz.create_model("mobilenetv2_050"), timm.create_model("mobilenetv2_050").state_dict(), source="timm")


@pytest.mark.paper("mobilenetv2")
@pytest.mark.parametrize("name, madds_m", [("mobilenetv2_100", 300), ("mobilenetv2_140", 585)])
def test_madds_match_paper_table4(name: str, madds_m: int) -> None:
    """Table 4: 300M (1.0) and 585M (1.4) multiply-adds at 224x224, within 1%."""
    with torch.device("meta"):
        got = macs(pz.create_model(name), torch.randn(1, 3, 224, 224)) / 1e6
    assert abs(got - madds_m) / madds_m < 0.01


@pytest.mark.paper("mobilenetv2")
def test_params_match_paper_table4() -> None:
    """Table 4: 3.4M parameters for MobileNetV2 1.0; the reference implementations have 3.50M (3.1% more).
    (The paper's 6.9M for the 1.4 model matches no implementation: they all have 6.1M.)"""
    with torch.device("meta"):
        assert abs(n_params(pz.create_model("mobilenetv2_100")) / 1e6 - 3.4) / 3.4 < 0.035


def test_table2_layout() -> None:
    """Table 2: 32-filter stem, 17 bottlenecks (t=1 first, then t=6), 1280-channel last conv for widths <= 1."""
    model = pz.create_model("mobilenetv2_050")
    blocks = [b for stage in model.blocks for b in stage]
    assert len(blocks) == 17 and isinstance(blocks[0], DepthwiseSeparable)
    assert all(isinstance(b, InvertedResidual) and b.conv_pw.out_channels == 6 * b.conv_pw.in_channels for b in blocks[1:])
    assert model.conv_head.out_channels == 1280 and model.conv_stem.out_channels == 16


def test_linear_bottleneck_ablation_option() -> None:
    """linear_bottleneck=False puts a ReLU6 after the projection (Fig. 6a); the default keeps it linear."""
    x = torch.randn(1, 16, 8, 8)
    linear = InvertedResidual(16, 24, stride=2, act_layer=torch.nn.ReLU6).eval()
    relu = InvertedResidual(16, 24, stride=2, act_layer=torch.nn.ReLU6, linear_bottleneck=False).eval()
    relu.load_state_dict(linear.state_dict())
    with torch.no_grad():
        assert linear(x).min() < 0
        assert torch.equal(relu(x), linear(x).clamp(0, 6))
    model = MobileNetV2(linear_bottleneck=False)
    assert all(not isinstance(b.act3, torch.nn.Identity) for s in list(model.blocks)[1:] for b in s)


def test_features_equal_timm(refs) -> None:
    ours = pz.create_model("mobilenetv2_100", features_only=True)
    pz.load_weights(ours, refs[1].state_dict(), source="timm")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = refs[1].forward_intermediates(x, indices=5, intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


def test_common_kwargs_and_drop_path() -> None:
    m = pz.create_model("mobilenetv2_050", num_classes=4, in_chans=1, drop_path_rate=0.2)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    rates = [b.drop_path.drop_prob for s in m.blocks for b in s if b.has_skip]
    assert rates == sorted(rates) and 0 < rates[-1] < 0.2
