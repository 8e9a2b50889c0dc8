"""HRFormer (Yuan et al., 2021): the pose networks' sizes against the paper's COCO table, the local-window attention
against its definition, and the depthwise FFN."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import n_params, rel_err

import paperzoo as pz
from paperzoo.models.pose.hrformer import DWFFN, WindowAttention


@pytest.mark.paper("hrformer")
@pytest.mark.parametrize("name, params_m, tol", [("hrformer_tiny", 2.5, 0.0), ("hrformer_small", 7.8, 0.01),
                                                 ("hrformer_base", 43.2, 0.0)])
def test_params_match_the_papers_coco_table(name: str, params_m: float, tol: float, record_property) -> None:
    """COCO val, 256x192: HRFormer-T 2.5M, -S 7.8M, -B 43.2M parameters (the official configs: widths 18/32/78, two
    transformer blocks per branch, 1-3-2 / 1-4-2 / 1-4-2 modules). T and B round to the table's figure; S has 7.747M,
    which the table gives as 7.8M (within 1%)."""
    with torch.device("meta"):
        model = pz.create_model(name)
    p = n_params(model) / 1e6
    record_property("params_m", round(p, 4))
    if tol == 0.0:
        assert round(p, 1) == params_m
    else:
        assert abs(p - params_m) / params_m < tol


def _naive_window_attention(attn: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """The definition, window by window: centre zero-padding to a multiple of the window, softmax(q k^T / sqrt(d) + B) v
    per head with the relative position bias B[i, j] = table[(dy + s - 1) * (2s - 1) + dx + s - 1], then the output
    projection, the padding removed."""
    b, h, w, c = x.shape
    s, heads = attn.window, attn.heads
    ph, pw = math.ceil(h / s) * s - h, math.ceil(w / s) * s - w
    xp = torch.zeros(b, h + ph, w + pw, c)
    xp[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w] = x
    out = torch.zeros_like(xp)
    pos = [(i, j) for i in range(s) for j in range(s)]
    bias = torch.empty(heads, s * s, s * s)
    for a, (ya, xa) in enumerate(pos):
        for bb, (yb, xb) in enumerate(pos):
            bias[:, a, bb] = attn.relative_position_bias_table[(ya - yb + s - 1) * (2 * s - 1) + (xa - xb + s - 1)]
    bias = bias if attn.relative_bias else torch.zeros_like(bias)
    wq, wk, wv = attn.qkv.weight.chunk(3)
    bq, bk, bv = attn.qkv.bias.chunk(3)
    d = c // heads
    for n in range(b):
        for y0 in range(0, h + ph, s):
            for x0 in range(0, w + pw, s):
                t = xp[n, y0:y0 + s, x0:x0 + s].reshape(s * s, c)
                q, k, v = t @ wq.T + bq, t @ wk.T + bk, t @ wv.T + bv
                heads_out = []
                for m in range(heads):
                    sl = slice(m * d, (m + 1) * d)
                    a = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d) + bias[m], -1)
                    heads_out.append(a @ v[:, sl])
                o = torch.cat(heads_out, -1) @ attn.proj.weight.T + attn.proj.bias
                out[n, y0:y0 + s, x0:x0 + s] = o.reshape(s, s, c)
    return out[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]


@pytest.mark.paper("hrformer")
@pytest.mark.parametrize("relative_bias", [False, True])
def test_window_attention_is_its_definition(relative_bias: bool) -> None:
    """Local-window MSA (Eq. 1-2), as released (no bias in the logits) and with the relative position bias, on a 9x12
    map (padded to 14x14, four windows): the batched SDPA version equals the window-by-window definition."""
    torch.manual_seed(0)
    attn = WindowAttention(8, heads=2, window=7, relative_bias=relative_bias)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
        x = torch.randn(2, 9, 12, 8)
        assert rel_err(attn(x), _naive_window_attention(attn, x)) < 1e-5


def test_heatmaps_at_quarter_resolution() -> None:
    model = pz.create_model("hrformer_tiny", num_keypoints=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5, 16, 16)


def test_ffn_mixes_neighbouring_windows() -> None:
    """Eq. 3: the FFN's 3x3 depthwise conv lets a pixel see its neighbours (across a window border), pointwise
    layers alone would not."""
    ffn = DWFFN(4).eval()
    x = torch.zeros(1, 4, 14, 14, requires_grad=True)
    ffn(x)[0, :, 6, 6].sum().backward()
    touched = (x.grad[0].abs().sum(0) > 0).nonzero().tolist()
    assert [7, 7] in touched and [6, 6] in touched and all(abs(i - 6) <= 1 and abs(j - 6) <= 1 for i, j in touched)


@pytest.mark.paper("hrformer")
def test_equals_the_official_pose_backbone(record_property) -> None:
    """The official HRFormer pose backbone (reduced configuration, perturbed weights; tests/fixtures/hrformer/README.md)
    loads strictly through the ``official`` key map and gives the same 1/4-resolution features (our heatmap layer
    replaced by the identity): window attention with centre padding on odd-sized maps, the depthwise FFN, the
    depthwise-separable downsampling and the bilinear upsampling (align_corners=False) of the fusion."""
    from helpers import ROOT
    from safetensors.torch import load_file

    from paperzoo.models.pose.hrformer import HRFormer

    data = load_file(str(ROOT / "tests/fixtures/hrformer/hrt_reduced.safetensors"))
    state = {k[len("weights."):]: v for k, v in data.items() if k.startswith("weights.")}
    model = HRFormer(8, (1, 2, 4, 8), (1, 1, 1), blocks=1, num_keypoints=3, window=4, stage1=(1, 16))
    model.meta = pz.model_meta("hrformer_tiny")
    state["final_layer.weight"], state["final_layer.bias"] = model.final_layer.weight.detach(), model.final_layer.bias.detach()
    pz.load_weights(model, state, source="official")
    model.final_layer = torch.nn.Identity()
    model.eval()
    with torch.no_grad():
        assert rel_err(model(data["input"]), data["output"]) < 1e-5
