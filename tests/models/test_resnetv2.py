"""BiT ResNet-v2 (GroupNorm + Weight Standardization) against timm's resnetv2_*_bit, Weight Standardization
by its definition, and BiT-HyperRule against the paper's rule."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import perturb_, rel_err

import paperzoo as pz
from paperzoo.layers import StdConv2d
from paperzoo.models.classification.resnetv2 import bit_hyperrule


def _equals_timm(name: str, size: int) -> None:
    """Compared in float64, so that the check is tight (1e-9) however deep the network."""
    ref = perturb_(timm.create_model(name)).double().eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").double().eval()
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-9


@pytest.mark.paper("bit")
def test_r50x1_equals_timm() -> None:
    """R50x1: timm's weights (its 1x1-conv head becomes our linear head) load strictly, outputs agree."""
    _equals_timm("resnetv2_50x1_bit", 64)


@pytest.mark.slow
@pytest.mark.paper("bit")
@pytest.mark.parametrize("name", ["resnetv2_50x3_bit", "resnetv2_101x1_bit", "resnetv2_101x3_bit",
                                  "resnetv2_152x2_bit", "resnetv2_152x4_bit"])
def test_wider_and_deeper_equal_timm(name: str) -> None:
    _equals_timm(name, 32)


@pytest.mark.paper("bit")
@pytest.mark.parametrize("name", ["resnetv2_50x3_bit", "resnetv2_101x1_bit", "resnetv2_101x3_bit",
                                  "resnetv2_152x2_bit", "resnetv2_152x4_bit"])
def test_every_variant_has_timms_tensors(name: str) -> None:
    """Every variant has exactly timm's tensor names and shapes (both built on the meta device)."""
    with torch.device("meta"):
        ref = timm.create_model(name)
        ours = pz.create_model(name)
    theirs = {("fc." + k[8:] if k.startswith("head.fc.") else k): tuple(v.shape[:2] if k == "head.fc.weight" else v.shape)
              for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs


@pytest.mark.paper("bit")
def test_weight_standardization_by_definition() -> None:
    """W_hat = (W - mean) / sqrt(var + eps) per output filter (biased variance), so each filter has mean 0, std 1."""
    conv = StdConv2d(3, 4, 3, eps=1e-8)
    w = conv.weight.detach().double()
    flat = w.flatten(1)
    expected = (flat - flat.mean(1, keepdim=True)) / (flat.var(1, unbiased=False, keepdim=True) + 1e-8).sqrt()
    w_hat = conv.standardized_weight().detach().double().flatten(1)
    assert torch.allclose(w_hat, expected, atol=1e-6)
    assert torch.allclose(w_hat.mean(1), torch.zeros(4, dtype=torch.float64), atol=1e-6)
    x = torch.randn(2, 3, 8, 8)
    scaled = StdConv2d(3, 4, 3, eps=1e-8)
    scaled.weight.data = conv.weight.data * 7.0 + 3.0  # an affine change of the weights changes nothing
    assert torch.allclose(conv(x), scaled(x), atol=1e-4)


@pytest.mark.paper("bit")
def test_bit_hyperrule_matches_the_paper() -> None:
    """Sec. 3.3: 500 steps under 20k examples, 10k under 500k, else 20k; warmup then /10 at 30/60/90%;
    128 px crops for images under 96x96, else 384; MixUp 0.1 from 20k examples."""
    small = bit_hyperrule(5_000, (32, 32))
    assert (small.steps, small.warmup_steps, small.decay_steps) == (500, 100, (200, 300, 400))
    assert (small.resize, small.crop, small.mixup_alpha, small.lr) == (160, 128, 0.0, 0.003)
    mid, large = bit_hyperrule(50_000, (224, 224)), bit_hyperrule(1_281_167, (300, 400))
    assert (mid.steps, mid.decay_steps, mid.crop, mid.mixup_alpha) == (10_000, (3000, 6000, 9000), 384, 0.1)
    assert (large.steps, large.warmup_steps, large.decay_steps) == (20_000, 500, (6000, 12_000, 18_000))
    assert small.lr_at(0) == 0.0 and small.lr_at(50) == pytest.approx(0.0015)
    assert [small.lr_at(s) for s in (150, 250, 350, 450)] == pytest.approx([3e-3, 3e-4, 3e-5, 3e-6])
    assert bit_hyperrule(5_000, (32, 32), scale=0.2).decay_steps == (40, 60, 80)


def test_preactivation_block_by_hand() -> None:
    """p = relu(gn(x)); y = conv3(relu(gn(conv2(relu(gn(conv1(p))))))) + proj(p)."""
    model = pz.create_model("resnetv2_50x1_bit", channels=(64, 128, 256, 512), num_classes=2)
    block = perturb_(model.stages[1].blocks[0]).eval()
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        p = torch.relu(block.norm1(x))
        y = block.conv3(torch.relu(block.norm3(block.conv2(torch.relu(block.norm2(block.conv1(p)))))))
        assert torch.allclose(block(x), y + block.downsample(p), atol=1e-5)


def test_batchnorm_baseline_and_features() -> None:
    """norm_layer="bn", weight_std=False is the plain pre-activation ResNet; features_only has timm's levels."""
    bn = pz.create_model("resnetv2_50x1_bit", norm_layer="bn", weight_std=False)
    assert isinstance(bn.stages[0].blocks[0].norm1, torch.nn.BatchNorm2d)
    assert type(bn.stages[0].blocks[0].conv1) is torch.nn.Conv2d
    feats = pz.create_model("resnetv2_50x1_bit", features_only=True)(torch.randn(1, 3, 64, 64))
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]


def test_zero_head_for_fine_tuning() -> None:
    model = pz.create_model("resnetv2_50x1_bit", channels=(64, 128, 256, 512))
    model.reset_classifier(5, zero_init=True)
    assert not model(torch.randn(2, 3, 32, 32)).any()
