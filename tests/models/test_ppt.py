"""PPT (Ma et al., 2022): PPT-S's and PPT-B's sizes, the human-token pruning rule, the kept-token counts, and PPT-S,
PPT-B and the multi-view PPT against the official code (a committed fixture of its outputs, tests/fixtures/ppt)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from helpers import n_params
from safetensors import safe_open

import paperzoo as pz
from paperzoo.errors import ConfigError
from paperzoo.models.pose.ppt import TokenPrunedPoseTransformer, keep_human_tokens
from paperzoo.weights import load_weights


@pytest.mark.paper("ppt")
def test_ppt_s_has_6_6m_parameters(record_property) -> None:
    """PPT-S (TokenPose-S-v1 with pruning; pruning adds no parameters): 6.6M for 17 COCO keypoints at 256x192 (the
    official config: dim 192, 12 layers, 8 heads, MLP ratio 3, 4x3 patches, the fixed sine embedding is no parameter)."""
    with torch.device("meta"):
        model = pz.create_model("ppt_small")
    p = n_params(model) / 1e6
    record_property("params_m", round(p, 4))
    assert round(p, 1) == 6.6


@pytest.mark.paper("ppt")
def test_pruning_rule_keeps_the_tokens_keypoints_attend_to() -> None:
    """Eq. 1-2 on a hand case: 2 keypoint tokens, 5 visual tokens; scores = attention summed over keypoints
    [0.1+0.0, 0.5+0.1, 0.1+0.6, 0.2+0.2, 0.1+0.1] = [0.1, 0.6, 0.7, 0.4, 0.2]; ratio 0.5 keeps ceil(2.5) = 3 tokens,
    2, 1 and 3 (highest first), with their position embeddings; the keypoint tokens stay in front."""
    x = torch.arange(7.0)[None, :, None].expand(1, 7, 2).clone()  # token t carries the value t
    pos = 10 + torch.arange(5.0)[None, :, None].expand(1, 5, 2).clone()
    attn = torch.tensor([[[0.1, 0.5, 0.1, 0.2, 0.1], [0.0, 0.1, 0.6, 0.2, 0.1]]])
    kept, kept_pos, idx = keep_human_tokens(x, pos, attn, keypoints=2, ratio=0.5)
    assert idx.tolist() == [[2, 1, 3]]
    assert kept[0, :, 0].tolist() == [0.0, 1.0, 4.0, 3.0, 5.0]  # keypoints 0, 1, then visual tokens 2, 1, 3
    assert kept_pos[0, :, 0].tolist() == [12.0, 11.0, 13.0]


@pytest.mark.paper("ppt")
def test_kept_tokens_follow_the_keypoint_attention(record_property) -> None:
    """In the network: at each pruning layer (4, 7, 10 of 12) ceil(0.7 N) visual tokens remain (256 -> 180 -> 126 -> 89 at
    256x192), and the first pruning keeps exactly the top tokens of the keypoint tokens' attention computed from the
    definition (softmax(q k^T / sqrt(dim)) of the keypoint queries, mean over heads, sum over keypoints)."""
    torch.manual_seed(0)
    model = TokenPrunedPoseTransformer(num_keypoints=3, input_size=(64, 48), patch=(2, 2), dim=32, depth=5, heads=4,
                                       prune_at=(2, 4)).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        out = model(x)
        counts = [k.shape[1] for k in model.kept]
        n = 8 * 6
        assert counts == [math.ceil(0.7 * n), math.ceil(0.7 * math.ceil(0.7 * n))] and out.shape == (2, 3, 16, 12)
        # the definition, by hand, up to the first pruning layer
        j, pos = 3, model.pos_embedding.expand(2, -1, -1)
        t = torch.cat([model.keypoint_token.expand(2, -1, -1), model.tokens(x) + pos], 1)
        for i, layer in enumerate(model.layers[:3]):
            if i > 0:
                t = torch.cat([t[:, :j], t[:, j:] + pos], 1)
            h = layer.norm1(t)
            q, k, v = layer.attn.to_qkv(h).chunk(3, -1)
            split = lambda z: z.view(2, -1, 4, 8).transpose(1, 2)  # noqa: E731
            a = torch.softmax(split(q) @ split(k).transpose(-2, -1) / math.sqrt(32), -1)
            if i == 2:
                scores = a[:, :, :j, j:].mean(1).sum(1)
                expected = scores.topk(counts[0], dim=1).indices
                break
            t = t + layer.attn.to_out((a @ split(v)).transpose(1, 2).reshape(2, -1, 32))
            t = t + layer.mlp(layer.norm2(t))
    assert torch.equal(model.kept[0], expected)
    record_property("kept_per_pruning_layer", counts)


def test_keep_ratio_one_prunes_nothing_and_pruning_saves_macs(record_property) -> None:
    from paperzoo.cost import macs

    model = pz.create_model("ppt_small", num_keypoints=4, input_size=(64, 48)).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 48), keep_ratio=1.0)
    assert model.kept == []
    full = macs(model, (64, 48))  # default keep ratio 0.7
    model.keep_ratio = 1.0
    unpruned = macs(model, (64, 48))
    record_property("mac_ratio_pruned_over_full", round(full / unpruned, 3))
    assert full < 0.95 * unpruned


# ------------------------------------------------------------------------------------------- the official code
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ppt" / "ppt_reduced.safetensors"


def _fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _regenerate(shapes: list, seed: int) -> dict[str, torch.Tensor]:
    """The fixture's weights, drawn again as tests/fixtures/ppt/README.md says."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes:
        if k.endswith("num_batches_tracked"):
            out[k] = torch.zeros(shape, dtype=torch.long)
            continue
        r = torch.randn(shape, generator=g)
        if k.endswith("running_var"):
            out[k] = r.abs() * 0.5 + 0.5
        elif k.endswith("weight") and len(shape) == 1:
            out[k] = 1 + 0.1 * r
        elif len(shape) >= 2 and not k.endswith("token"):
            out[k] = r / math.sqrt(math.prod(shape[1:]))
        else:
            out[k] = 0.1 * r
    return out


