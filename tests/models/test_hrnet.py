"""HRNet (Sun et al., 2019): the classification backbones against timm, the pose networks against Table 1."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import n_params, perturb_, rel_err, strict_load
from torch.utils.flop_counter import FlopCounterMode

import paperzoo as pz


@pytest.mark.paper("hrnet")
@pytest.mark.parametrize("name", ["hrnet_w18_small", "hrnet_w18"])
def test_hrnet_w18_equals_timm(name: str) -> None:
    """timm's hrnet_w18 and hrnet_w18_small (random, perturbed weights: BN statistics and gammas included) load
    strictly and give the same logits at a small input (every branch, every fusion and the head take part)."""
    torch.manual_seed(0)
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("hrnet")
@pytest.mark.parametrize("name", ["hrnet_w32", "hrnet_w48"])
def test_larger_backbones_have_timm_tensors(name: str, record_property) -> None:
    """W32 and W48 hold exactly timm's tensors (names and shapes, strictly, on the meta device)."""
    with torch.device("meta"):
        ref = timm.create_model(name)
        strict_load(record_property, pz.create_model(name), ref.state_dict(), source="timm")


def _macs(model: torch.nn.Module, size: tuple[int, int]) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, *size, device="meta"))
    return counter.get_total_flops() / 2


@pytest.mark.paper("hrnet")
@pytest.mark.parametrize("name, params_m, gflops", [("pose_hrnet_w32", 28.5, 7.1), ("pose_hrnet_w48", 63.6, 14.6)])
def test_pose_nets_match_table1(name: str, params_m: float, gflops: float, record_property) -> None:
    """Table 1 (COCO val, 256x192): HRNet-W32 28.5M parameters and 7.1 GFLOPs, HRNet-W48 63.6M and 14.6.
    The official code's summary counts convolution multiply-adds and divides by 1024^3 (its "GFLOPs")."""
    with torch.device("meta"):
        model = pz.create_model(name).eval()
    p = n_params(model) / 1e6
    g = _macs(model, (256, 192)) / 1024 ** 3
    record_property("params_m", round(p, 3)), record_property("gflops_mac_per_2^30", round(g, 3))
    assert round(p, 1) == params_m
    assert round(g, 1) == gflops
    assert model.meta.paper_params_m == params_m and model.meta.paper_gflops == gflops


def test_pose_heatmaps_at_quarter_resolution() -> None:
    """Heatmaps at 1/4 of the input, one per keypoint, from the high-resolution branch."""
    with torch.device("meta"):
        model = pz.create_model("pose_hrnet_w32", num_keypoints=17)
        y = model(torch.empty(1, 3, 128, 96))
    assert y.shape == (1, 17, 32, 24)
    assert model.meta.task == "pose"
    last = model.stage4[-1]
    assert len(last.fuse_layers) == 1 and all(len(u.fuse_layers) == 4 for u in model.stage4[:-1])


@pytest.mark.paper("hrnet")
@pytest.mark.parametrize("name, width", [("pose_hrnet_w32", 32), pytest.param("pose_hrnet_w48", 48, marks=pytest.mark.slow)])
def test_pose_nets_have_the_official_checkpoint_layout(name: str, width: int, record_property) -> None:
    """The official pose code (leoxiaobin/deep-high-resolution-net.pytorch, lib/models/pose_hrnet.py) names its tensors
    as timm's classifier does, keeps only the 1/4 branch in the last module's fusion (``multi_scale_output=False``)
    and ends in ``final_layer``, a 1x1 convolution to the heatmaps. So a pose checkpoint's tensors are timm's backbone
    tensors without the classification head and without ``stage4.2.fuse_layers.1-3``, plus ``final_layer``; ours
    are exactly those, with the same shapes."""
    with torch.device("meta"):
        ref = timm.create_model(f"hrnet_w{width}").state_dict()
        ours = pz.create_model(name, num_keypoints=17).state_dict()
    head = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")
    expected = {k: v.shape for k, v in ref.items()
                if not k.startswith(head) and not any(k.startswith(f"stage4.2.fuse_layers.{i}.") for i in (1, 2, 3))}
    expected.update({"final_layer.weight": (17, width, 1, 1), "final_layer.bias": (17,)})
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v) for k, v in expected.items()}
    record_property("num_tensors", len(ours))
    with torch.device("meta"):
        model = pz.create_model(name)
        pz.load_weights(model, {k: torch.empty(v) for k, v in expected.items()}, source="official")
