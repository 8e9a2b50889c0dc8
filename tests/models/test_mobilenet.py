"""MobileNet v1 (Howard et al., 2017) against timm and against the paper's Tables 1, 6 and 7."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import macs, n_params, perturb_, rel_err

import paperzoo as pz
from paperzoo.models.classification._efficient_blocks import ConvBnAct, DepthwiseSeparable
from paperzoo.models.classification.mobilenet import MobileNetV1


@pytest.fixture(scope="module")
def ref() -> torch.nn.Module:
    return perturb_(timm.create_model("mobilenetv1_100")).eval()


@pytest.mark.paper("mobilenet")
def test_equals_timm(ref: torch.nn.Module) -> None:
    ours = pz.load_weights(pz.create_model("mobilenetv1_100"), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("mobilenet")
@pytest.mark.parametrize("name, params_m, madds_m", [
    ("mobilenetv1_100", 4.2, 569), ("mobilenetv1_075", 2.6, 325), ("mobilenetv1_050", 1.3, 149), ("mobilenetv1_025", 0.5, 41),
])
def test_width_multiplier_matches_paper_table6(name: str, params_m: float, madds_m: int) -> None:
    """Table 6: parameters and mult-adds of 1.0, 0.75, 0.5 and 0.25 MobileNet-224."""
    with torch.device("meta"):
        model = pz.create_model(name)
        assert round(n_params(model) / 1e6, 1) == params_m
        assert round(macs(model, torch.randn(1, 3, 224, 224)) / 1e6) == madds_m


@pytest.mark.paper("mobilenet")
@pytest.mark.parametrize("size, madds_m", [(224, 569), (192, 418), (160, 290), (128, 186)])
def test_resolution_multiplier_matches_paper_table7(size: int, madds_m: int) -> None:
    """Table 7: the resolution multiplier is the input size; mult-adds within 0.5 M of the paper's."""
    with torch.device("meta"):
        model = pz.create_model("mobilenetv1_100")
        assert abs(macs(model, torch.randn(1, 3, size, size)) / 1e6 - madds_m) < 1


@pytest.mark.paper("mobilenet")
def test_depthwise_separable_cost_ratio_eq5() -> None:
    """Eq. 5: the separable layer costs 1/N + 1/D_K^2 of the full conv (N = 64 outputs, D_K = 3)."""
    sep, full = DepthwiseSeparable(32, 64, 3), ConvBnAct(32, 64, 3)
    x = torch.randn(1, 32, 14, 14)
    assert macs(sep, x) / macs(full, x) == pytest.approx(1 / 64 + 1 / 9)


def test_table1_layout() -> None:
    """Table 1: 28 layers (stem, 13 depthwise + 13 pointwise convs, FC); no residual connections."""
    model = pz.create_model("mobilenetv1_100")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 27 and sum(c.groups > 1 for c in convs) == 13
    assert not any(getattr(b, "has_skip", False) for b in model.blocks.modules())


@pytest.mark.paper("mobilenet")
def test_full_conv_baseline_matches_paper_table4() -> None:
    """Table 4: the same network with full 3x3 convolutions has 29.3M parameters and 4866M mult-adds."""
    with torch.device("meta"):
        full = MobileNetV1(full_conv=True)
        assert round(n_params(full) / 1e6, 1) == 29.3
        assert abs(macs(full, torch.randn(1, 3, 224, 224)) / 1e6 - 4866) < 2


def test_features_equal_timm(ref: torch.nn.Module) -> None:
    ours = pz.create_model("mobilenetv1_100", features_only=True)
    pz.load_weights(ours, ref.state_dict(), source="timm")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=5, intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


def test_pretrained_from_a_local_timm_file(ref: torch.nn.Module, tmp_path) -> None:
    """create_model(pretrained="timm::path") reads a timm checkpoint through the key map."""
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    ours = pz.create_model("mobilenetv1_100", pretrained=f"timm::{path}").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


def test_common_kwargs() -> None:
    m = pz.create_model("mobilenetv1_050", num_classes=4, in_chans=1, drop_path_rate=0.1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 4)
