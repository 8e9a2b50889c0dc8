"""ConvNeXt (Liu et al., 2022) against timm, torchvision and the official checkpoint layout, and against
the paper's Table 9 parameter and FLOP counts."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from helpers import n_params, perturb_, rel_err
from test_swin import gmacs_on_meta, single_thread  # noqa: F401  (single_thread is autouse)

import paperzoo as pz

NAMES = pz.list_models("convnext_*")


def check(name: str, ref: torch.nn.Module, source: str) -> None:
    ref = perturb_(ref).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source=source).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("convnext")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_architecture(name: str) -> None:
    with torch.device("meta"):
        ours, ref = pz.create_model(name), timm.create_model(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's ConvNeXt-T (random; layer scales perturbed away from 1e-6) and ours loaded from its weights."""
    ref = perturb_(timm.create_model("convnext_tiny")).eval()
    return pz.load_weights(pz.create_model("convnext_tiny"), ref.state_dict(), source="timm").eval(), ref


@pytest.mark.paper("convnext")
def test_convnext_t_equals_timm(tiny) -> None:
    """timm's ConvNeXt-T loads strictly and gives the same logits at 64x64."""
    ours, ref = tiny
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("convnext")
def test_convnext_s_equals_timm() -> None:
    check("convnext_small", timm.create_model("convnext_small"), "timm")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_base", "convnext_large", "convnext_xlarge"])
def test_larger_variants_equal_timm(name: str) -> None:
    check(name, timm.create_model(name), "timm")


@pytest.mark.paper("convnext")
def test_equals_torchvision_convnext_tiny() -> None:
    """torchvision's layout (features list, block.0-5, layer_scale (C,1,1), classifier list) maps onto ours."""
    check("convnext_tiny", torchvision.models.convnext_tiny(), "torchvision")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["convnext_small", "convnext_base", "convnext_large"])
def test_larger_variants_equal_torchvision(name: str) -> None:
    check(name, getattr(torchvision.models, name)(), "torchvision")


@pytest.mark.paper("convnext")
def test_official_checkpoint_layout_loads_like_timm_filter(tiny) -> None:
    """The official repository's names (downsample_layers, dwconv, pwconv1/2, norm, head) load into the same
    network through our converter as through timm's checkpoint filter."""
    from timm.models.convnext import checkpoint_filter_fn

    _, ref = tiny
    official = {}
    for key, value in ref.state_dict().items():
        key = key.replace("stem.", "downsample_layers.0.").replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        key = re.sub(r"stages\.(\d+)\.downsample\.", r"downsample_layers.\1.", key)
        key = re.sub(r"stages\.(\d+)\.blocks\.", r"stages.\1.", key)
        key = key.replace("head.norm.", "norm.").replace("head.fc.", "head.")
        official[key] = value
    filtered = checkpoint_filter_fn(dict(official), ref)  # timm reads it back as the very same network
    assert filtered.keys() == ref.state_dict().keys() and all(torch.equal(filtered[k], v) for k, v in ref.state_dict().items())
    ours = pz.load_weights(pz.create_model("convnext_tiny"), official, source="official").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("convnext")
def test_features_only_equals_timm(tiny) -> None:
    """features_only gives the four stage outputs (strides 4-32, NCHW) as timm's forward_intermediates."""
    _, ref = tiny
    ours = pz.create_model("convnext_tiny", features_only=True)
    pz.load_weights(ours, ref.state_dict(), source="timm")
    assert ours.feature_info.channels() == [96, 192, 384, 768] and ours.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


@pytest.mark.paper("convnext")
@pytest.mark.parametrize("name", NAMES)
def test_params_and_flops_match_paper(name: str) -> None:
    """ConvNeXt-T/S/B/L/XL: 28/50/89/198/350M and 4.5/8.7/15.4/34.4/60.9 GFLOPs at 224x224 (within 2%)."""
    meta = pz.model_meta(name)
    with torch.device("meta"):
        params = n_params(pz.create_model(name)) / 1e6
    assert abs(params - meta.paper_params_m) < 1.0
    assert abs(gmacs_on_meta(name) - meta.paper_gflops) / meta.paper_gflops < 0.02


def test_block_is_fig4() -> None:
    """y = x + gamma * fc2(GELU(fc1(LN(dwconv7x7(x))))) with gamma initialised to 1e-6 (Fig. 4, section 2.6)."""
    block = pz.create_model("convnext_tiny").stages[0].blocks[0].eval()
    assert torch.all(block.gamma == 1e-6) and block.conv_dw.kernel_size == (7, 7) and block.conv_dw.groups == 96
    torch.nn.init.normal_(block.gamma)
    x = torch.randn(1, 96, 8, 8)
    h = torch.nn.functional.layer_norm(block.conv_dw(x).permute(0, 2, 3, 1), (96,), block.norm.weight, block.norm.bias, 1e-6)
    h = block.mlp.fc2(torch.nn.functional.gelu(block.mlp.fc1(h))) * block.gamma
    with torch.no_grad():
        assert torch.allclose(block(x), x + h.permute(0, 3, 1, 2), atol=1e-5)


def test_common_kwargs() -> None:
    m = pz.create_model("convnext_tiny", num_classes=3, in_chans=1, drop_path_rate=0.1, dims=(16, 32, 64, 128), depths=(1, 1, 1, 1))
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
