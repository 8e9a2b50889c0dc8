"""Frequency-domain inputs (Xu et al., 2020, "Learning in the Frequency Domain", arXiv:2002.12416).

The paper feeds a CNN the JPEG-style block DCT of an image instead of its pixels (Sec. 3.1, Fig. 2):

1. upsample the RGB image (x2 here, 224 -> 448 in the paper) and convert it to YCbCr (JPEG/BT.601);
2. split each of Y, Cb, Cr into 8x8 blocks and take the orthonormal 2-D DCT-II of every block,
   F(u, v) = c(u) c(v) sum_{x,y} f(x, y) cos((2x+1)u pi / 16) cos((2y+1)v pi / 16),
   c(0) = sqrt(1/8), c(k > 0) = sqrt(2/8), after shifting pixel values by -128;
3. group coefficients of the same frequency into channels: 64 per colour component, 3 x 64 = 192
   channels at 1/8 of the upsampled resolution (56x56 for a 448 input, the size of ResNet-50's first
   stage), channel ``c * 64 + 8u + v`` holding frequency (u, v) of component c (Y = 0, Cb = 1, Cr = 2);
4. keep a subset of channels (static selection, Sec. 3.3) and normalise each channel by its mean and
   standard deviation over the training set.

``STATIC_SELECTIONS`` are the paper's static subsets (from its released code): the low-frequency
top-left square of each component's 8x8 grid, more of Y than of Cb/Cr. The 24-channel one keeps the
4x4 lowest frequencies of Y and 2x2 of Cb and Cr.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# JPEG (JFIF) RGB -> YCbCr, full range: rows give Y, Cb, Cr; chroma is offset by 128.
_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_OFFSET = torch.tensor([0.0, 128.0, 128.0])


def _square(n: int) -> list[int]:
    return [8 * u + v for u in range(n) for v in range(n)]


def _rows(lengths: list[int]) -> list[int]:
    """Frequencies (u, v) with v < lengths[u], as 8u + v."""
    return [8 * u + v for u, length in enumerate(lengths) for v in range(length)]


# Channels per component (Y, Cb, Cr) of the paper's static selections, as frequency indices 8u + v.
STATIC_SELECTIONS: dict[int, tuple[list[int], list[int], list[int]]] = {
    24: (_square(4), _square(2), _square(2)),
    32: (_rows([5, 5, 5, 4, 3]), _rows([3, 2]), _rows([3, 2])),
    48: (_rows([6, 6, 6, 6, 4, 4]), _rows([3, 3, 2]), _rows([3, 3, 2])),
    64: (_rows([7, 7, 6, 6, 6, 6, 6]), _rows([3, 3, 2, 2]), _rows([3, 3, 2, 2])),
    192: (list(range(64)), list(range(64)), list(range(64))),
}


def selection_index(n_channels: int) -> torch.Tensor:
    """Indices into the 192 DCT channels of the paper's static selection with ``n_channels`` channels."""
    if n_channels not in STATIC_SELECTIONS:
        raise ValueError(f"no static selection of {n_channels} channels; the paper's are {sorted(STATIC_SELECTIONS)}")
    return torch.tensor([64 * c + f for c, freqs in enumerate(STATIC_SELECTIONS[n_channels]) for f in freqs])


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 255] -> YCbCr in [0, 255]."""
    return torch.einsum("ij,bjhw->bihw", _YCBCR.to(x), x) + _OFFSET.to(x).view(1, 3, 1, 1)


def dct_matrix(n: int = 8, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (D @ D.T = I): D[k, i] = c(k) cos((2i + 1) k pi / (2n))."""
    k = torch.arange(n, dtype=torch.float64).view(-1, 1)
    i = torch.arange(n, dtype=torch.float64).view(1, -1)
    d = torch.cos((2 * i + 1) * k * math.pi / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(dtype)


def block_dct(x: torch.Tensor, block: int = 8) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * block**2, H / block, W / block): the 2-D DCT of every block, one channel per
    frequency (channel ``c * block**2 + block * u + v``)."""
    b, c, h, w = x.shape
    if h % block or w % block:
        raise ValueError(f"image size {h}x{w} is not a multiple of the block size {block}")
    d = dct_matrix(block, x.dtype).to(x.device)
    blocks = x.reshape(b, c, h // block, block, w // block, block)
    coeffs = torch.einsum("ux,bcixjy,vy->bcuvij", d, blocks, d)
    return coeffs.reshape(b, c * block * block, h // block, w // block)


def block_idct(coeffs: torch.Tensor, block: int = 8) -> torch.Tensor:
    """The inverse of ``block_dct``."""
    b, cf, hb, wb = coeffs.shape
    d = dct_matrix(block, coeffs.dtype).to(coeffs.device)
    c = coeffs.reshape(b, cf // (block * block), block, block, hb, wb)
    pixels = torch.einsum("ux,bcuvij,vy->bcixjy", d, c, d)
    return pixels.reshape(b, cf // (block * block), hb * block, wb * block)


def images_to_dct(images: torch.Tensor, upscale: int = 2, channels: int = 192) -> torch.Tensor:
    """RGB images in [0, 1] (B, 3, H, W) -> the paper's DCT input: upsample, YCbCr, level shift, 8x8 block
    DCT, static channel selection. Returns (B, channels, upscale * H / 8, upscale * W / 8), unnormalised."""
    x = images.float() * 255.0
    if upscale != 1:
        x = F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False)
    coeffs = block_dct(rgb_to_ycbcr(x) - 128.0)
    return coeffs if channels == 192 else coeffs[:, selection_index(channels)]


def channel_stats(coeffs: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (over a training set) for normalising DCT inputs."""
    mean = coeffs.mean((0, 2, 3))
    std = coeffs.std((0, 2, 3)).clamp_min(eps)
    return mean, std
