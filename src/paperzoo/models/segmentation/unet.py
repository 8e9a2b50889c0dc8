"""U-Net: Convolutional Networks for Biomedical Image Segmentation (Ronneberger, Fischer & Brox, 2015,
arXiv:1505.04597).

The paper's contributions, as implemented here:

* **The architecture** (sec. 2, Fig. 1): a contracting path of repeated pairs of unpadded 3x3 convolutions with
  ReLU and 2x2 max pooling (64 -> 1024 channels over five levels), and an expanding path in which a 2x2
  "up-convolution" halves the channels, the contracting path's map of the same level is **cropped** to size and
  concatenated, and two 3x3 convolutions follow; a 1x1 convolution gives the class scores. With valid
  convolutions a 572x572 tile gives a 388x388 map (1 channel in, 2 classes out: ~31.0M parameters). Dropout sits
  at the end of the contracting path (sec. 3.1); weights start from N(0, 2/N), N the fan-in (sec. 3).
  ``padding=True`` is the common padded variant: same-size output for any size divisible by 16.
* **Overlap-tile** (Fig. 2): to segment a whole image with the valid net, the input is extended by mirroring so
  that the valid output covers the image exactly (``tile=True``, the default of the registered ``unet``; with
  ``tile=False`` the forward pass is the bare valid net, 572 -> 388).
* **The weight map** (eq. 2): ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` with w0 = 10,
  sigma = 5 px; w_c balances the class frequencies, d1 and d2 are the distances to the nearest and second
  nearest cell (Euclidean distance transforms, ``scipy.ndimage``). The border term is put on background pixels,
  where the thin separations between touching cells lie. ``weighted_cross_entropy`` is eq. 1.
* **Elastic deformations** (sec. 3.1): random displacements on a coarse 3x3 grid, drawn from a Gaussian with a
  10 px standard deviation and interpolated bicubically to per-pixel displacements (``ElasticDeform``, a batch
  transform that moves images and their label maps alike).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, PaperzooError
from ...registry import register_model

__all__ = ["ElasticDeform", "UNet", "class_balance", "weight_map", "weighted_cross_entropy"]


def _double_conv(cin: int, cout: int, pad: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=pad), nn.ReLU(inplace=True))


def _center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def _mirror_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Mirror ``x`` outward by any amount (repeatedly, where a pad exceeds the image: reflection needs pad < size)."""
    while left or right or top or bottom:
        h, w = x.shape[-2:]
        step = [min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)]
        x = F.pad(x, step, mode="reflect")
        left, right, top, bottom = (a - b for a, b in zip((left, right, top, bottom), step))
    return x