def _inputs(meta) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    size = json.loads(meta["image_size"])
    cfg = json.loads(meta["config"])
    n = (size[0] // 4 // cfg["patch"][0]) * (size[1] // 4 // cfg["patch"][1])
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, *size, generator=g)
    view2 = torch.randn(2, 3, *size, generator=g)
    rays = [torch.randn(2, n, 3, generator=g) for _ in range(2)]
    centers = [torch.randn(2, 1, 3, generator=g) for _ in range(2)]
    sums = [float(t.double().sum()) for t in [x, view2, *rays, *centers]]
    assert max(abs(a - b) for a, b in zip(sums, json.loads(meta["input_sums"]))) < 1e-6, "torch drew other inputs"
    return x, view2, rays, centers


def _load(name: str, meta, key: str, seed: int, **kw):
    state = _regenerate(json.loads(meta[f"{key}_shapes"]), seed)
    sums = json.loads(meta[f"{key}_sums"])
    assert max(abs(float(state[k].double().sum()) - v) / max(1.0, abs(v)) for k, v in sums.items()) < 1e-5
    cfg = json.loads(meta["config"])
    model = pz.create_model(name, num_keypoints=cfg["keypoints"], input_size=tuple(json.loads(meta["image_size"])),
                            patch=tuple(cfg["patch"]), dim=cfg["dim"], depth=cfg["depth"], heads=cfg["heads"], **kw).eval()
    load_weights(model, state, source="official")
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.paper("ppt")
def test_ppt_s_equals_the_official_model(record_property) -> None:
    """HowieMa/PPT's TokenPose_S_base (128x96, 4x3 patches, dim 32, 12 layers, pruning at layers 3, 6, 9 with keep
    ratio 0.7, and unpruned): its weights load with ``source="official"`` and the heatmaps agree."""
    data, meta = _fixture()
    x, *_ = _inputs(meta)
    model = _load("ppt_small", meta, "ppt_s", 11)
    with torch.no_grad():
        pruned, full = model(x), model(x, keep_ratio=1.0)
    record_property("rel_err_pruned", _rel(pruned, data["ppt_s_out_r07"]))
    assert _rel(pruned, data["ppt_s_out_r07"]) < 1e-5 and _rel(full, data["ppt_s_out_r1"]) < 1e-5
    assert _rel(pruned, data["ppt_s_out_r1"]) > 1e-3  # pruning changes the output: the kept set is exercised


