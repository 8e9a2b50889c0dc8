"""PPT (Ma et al., 2022): PPT-S's size, the human-token pruning rule and the kept-token counts."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import n_params

import paperzoo as pz
from paperzoo.models.pose.ppt import TokenPrunedPoseTransformer, keep_human_tokens


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
