"""EfficientNet (Tan & Le, 2019) against torchvision and timm, and against the paper's Table 2."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import macs, n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.layers import SqueezeExcite
from paperzoo.models.classification.efficientnet import EfficientNet

NAMES = [f"efficientnet_b{i}" for i in range(8)]


@pytest.fixture(scope="module")
def b0_refs() -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's and timm's EfficientNet-B0 holding the same random, perturbed weights."""
    tv = perturb_(torchvision.models.efficientnet_b0()).eval()
    tm = timm.create_model("efficientnet_b0").eval()
    pz.load_weights(ours := pz.create_model("efficientnet_b0"), tv.state_dict(), source="torchvision")
    tm.load_state_dict({k.replace(".se.fc1.", ".se.conv_reduce.").replace(".se.fc2.", ".se.conv_expand."): v
                        for k, v in ours.state_dict().items()})
    return tv, tm


@pytest.mark.paper("efficientnet")
@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_b0_equals_reference(b0_refs, source: str) -> None:
    ref = b0_refs[source == "timm"]
    ours = pz.load_weights(pz.create_model("efficientnet_b0"), ref.state_dict(), source=source).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("efficientnet")
def test_b5_equals_torchvision() -> None:
    """B5-B7 default to torchvision's BN eps 1e-3 (its TF-ported weights); B5 checks that path numerically."""
    ref = perturb_(torchvision.models.efficientnet_b5()).eval()
    ours = pz.load_weights(pz.create_model("efficientnet_b5"), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("efficientnet")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_the_reference_tensors(name: str, record_property) -> None:
    """Compound scaling gives torchvision's and timm's channel and repeat counts for B0-B7 (strict loading
    of names and shapes on the meta device)."""
    with torch.device("meta"):
        strict_load(record_property, pz.create_model(name), getattr(torchvision.models, name)().state_dict(), source="torchvision")
        strict_load(record_property, pz.create_model(name), timm.create_model(name).state_dict(), source="timm")


@pytest.mark.paper("efficientnet")
@pytest.mark.parametrize("name, params_m, gflops", [
    ("efficientnet_b0", 5.3, 0.39), ("efficientnet_b1", 7.8, 0.70), ("efficientnet_b2", 9.2, 1.0),
    ("efficientnet_b3", 12, 1.8), ("efficientnet_b4", 19, 4.2), ("efficientnet_b5", 30, 9.9),
    ("efficientnet_b6", 43, 19), ("efficientnet_b7", 66, 37),
])
def test_cost_matches_paper_table2(name: str, params_m: float, gflops: float) -> None:
    """Table 2 at each model's resolution: parameters within 2%, FLOPs (multiply-adds) within 5%
    (B4: 4.39 vs 4.2, B5: 10.3 vs 9.9; the paper's FLOPs come from its TF profiler)."""
    with torch.device("meta"):
        model = pz.create_model(name)
        r = model.meta.input_size[-1]
        assert abs(n_params(model) / 1e6 - params_m) / params_m < 0.02
        assert abs(macs(model, torch.randn(1, 3, r, r)) / 1e9 - gflops) / gflops < 0.05


def test_b0_is_table1() -> None:
    """Table 1: stem 32, MBConv1 then MBConv6 stages (16, 24, 40, 80, 112, 192, 320; 1, 2, 2, 3, 3, 4, 1
    layers), SE with 1/4 of the block input, 1280 head channels, swish."""
    m = pz.create_model("efficientnet_b0")
    assert [len(s) for s in m.blocks] == [1, 2, 2, 3, 3, 4, 1]
    assert [s[-1].bn2.num_features if i == 0 else s[-1].bn3.num_features for i, s in enumerate(m.blocks)] == [16, 24, 40, 80, 112, 192, 320]
    se = m.blocks[3][0].se
    assert isinstance(se, SqueezeExcite) and se.fc1.out_channels == 40 // 4
    assert m.conv_head.out_channels == 1280 and isinstance(m.act1, torch.nn.SiLU)


def test_scaling_arguments() -> None:
    """EfficientNet(width, depth) is any point of the scaling space (the reproduction's grid)."""
    base, deep, wide = EfficientNet(), EfficientNet(depth=2.0), EfficientNet(width=2.0)
    assert sum(len(s) for s in deep.blocks) == 2 * sum(len(s) for s in base.blocks)
    assert wide.blocks[-1][0].conv_pwl.out_channels == 640
    assert n_params(wide) > 3 * n_params(base)


def test_features_equal_timm(b0_refs) -> None:
    ours = pz.create_model("efficientnet_b0", features_only=True)
    pz.load_weights(ours, b0_refs[1].state_dict(), source="timm")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = b0_refs[1].forward_intermediates(x, indices=5, intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


def test_common_kwargs() -> None:
    m = pz.create_model("efficientnet_b0", num_classes=3, in_chans=1, drop_path_rate=0.2)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert m.meta.input_size == (1, 224, 224)
