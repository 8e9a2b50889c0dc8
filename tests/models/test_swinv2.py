"""Swin Transformer V2 (Liu et al., 2021) against timm and torchvision, its attention against the paper's
equations, and its sizes against the official model hub's table."""
from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from helpers import n_params, perturb_, rel_err
from test_swin import gmacs_on_meta, single_thread  # noqa: F401  (single_thread is autouse)

import paperzoo as pz
from paperzoo.models.classification.swinv2 import SwinTransformerV2, WindowAttentionV2, log_spaced_coords

NAMES = pz.list_models("swinv2_*")
MINI = dict(img_size=64, patch_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4))


def check_timm(name: str) -> None:
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("swinv2")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_architecture(name: str) -> None:
    with torch.device("meta"):
        ours, ref = pz.create_model(name), timm.create_model(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.mark.paper("swinv2")
@pytest.mark.parametrize("name", ["swinv2_tiny_window8_256", "swinv2_tiny_window16_256", "swinv2_small_window8_256"])
def test_equals_timm(name: str) -> None:
    """timm's SwinV2-T (window 8 and 16) and -S (random, res-post-norm gammas perturbed) give the same logits."""
    check_timm(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if "tiny" not in n and n != "swinv2_small_window8_256"])
def test_larger_variants_equal_timm(name: str) -> None:
    check_timm(name)


@pytest.mark.paper("swinv2")
def test_equals_torchvision_swin_v2_t() -> None:
    """torchvision's swin_v2_t (one qkv bias with a zeroed key third) maps onto ours. Its derived
    coordinate tables are persistent buffers; they are restored after perturbing (they are not weights)."""
    ref = torchvision.models.swin_v2_t()
    tables = {k: v.clone() for k, v in ref.state_dict().items() if k.endswith("relative_coords_table")}
    perturb_(ref).load_state_dict(tables, strict=False)
    ours = pz.load_weights(pz.create_model("swinv2_tiny_window8_256"), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert rel_err(ours(x), ref.eval()(x)) < 1e-5


@pytest.mark.paper("swinv2")
def test_window_transfer_equals_timm() -> None:
    """A model trained with windows 4 evaluated with windows 8 (pretrained_window_sizes): the log-CPB is
    re-evaluated on coordinates scaled by the pre-training window, as timm does (Table 6's setting)."""
    from timm.models.swin_transformer_v2 import SwinTransformerV2 as TimmV2

    ref = perturb_(TimmV2(window_size=8, pretrained_window_sizes=(4, 4), **MINI)).eval()
    ours = SwinTransformerV2(window_size=8, pretrained_window_sizes=(4, 4), **MINI)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours.eval()(x), ref(x)) < 1e-5


@pytest.mark.paper("swinv2")
def test_scaled_cosine_attention_and_log_cpb_follow_the_equations() -> None:
    """Eq. 2: Sim = cos(q, k) / tau + B with tau >= 0.01 (logit scale clamped at log 100); B = 16 sigmoid(
    MLP(sign(x) log2(1 + 8|x|/(M-1)) / log2 8)) — written out by hand here."""
    torch.manual_seed(1)
    attn = WindowAttentionV2(16, 2, (4, 4)).eval()
    with torch.no_grad():
        attn.logit_scale[0] = math.log(1000.0)  # beyond the clamp: must act as 100
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    x = torch.randn(3, 16, 16)
    w = attn.qkv.weight
    q = (x @ w[:16].T + attn.q_bias).view(3, 16, 2, 8).transpose(1, 2)
    k = (x @ w[16:32].T).view(3, 16, 2, 8).transpose(1, 2)
    v = (x @ w[32:].T + attn.v_bias).view(3, 16, 2, 8).transpose(1, 2)
    cos = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
    tau_inv = torch.tensor([100.0, 10.0]).view(2, 1, 1)
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    coords = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1) * 8 / 3
    coords = torch.sign(coords) * torch.log2(1 + coords.abs()) / math.log2(8)
    assert torch.allclose(log_spaced_coords((4, 4)), coords)
    table = attn.cpb_mlp(coords.view(-1, 2))  # (49, heads), offset (dh, dw) at (dh + 3) * 7 + (dw + 3)
    pos = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij"), -1).view(16, 2)
    rel = pos[:, None] - pos[None, :] + 3
    B = 16 * torch.sigmoid(table[rel[..., 0] * 7 + rel[..., 1]].permute(2, 0, 1))
    out = ((cos * tau_inv + B).softmax(-1) @ v).transpose(1, 2).reshape(3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(attn(x), attn.proj(out), atol=1e-5)


@pytest.mark.paper("swinv2")
def test_res_post_norm_blocks_start_as_identity() -> None:
    """Res-post-norm: x + LN(F(x)) with LN gains initialised to zero, so every block starts as identity."""
    model = pz.create_model("swinv2_tiny_window8_256", **MINI).eval()
    block = model.layers[0].blocks[1]
    x = torch.randn(1, 16, 16, 32)
    with torch.no_grad():
        assert torch.equal(block(x), x)


@pytest.mark.paper("swinv2")
@pytest.mark.parametrize("name", NAMES)
def test_params_and_flops_match_official_table(name: str) -> None:
    """SwinV2-T/S/B: 28/50/88M; 5.9/11.5/20.3G (window 8) and 6.6/12.6/21.8G (window 16) at 256x256."""
    meta = pz.model_meta(name)
    with torch.device("meta"):
        params = n_params(pz.create_model(name)) / 1e6
    assert abs(params - meta.paper_params_m) < 1.0
    assert abs(gmacs_on_meta(name) - meta.paper_gflops) / meta.paper_gflops < 0.02


def test_features_only_nchw_stages() -> None:
    model = pz.create_model("swinv2_tiny_window8_256", features_only=True, **MINI)
    assert [f.shape for f in model(torch.randn(1, 3, 64, 64))] == [(1, 32, 16, 16), (1, 64, 8, 8)]
