"""EfficientNetV2 (Tan & Le, 2021) against torchvision and timm, and against the paper's Tables 4 and 7."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import macs, n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.models.classification._efficient_blocks import ConvBnAct, FusedMBConv, InvertedResidual
from paperzoo.models.classification.efficientnetv2 import EfficientNetV2

NAMES = ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l"]


@pytest.fixture(scope="module")
def tv_s() -> torch.nn.Module:
    return perturb_(torchvision.models.efficientnet_v2_s()).eval()


@pytest.mark.paper("efficientnetv2")
def test_s_equals_torchvision(tv_s: torch.nn.Module) -> None:
    ours = pz.load_weights(pz.create_model("efficientnetv2_s"), tv_s.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), tv_s(x)) < 1e-5


@pytest.mark.paper("efficientnetv2")
def test_s_equals_timm(tv_s: torch.nn.Module) -> None:
    """timm's efficientnetv2_s is the same network with BN eps 1e-5; the weights are torchvision's, moved over."""
    ours = pz.load_weights(pz.create_model("efficientnetv2_s", bn_eps=1e-5), tv_s.state_dict(), source="torchvision")
    ref = timm.create_model("efficientnetv2_s").eval()
    ref.load_state_dict({k.replace(".se.fc1.", ".se.conv_reduce.").replace(".se.fc2.", ".se.conv_expand."): v
                         for k, v in ours.state_dict().items()})
    ours = pz.load_weights(pz.create_model("efficientnetv2_s", bn_eps=1e-5), ref.state_dict(), source="timm").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("efficientnetv2")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_the_reference_tensors(name: str, record_property) -> None:
    """S, M and L hold torchvision's and timm's tensors (strict names and shapes, meta device)."""
    with torch.device("meta"):
        tv = getattr(torchvision.models, name.replace("v2_", "_v2_"))()
        strict_load(record_property, pz.create_model(name), tv.state_dict(), source="torchvision")
        strict_load(record_property, pz.create_model(name), timm.create_model(name).state_dict(), source="timm")


@pytest.mark.paper("efficientnetv2")
@pytest.mark.parametrize("name", ["tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l"])
def test_tf_variants_have_timms_tensors(name: str) -> None:
    """timm's tf_efficientnetv2_* (the paper's released weights) load strictly (meta device), with the paper's
    conv layout: the tf variant holds the same tensors as our symmetric-padding network of the same size."""
    with torch.device("meta"):
        ours = pz.load_weights(pz.create_model(name), timm.create_model(name).state_dict(), source="timm")
        plain = pz.create_model(name[3:])
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}


def _tf_pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    ref = perturb_(timm.create_model(name)).eval()
    return pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval(), ref


@pytest.mark.paper("efficientnetv2")
def test_tf_s_equals_timm(record_property) -> None:
    """tf_efficientnetv2_s equals timm's (TF "SAME" padding, BN eps 1e-3) at an even and an odd input size;
    the same weights in the symmetric-padding efficientnetv2_s give different logits, so the padding is tested."""
    ours, ref = _tf_pair("tf_efficientnetv2_s")
    plain = pz.load_weights(pz.create_model("efficientnetv2_s"), ref.state_dict(), source="timm").eval()
    worst, plain_err = 0.0, float("inf")
    for size in (64, 57):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            expected = ref(x)
            worst = max(worst, rel_err(ours(x), expected))
            plain_err = min(plain_err, rel_err(plain(x), expected))
    record_property("max_rel_err_vs_timm", worst)
    record_property("rel_err_of_symmetric_padding_vs_timm", plain_err)
    assert worst < 1e-4 and plain_err > 1e-2


@pytest.mark.slow
@pytest.mark.paper("efficientnetv2")
@pytest.mark.parametrize("name", ["tf_efficientnetv2_m", "tf_efficientnetv2_l"])
def test_tf_m_l_equal_timm(name: str, record_property) -> None:
    ours, ref = _tf_pair(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        err = rel_err(ours(x), ref(x))
    record_property("max_rel_err_vs_timm", err)
    assert err < 1e-4


def test_tf_same_padding_equals_timms_conv2d_same() -> None:
    """layers.padding against timm's create_conv2d(padding="same") for strided, dilated and odd/even cases; the
    pad puts the odd pixel after (bottom/right), as TF does."""
    from timm.layers import create_conv2d as timm_conv

    from paperzoo.layers.padding import create_conv2d, tf_same_pad

    assert tf_same_pad(64, 3, 2) == (0, 1) and tf_same_pad(57, 3, 2) == (1, 1) and tf_same_pad(10, 5, 1, 2) == (4, 4)
    for k, s, d, size in [(3, 2, 1, 64), (3, 2, 1, 57), (5, 2, 1, 30), (3, 1, 2, 20), (4, 1, 1, 9), (1, 1, 1, 8)]:
        ours, ref = create_conv2d(4, 6, k, s, d, padding="same"), timm_conv(4, 6, k, stride=s, dilation=d, padding="same")
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(1, 4, size, size + 1)
        with torch.no_grad():
            assert ours(x).shape == ref(x).shape and torch.allclose(ours(x), ref(x), atol=1e-6), (k, s, d, size)
    with pytest.raises(pz.PaperzooError, match="unknown padding 'valid'"):
        create_conv2d(4, 6, 3, padding="valid")


def test_tf_variant_compiles_fullgraph() -> None:
    rows = [("fused", 1, 1, 8, 1), ("fused", 4, 2, 16, 1), ("mbconv", 4, 2, 24, 1)]
    model = EfficientNetV2(rows, 8, num_classes=3, pad_type="same").eval()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x = torch.randn(2, 3, 31, 32)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-6)


@pytest.mark.paper("efficientnetv2")
@pytest.mark.parametrize("name, params_m, gflops", [("efficientnetv2_s", 22, 8.8), ("efficientnetv2_m", 54, 24),
                                                    ("efficientnetv2_l", 120, 53)])
def test_cost_matches_paper_table7(name: str, params_m: float, gflops: float) -> None:
    """Table 7 at 384 (S) and 480 (M, L): parameters within 3% (S: 21.5M for 22M) and FLOPs within 7%
    (S: 8.37B for 8.8B, L: 56.1B for 53B; the released code, which every implementation follows, counts so)."""
    with torch.device("meta"):
        model = pz.create_model(name)
        r = model.meta.input_size[-1]
        assert abs(n_params(model) / 1e6 - params_m) / params_m < 0.03
        assert abs(macs(model, torch.randn(1, 3, r, r)) / 1e9 - gflops) / gflops < 0.07


def test_s_is_table4() -> None:
    """Table 4: Fused-MBConv in stages 1-3 (without expansion in stage 1), MBConv with SE in 4-6,
    layers 2, 4, 4, 6, 9, 15 and channels 24, 48, 64, 128, 160, 256; a 24-filter stem; 1280 head channels."""
    m = pz.create_model("efficientnetv2_s")
    kinds = [type(s[0]) for s in m.blocks]
    assert kinds == [ConvBnAct, FusedMBConv, FusedMBConv, InvertedResidual, InvertedResidual, InvertedResidual]
    assert [len(s) for s in m.blocks] == [2, 4, 4, 6, 9, 15]
    assert all(b.has_skip for b in m.blocks[0]) and m.conv_stem.out_channels == 24
    assert [s[-1].conv_pwl.out_channels for s in list(m.blocks)[1:]] == [48, 64, 128, 160, 256]
    assert m.conv_head.out_channels == 1280


def test_features_kwargs_and_drop_path() -> None:
    m = pz.create_model("efficientnetv2_s", num_classes=3, in_chans=1, drop_path_rate=0.2)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    with torch.device("meta"):
        f = pz.create_model("efficientnetv2_s", features_only=True)
        feats = f(torch.randn(1, 3, 64, 64))
    assert [t.shape[1] for t in feats] == f.feature_info.channels() == [24, 48, 64, 160, 256]
    assert [64 // t.shape[-1] for t in feats] == f.feature_info.reduction() == [2, 4, 8, 16, 32]
