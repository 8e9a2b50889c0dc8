"""Learning in the Frequency Domain: the DCT input against scipy, the paper's channel counts and static
selections, and ResNet-50 with the stem removed and dynamic channel gates."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

import paperzoo as pz
from paperzoo.data.dct import (STATIC_SELECTIONS, block_dct, block_idct, dct_matrix, images_to_dct, rgb_to_ycbcr,
                               selection_index)


@pytest.mark.paper("frequency-domain")
def test_block_dct_equals_scipy_per_block() -> None:
    """Each 8x8 block's coefficients equal scipy's orthonormal 2-D DCT-II; channel c*64 + 8u + v holds (u, v)."""
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64) * 255 - 128
    coeffs = block_dct(x)
    assert coeffs.shape == (2, 192, 2, 3)
    for b, c, i, j in [(0, 0, 0, 0), (1, 2, 1, 2), (0, 1, 1, 0)]:
        block = x[b, c, 8 * i:8 * i + 8, 8 * j:8 * j + 8].numpy()
        ref = scipy.fft.dctn(block, type=2, norm="ortho")  # ref[u, v]: u along rows (y), v along columns (x)
        ours = coeffs[b, 64 * c:64 * c + 64, i, j].view(8, 8).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.paper("frequency-domain")
def test_dct_matrix_is_the_papers_formula_and_orthonormal() -> None:
    d = dct_matrix(8, torch.float64)
    k, i = 3, 5
    assert d[k, i] == pytest.approx(0.5 * np.cos((2 * i + 1) * k * np.pi / 16))
    assert d[0, 2] == pytest.approx(np.sqrt(1 / 8))
    assert torch.allclose(d @ d.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    assert torch.allclose(block_idct(block_dct(x)), x, atol=1e-10)


@pytest.mark.paper("frequency-domain")
def test_channel_counts_and_static_selections() -> None:
    """3 components x 64 frequencies = 192 channels; the paper's DCT-24 keeps the 4x4 lowest frequencies of Y
    and 2x2 of Cb and Cr; every static selection favours Y and low frequencies."""
    x = torch.rand(4, 3, 32, 32)
    assert images_to_dct(x).shape == (4, 192, 8, 8)  # 32 px upsampled x2 -> 64 px -> 8x8 blocks of 8x8
    for n, (y, cb, cr) in STATIC_SELECTIONS.items():
        assert len(y) + len(cb) + len(cr) == n and len(selection_index(n).unique()) == n
        assert len(y) >= len(cb) == len(cr)
        assert images_to_dct(x, channels=n).shape == (4, n, 8, 8)
    y, cb, cr = STATIC_SELECTIONS[24]
    assert y == [8 * u + v for u in range(4) for v in range(4)] and cb == cr == [0, 1, 8, 9]
    for n in (24, 32, 48, 64):
        freqs = STATIC_SELECTIONS[n][0]
        assert max(f // 8 + f % 8 for f in freqs) <= 12 and 0 in freqs  # low frequencies, DC included


def test_ycbcr_and_dc_coefficient() -> None:
    """JPEG's YCbCr: grey has Cb = Cr = 128; a flat block's only non-zero coefficient is DC = 8 x (value - 128)."""
    grey = torch.full((1, 3, 8, 8), 200.0)
    ycc = rgb_to_ycbcr(grey)
    assert torch.allclose(ycc[:, 0], torch.full((1, 8, 8), 200.0), atol=1e-3)
    assert torch.allclose(ycc[:, 1:], torch.full((1, 2, 8, 8), 128.0), atol=1e-3)
    coeffs = images_to_dct(grey / 255.0, upscale=1)
    assert coeffs[0, 0, 0, 0] == pytest.approx(8 * 72.0, abs=1e-2)
    assert coeffs[0, 1:64].abs().max() < 1e-3 and coeffs[0, 64:].abs().max() < 1e-2


@pytest.mark.paper("frequency-domain")
def test_resnet50_dct_drops_the_stem() -> None:
    """The DCT-24 input (56x56) enters ResNet-50's first bottleneck directly: its 1x1 conv and projection take
    24 channels; the rest is ResNet-50 (same stages, same output)."""
    with torch.device("meta"):
        model = pz.create_model("resnet50_dct")
        r50 = pz.create_model("resnet50")
        feats = pz.create_model("resnet50_dct", features_only=True)(torch.randn(1, 24, 56, 56))
    assert model.layer1[0].conv1.in_channels == 24 and model.layer1[0].downsample[0].in_channels == 24
    assert isinstance(model.conv1, torch.nn.Identity) and isinstance(model.maxpool, torch.nn.Identity)
    assert [f.shape[-1] for f in feats[1:]] == [56, 28, 14, 7]  # ResNet-50's stage sizes for a 224 image
    stem = sum(p.numel() for n, p in r50.named_parameters() if n.startswith(("conv1", "bn1")))
    first = (64 - 24) * (64 + 256)  # the two 1x1 convs that now read 24 instead of 64 channels
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in r50.parameters()) - stem - first


@pytest.mark.paper("frequency-domain")
def test_dynamic_gate_is_hard_and_learnable() -> None:
    """The gate multiplies each of the 192 channels by 0 or 1 per image; gradients reach its logits."""
    model = pz.create_model("resnet50_dct", in_chans=192, gate=True, channels=(8, 16, 32, 64), num_classes=3)
    x = torch.randn(4, 192, 8, 8)
    model(x).sum().backward()
    gate = model.gate.last_gate
    assert gate.shape == (4, 192) and set(gate.unique().tolist()) <= {0.0, 1.0}
    assert model.gate.logits.weight.grad.abs().sum() > 0
    assert 0.7 < gate.mean() < 1.0  # initialised mostly on: logits 2 (on) vs 0.1 (off)
    model.eval()
    with torch.no_grad():
        model(x)
    assert model.gate.last_gate.all()  # deterministic at eval: all start above the threshold
