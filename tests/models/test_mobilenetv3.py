"""MobileNetV3 (Howard et al., 2019) against torchvision and timm, and against the paper's Table 3."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import macs, n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.layers import SqueezeExcite

NAMES = ["mobilenetv3_large_100", "mobilenetv3_large_075", "mobilenetv3_small_100", "mobilenetv3_small_075"]


@pytest.mark.paper("mobilenetv3")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_tensors(name: str, record_property) -> None:
    """Channel rounding of all four variants equals timm's (strict load of names and shapes, meta device)."""
    with torch.device("meta"):
        strict_load(record_property, pz.create_model(name), timm.create_model(name).state_dict(), source="timm")


@pytest.mark.paper("mobilenetv3")
@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "mobilenetv3_small_075"])
def test_equals_timm(name: str) -> None:
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("mobilenetv3")
@pytest.mark.parametrize("name, tv", [("mobilenetv3_large_100", "mobilenet_v3_large"), ("mobilenetv3_small_100", "mobilenet_v3_small")])
def test_equals_torchvision(name: str, tv: str) -> None:
    """torchvision's models (BN eps 1e-3, linear head) load through the key map and give the same logits."""
    ref = perturb_(getattr(torchvision.models, tv)()).eval()
    ours = pz.load_weights(pz.create_model(name, bn_eps=1e-3), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("mobilenetv3")
@pytest.mark.parametrize("name, params_m, madds_m", [
    ("mobilenetv3_large_100", 5.4, 219), ("mobilenetv3_large_075", 4.0, 155),
    ("mobilenetv3_small_100", 2.5, 56), ("mobilenetv3_small_075", 2.0, 44),
])
def test_cost_matches_paper_table3(name: str, params_m: float, madds_m: int) -> None:
    """Table 3: parameters within 3% and multiply-adds within 2% (Large 1.0: 5.48M and 216.6M for 5.4M and 219M)."""
    with torch.device("meta"):
        model = pz.create_model(name)
        assert abs(n_params(model) / 1e6 - params_m) / params_m < 0.03
        assert abs(macs(model, torch.randn(1, 3, 224, 224)) / 1e6 - madds_m) / madds_m < 0.02


def test_table1_structure() -> None:
    """Table 1: 15 bottlenecks, SE in 8 of them with a 1/4 bottleneck rounded to 8, h-swish from the 7th
    bottleneck on, a 16-filter stem and the pooled 1x1 conv to 1280 without BN."""
    model = pz.create_model("mobilenetv3_large_100")
    blocks = [b for stage in list(model.blocks)[:-1] for b in stage]
    assert len(blocks) == 15 and model.conv_stem.out_channels == 16
    ses = [b.se for b in blocks if isinstance(b.se, SqueezeExcite)]
    assert len(ses) == 8 and ses[0].fc1.out_channels == 24  # 72 / 4 = 18 -> 24
    assert [isinstance(b.act1, torch.nn.Hardswish) for b in blocks] == [False] * 6 + [True] * 9
    assert model.head_after_pool and model.conv_head.bias is not None and isinstance(model.bn2, torch.nn.Identity)


def test_ablation_options() -> None:
    """act_layer='relu' and se=False remove h-swish and SE everywhere (the reproduction's ablation)."""
    model = pz.create_model("mobilenetv3_small_100", act_layer="relu", se=False)
    assert not any(isinstance(m, (torch.nn.Hardswish, SqueezeExcite)) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_features_and_kwargs() -> None:
    ref = timm.create_model("mobilenetv3_small_100", features_only=True)
    ours = pz.create_model("mobilenetv3_small_100", features_only=True)
    assert ours.feature_info.channels() == ref.feature_info.channels()
    assert ours.feature_info.reduction() == ref.feature_info.reduction()
    m = pz.create_model("mobilenetv3_small_075", num_classes=3, in_chans=1, drop_path_rate=0.1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
