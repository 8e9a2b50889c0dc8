"""Feature Pyramid Networks (arXiv 1612.03144): the neck against torchvision's FeaturePyramidNetwork, the RoI-to-level
assignment of eq. 1 on hand-computed boxes and against torchvision's MultiScaleRoIAlign, one anchor size per level."""
from __future__ import annotations

import math
import re
from collections import OrderedDict

import pytest
import torch
from helpers import perturb_
from torch import nn
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import LevelMapper

import paperzoo as pz
from paperzoo.models.detection._parts.anchors import AnchorGenerator
from paperzoo.models.detection._parts.fpn import FeaturePyramid, fpn_level
from paperzoo.models.detection._parts.poolers import RoIPooler


def _tv_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision FPN keys -> ours (test-only map): inner_blocks.i.0 -> lateral.i.conv, .1 -> .bn; layer_blocks ->
    output."""
    out = {}
    for k, v in state.items():
        kind, i, pos, rest = re.match(r"(inner_blocks|layer_blocks)\.(\d+)\.(0|1)\.(.+)", k).groups()
        out[f"{'lateral' if kind == 'inner_blocks' else 'output'}.{i}.{'conv' if pos == '0' else 'bn'}.{rest}"] = v
    return out


@pytest.mark.paper("fpn")
@pytest.mark.parametrize("norm", [None, nn.BatchNorm2d], ids=["paper", "batchnorm"])
def test_neck_equals_torchvision(norm, record_property) -> None:
    """Our neck on a features_only ResNet-18 (odd map sizes, so the top-down upsampling is not an exact 2x) equals
    torchvision's FeaturePyramidNetwork + LastLevelMaxPool with the same (perturbed) weights."""
    body = pz.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4), as_dict=True).eval()
    ref = perturb_(FeaturePyramidNetwork(body.out_channels, 64, extra_blocks=LastLevelMaxPool(), norm_layer=norm)).eval()
    ours = FeaturePyramid(body.out_channels, 64, norm_layer=norm).eval()
    ours.load_state_dict(_tv_to_ours(ref.state_dict()))
    with torch.no_grad():
        feats = body(torch.randn(2, 3, 100, 140))
        out, expected = ours(feats), ref(feats)
    assert list(out) == list(expected) == ["0", "1", "2", "3", "pool"]
    err = max(float((out[k] - expected[k]).abs().max()) for k in out)
    record_property("max_abs_err_vs_torchvision", err)
    assert err < 1e-5
    assert torch.equal(out["pool"], out["3"][..., ::2, ::2])  # P6: a stride-2 subsampling of P5 (Sec. 4.1)
    assert all(v.shape[1] == 64 for v in out.values())


@pytest.mark.paper("fpn")
def test_level_mapper_eq1_by_hand(record_property) -> None:
    """k = floor(4 + log2(sqrt(wh) / 224)) clamped to [2, 5]: a 224 px box -> P4, 112 -> P3, 448 -> P5, 56 -> P2;
    just under 224 -> P3; 10 px and 2000 px boxes clamp to P2 and P5; a 224 x 56 box (sqrt = 112) -> P3."""
    sides = [(224, 224), (112, 112), (448, 448), (56, 56), (223, 223), (10, 10), (2000, 2000), (224, 56), (300, 300)]
    boxes = torch.tensor([[5.0, 7.0, 5.0 + w, 7.0 + h] for w, h in sides])
    expected = [4, 3, 5, 2, 3, 2, 5, 3, 4]
    got = fpn_level(boxes, 2, 5).tolist()
    record_property("levels", got)
    assert got == expected
    by_formula = [min(5, max(2, math.floor(4 + math.log2(math.sqrt(w * h) / 224) + 1e-6))) for w, h in sides]
    assert got == by_formula


@pytest.mark.paper("fpn")
def test_pooler_equals_multiscale_roialign(record_property) -> None:
    """RoIAlign from the level eq. 1 picks equals torchvision's MultiScaleRoIAlign (whose LevelMapper implements the
    same equation), over boxes of every size; the level assignment itself equals LevelMapper's."""
    g = torch.Generator().manual_seed(0)
    sizes = {"0": 128, "1": 64, "2": 32, "3": 16, "pool": 8}  # strides 4..64 for a 512 px batch
    feats = OrderedDict((k, torch.randn(2, 4, s, s, generator=g)) for k, s in sizes.items())
    xy = torch.rand(300, 2, generator=g) * 20
    wh = torch.exp(torch.rand(300, 2, generator=g) * math.log(490)) + 1  # 2 .. 490 px, log-uniform
    boxes = torch.cat([torch.cat([xy, xy + wh], dim=1), torch.tensor([[0.0, 0.0, 460.0, 470.0], [10.0, 5.0, 500.0, 480.0]])])
    per_image = [boxes[:180], boxes[180:]]  # the second image holds the two large boxes
    image_sizes = [(512, 512), (500, 512)]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(per_image)])
    ours = RoIPooler(["0", "1", "2", "3"], 7, 2)(feats, rois, image_sizes)
    ref = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)(feats, per_image, image_sizes)
    err = float((ours - ref).abs().max())
    record_property("max_abs_err_vs_torchvision", err)
    assert err == 0.0
    levels = fpn_level(boxes, 2, 5) - 2
    assert torch.equal(levels, LevelMapper(2, 5)(per_image))
    assert set(levels.tolist()) == {0, 1, 2, 3}  # every level is exercised


@pytest.mark.paper("fpn")
def test_anchors_one_size_per_level(record_property) -> None:
    """FPN's RPN (Sec. 4.1): anchors of one area per level, 32^2 on P2 ... 512^2 on P6, with ratios 1:2, 1:1, 2:1 (3
    per position), centred on each position of a map of stride 4 ... 64."""
    with torch.device("meta"):
        model = pz.create_model("fasterrcnn_resnet50_fpn")
    gen = model.rpn.anchor_generator
    assert gen.sizes == ((32,), (64,), (128,), (256,), (512,)) and gen.num_anchors_per_location() == [3] * 5
    assert model.rpn.head.objectness.out_channels == 3 and model.rpn.head.deltas.out_channels == 12
    gen = AnchorGenerator(gen.sizes, gen.aspect_ratios)
    maps = [torch.zeros(1, 1, 256 // s, 256 // s) for s in (4, 8, 16, 32, 64)]
    anchors = gen((256, 256), maps).split([m.numel() * 3 for m in maps])
    areas = []
    for a, size, stride in zip(anchors, (32, 64, 128, 256, 512), (4, 8, 16, 32, 64)):
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        areas.append(float((w * h).mean()))
        assert ((w * h - size**2).abs() / size**2 < 0.02).all()  # whole-pixel rounding only
        assert torch.allclose((h / w)[:3], torch.tensor([0.5, 1.0, 2.0]), rtol=0.05)
        centres = (a[:, :2] + a[:, 2:]) / 2
        assert torch.equal(centres[:3], torch.zeros(3, 2)) and torch.equal(centres[3], torch.tensor([float(stride), 0.0]))
    record_property("mean_anchor_area_per_level", areas)