@pytest.mark.paper("ppt")
def test_ppt_b_equals_the_official_model(record_property) -> None:
    """TokenPose-B with pruning (PPT-B): HRNet stages 1-3 (width 8 here) as the stem, head-dimension attention scale."""
    data, meta = _fixture()
    x, *_ = _inputs(meta)
    model = _load("ppt_base", meta, "ppt_b", 12, hrnet_width=int(meta["ppt_b_hrnet_width"]))
    with torch.no_grad():
        out = model(x)
    record_property("rel_err", _rel(out, data["ppt_b_out_r07"]))
    assert _rel(out, data["ppt_b_out_r07"]) < 1e-5
    for layer in model.layers:  # the dim ** -0.5 scale of PPT-S would be off
        layer.attn.scale = 32 ** -0.5
    with torch.no_grad():
        assert _rel(model(x), data["ppt_b_out_r07"]) > 1e-3


@pytest.mark.paper("ppt")
def test_multiview_human_area_fusion_equals_the_official_model(record_property) -> None:
    """The official multi-view PPT on two views: layers 1-10 per view with pruning, then the keypoint and kept human
    tokens of both views through the last two layers, with the 3-D position embedding of the camera rays
    (normalised ray - centre) added to the kept tokens' 2-D one."""
    data, meta = _fixture()
    x, view2, rays, centers = _inputs(meta)
    model = _load("ppt_small", meta, "multiview", 13, multiview=True)
    directions = [r - c for r, c in zip(rays, centers)]
    with torch.no_grad():
        out = model.forward_views(torch.stack([x, view2], 1), directions=directions)
        alone = torch.stack([model(x), model(view2)], 1)
        no_rays = model.forward_views([x, view2])
    expected = data["multiview_out"]
    record_property("rel_err", _rel(out, expected))
    assert out.shape == (2, 2, 5, 32, 24) and _rel(out, expected) < 1e-5
    assert _rel(alone, expected) > 1e-3 and _rel(no_rays, expected) > 1e-3  # the fusion and the rays both matter
    assert len(model.kept) == 2 * 3  # three prunings per view


def test_ppt_b_size_and_multiview_errors() -> None:
    """PPT-B: 13.5M parameters (paper Table 1, the official TokenPose-B config); the multi-view call checks its
    arguments."""
    with torch.device("meta"):
        base = pz.create_model("ppt_base")
    assert round(n_params(base) / 1e6, 1) == 13.5
    model = pz.create_model("ppt_small", num_keypoints=3, input_size=(64, 48), patch=(2, 2), dim=16, depth=4, heads=2)
    views = torch.randn(1, 2, 3, 64, 48)
    with pytest.raises(ConfigError, match="multiview=True"):
        model.forward_views(views, directions=[torch.randn(1, 48, 3)] * 2)
    with pytest.raises(ConfigError, match="fuse_from"):
        model.forward_views(views, fuse_from=9)
    assert model.forward_views(views, fuse_from=4).shape == (1, 2, 3, 16, 12)  # no fused layer: the views stay apart
    with torch.no_grad():
        apart = model.forward_views(views, fuse_from=4)
        assert torch.allclose(apart[:, 0], model(views[:, 0]), atol=1e-5)


@pytest.mark.paper("ppt")
@pytest.mark.parametrize("name, unpruned", [("ppt_small", 2.4), ("ppt_base", 6.0)])
def test_gflops_match_the_papers_table(name: str, unpruned: float, record_property) -> None:
    """At 256x192 and keep ratio 0.7: PPT-S 2.0 and PPT-B 5.6 GFLOPs (multiply-accumulates / 1e9, Table 1); without
    pruning the networks are TokenPose-S-v1 (2.4) and TokenPose-B (6.0)."""
    from paperzoo.cost import macs

    torch.manual_seed(0)
    model = pz.create_model(name)
    pruned = macs(model, (256, 192)) / 1e9
    model.keep_ratio = 1.0
    full = macs(model, (256, 192)) / 1e9
    record_property("gflops_pruned", round(pruned, 3)), record_property("gflops_unpruned", round(full, 3))
    assert abs(pruned - model.meta.paper_gflops) / model.meta.paper_gflops < 0.02
    assert abs(full - unpruned) / unpruned < 0.02