class UNet(nn.Module):
    """U-Net with ``depth`` poolings (4 in the paper) and ``base`` channels at the first level (64)."""

    def __init__(self, in_chans: int = 1, num_classes: int = 2, base: int = 64, depth: int = 4,
                 padding: bool = False, tile: bool = False, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.num_classes, self.depth, self.padding, self.tile = num_classes, depth, padding, tile
        pad = 1 if padding else 0
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(_double_conv(cin, cout, pad) for cin, cout in zip([in_chans, *chans[:-1]], chans))
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout2d(drop_rate)
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in reversed(chans[1:]))
        self.up_conv = nn.ModuleList(_double_conv(c, c // 2, pad) for c in reversed(chans[1:]))
        self.head = nn.Conv2d(base, num_classes, 1)
        for m in self.modules():  # sec. 3: N(0, sqrt(2 / N)), N = incoming nodes of one neuron
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0] * m.weight[0, 0].numel()
                nn.init.normal_(m.weight, 0, math.sqrt(2 / fan_in))
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ sizes of the valid net
    def output_size(self, size: int) -> int:
        """Output side of the valid net for an input side (raises where a pooling would see an odd size)."""
        for _ in range(self.depth):
            size -= 4
            if size <= 0 or size % 2:
                raise PaperzooError(f"U-Net: input side gives an odd or empty map before pooling ({size})")
            size //= 2
        size -= 4
        for _ in range(self.depth):
            size = 2 * size - 4
        if size <= 0:
            raise PaperzooError("U-Net: the input is too small for the valid network")
        return size

    def input_size_for(self, size: int) -> int:
        """The smallest valid input whose valid output covers ``size`` pixels (the overlap-tile input)."""
        bottom = 1
        while self._out_from_bottom(bottom) < size:
            bottom += 1
        s = bottom
        for _ in range(self.depth):
            s = 2 * (s + 4)
        return s + 4

    def _out_from_bottom(self, b: int) -> int:
        for _ in range(self.depth):
            b = 2 * b - 4
        return b

    # ------------------------------------------------------------------ forward
    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself: valid (or, with ``padding``, same) convolutions, crop-and-concatenate skips."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                if x.shape[-1] % 2 or x.shape[-2] % 2:
                    raise PaperzooError(f"U-Net: a {tuple(x.shape[-2:])} map cannot be max-pooled 2x2 exactly; "
                                        f"use a valid input size (572, or see input_size_for)")
                x = self.pool(x)
        x = self.drop(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = up(x)
            x = conv(torch.cat([_center_crop(skip, *x.shape[-2:]), x], 1))
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.tile or self.padding:
            return self.forward_valid(x)
        return self.overlap_tile(x)

    def overlap_tile(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for every pixel of ``x`` from the valid net: the input is mirrored outward so that the valid
        output covers the image, then the output is cut to the image (Fig. 2)."""
        h, w = x.shape[-2:]
        ih, iw = self.input_size_for(h), self.input_size_for(w)
        mh, mw = (ih - self.output_size(ih)) // 2, (iw - self.output_size(iw)) // 2
        padded = _mirror_pad(x, mw, iw - w - mw, mh, ih - h - mh)
        return self.forward_valid(padded)[..., :h, :w]


# ---------------------------------------------------------------------------------------------- eq. 1 and 2
def class_balance(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """w_c: each pixel weighted by 1 / (its class's share of the pixels x the number of classes present), so
    that every class present carries the same total weight (a weight map of ones for balanced classes)."""
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    present = counts > 0
    w = np.zeros(k)
    w[present] = labels.size / (present.sum() * counts[present])
    return w[labels]


def weight_map(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0, labels: np.ndarray | None = None,
               num_classes: int | None = None) -> np.ndarray:
    """Eq. 2 for one image. ``instances`` (H, W) numbers each cell 1..N (0 background); ``labels`` are the class
    maps the loss uses (default: foreground = 1 where a cell is). d1/d2 are each pixel's Euclidean distances to
    the nearest pixel of its nearest and second-nearest cell; the border term is added on background pixels and
    needs two cells (with fewer, only w_c remains)."""
    from scipy.ndimage import distance_transform_edt

    instances = np.asarray(instances)
    labels = (instances > 0).astype(np.int64) if labels is None else np.asarray(labels)
    w = class_balance(labels, num_classes)
    ids = [i for i in np.unique(instances) if i != 0]
    if len(ids) < 2:
        return w.astype(np.float32)
    dist = np.stack([distance_transform_edt(instances != i) for i in ids])  # (N, H, W): distance to cell i
    dist.sort(axis=0)
    d1, d2 = dist[0], dist[1]
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    return (w + border * (instances == 0)).astype(np.float32)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                           ignore_index: int = 255) -> torch.Tensor:
    """Eq. 1: the pixel-wise soft-max cross-entropy, each pixel's term multiplied by ``weights`` (B, H, W);
    the mean over the pixels that are not ignored."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    keep = target != ignore_index
    return (ce * weights * keep).sum() / keep.sum().clamp_min(1)


# ---------------------------------------------------------------------------------------------- sec. 3.1
class ElasticDeform:
    """The paper's elastic deformation as a batch transform ``(images, masks, generator) -> (images, masks)``:
    per image, displacements on a ``grid`` x ``grid`` lattice ~ N(0, ``sigma`` px), bicubically interpolated to
    every pixel; images are resampled bilinearly (reflected at the border), label maps by nearest neighbour.
    ``masks`` may be a (B, H, W) tensor, a tuple whose first element is one (the rest, per-pixel maps of the same
    size such as weight maps, follow bilinearly), or None."""

    def __init__(self, sigma: float = 10.0, grid: int = 3, p: float = 1.0) -> None:
        if sigma < 0 or grid < 2 or not 0 <= p <= 1:
            raise ConfigError(f"ElasticDeform: needs sigma >= 0, grid >= 2, 0 <= p <= 1 (got {sigma}, {grid}, {p})")
        self.sigma, self.grid, self.p = sigma, grid, p

    def field(self, b: int, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, H, W, 2) sampling grid in grid_sample's [-1, 1] coordinates, displaced."""
        coarse = torch.randn(b, 2, self.grid, self.grid, generator=generator) * self.sigma
        coarse *= (torch.rand(b, 1, 1, 1, generator=generator) < self.p)
        disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)  # pixels (dx, dy)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
        x = (xs + disp[:, 0]) * 2 / max(w - 1, 1) - 1
        y = (ys + disp[:, 1]) * 2 / max(h - 1, 1) - 1
        return torch.stack([x, y], -1)

    def __call__(self, images: torch.Tensor, masks: Any, generator: torch.Generator | None = None) -> tuple[torch.Tensor, Any]:
        b, _, h, w = images.shape
        grid = self.field(b, h, w, generator).to(images.device, images.dtype)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

        def move(t: torch.Tensor, mode: str) -> torch.Tensor:
            out = F.grid_sample(t[:, None].to(images.dtype), grid, mode=mode, padding_mode="reflection",
                                align_corners=True)[:, 0]
            return out.round().to(t.dtype) if mode == "nearest" else out.to(t.dtype)

        if masks is None:
            return images, None
        if isinstance(masks, torch.Tensor):
            return images, move(masks, "nearest")
        first, *rest = masks
        return images, (move(first, "nearest"), *(move(r, "bilinear") for r in rest))

    def __repr__(self) -> str:
        return f"ElasticDeform(sigma={self.sigma}, grid={self.grid}, p={self.p})"

    def describe(self) -> str:
        return f"elastic deformations ({self.grid}x{self.grid} grid, {self.sigma:g} px standard deviation)"


@register_model(paper="unet", task="segmentation", num_classes=2, input_size=(1, 572, 572), mean=(0.5,), std=(0.5,),
                paper_params_m=None,
                notes="valid convolutions; tile=True (default) mirrors the input so the output covers it (overlap-tile); "
                      "tile=False is the bare 572 -> 388 network; padding=True the padded variant")
def unet(in_chans: int = 1, num_classes: int = 2, base: int = 64, depth: int = 4, padding: bool = False,
         tile: bool = True, drop_rate: float = 0.5, **kwargs: Any) -> UNet:
    """The paper's U-Net (Fig. 1): 1 channel in, 2 classes out."""
    if kwargs:
        raise PaperzooError(f"model 'unet' does not take the argument '{next(iter(kwargs))}'")
    return UNet(in_chans, num_classes, base, depth, padding, tile, drop_rate)
