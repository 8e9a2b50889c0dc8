"""Dissecting image crops (Van Hoorick & Vondrick, ICCV 2021, arXiv 2011.11831): where in the original frame did
a patch come from, and was the image cropped?

Lenses leave position-dependent traces — transverse chromatic aberration (each colour channel magnified slightly
differently about the optical centre) and vignetting (darkening towards the corners) — so a patch carries evidence of
its *absolute* position in the frame, and a crop shifts that evidence away from the image's own centre. The model
(the paper's Fig. 3 and official code):

* a patch branch: the same CNN embeds each of the M = G x G patches taken at the centres of the grid cells of the
  (possibly cropped) image; a linear head classifies each patch into the G x G cells of the *original* frame
  (absolute localisation; cross-entropy per patch);
* a global branch: a CNN on the downscaled whole (cropped) image with two extra (y, x) coordinate channels;
* a crop head: an MLP (512, 256) on all patch embeddings and the global embedding gives 5 numbers — the crop
  rectangle (x1, x2, y1, y2) in the original frame's [0, 1] coordinates (mean squared error) and a crop logit
  (binary cross-entropy);
* the loss: lambda_patch * sum over patches of CE + lambda_rect * MSE(rectangle) + BCE(crop), with the paper's
  lambda_patch = 0.15 and lambda_rect = 3.

``lens_traces`` renders both traces analytically: channel c is resampled as I_c(o + (x - o) / s_c) (a zoom by s_c
about the centre o), and the image is multiplied by the vignette gain g(r) = strength / (1 + a r^2 + b r^4 + c r^6) +
1 - strength, r the distance to the centre over the half-diagonal, (a, b, c) = (2.0625, 8.75, 0.0313) (Rojas, 2015,
as the official code). The official code's trick of cyclically shifting patches across the batch (against a
BatchNorm memory effect) is not reproduced: the patches of all images go through the backbone as one batch.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model

VIGNETTE = (2.0625, 8.75, 0.0313)


# ------------------------------------------------------------------------------------------ the lens model
def vignette_gain(height: int, width: int, strength: float) -> torch.Tensor:
    """(H, W) gain: strength / (1 + a r^2 + b r^4 + c r^6) + 1 - strength, r = distance to the centre / half-diagonal."""
    half = (height**2 + width**2) ** 0.5 / 2
    y = (torch.arange(height, dtype=torch.float32) + 0.5 - height / 2) / half
    x = (torch.arange(width, dtype=torch.float32) + 0.5 - width / 2) / half
    r2 = y[:, None] ** 2 + x[None, :] ** 2
    a, b, c = VIGNETTE
    return strength / (1 + a * r2 + b * r2**2 + c * r2**3) + 1 - strength


def chromatic_aberration(images: torch.Tensor, scales: tuple[float, float, float]) -> torch.Tensor:
    """Magnify channel c of (B, 3, H, W) images by ``scales[c]`` about the image centre (bilinear, borders
    replicated): out_c(x) = in_c(o + (x - o) / s_c)."""
    b, _, h, w = images.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)  # pixel centres in grid_sample's [-1, 1] (align_corners=False)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
    out = []
    for ch, s in enumerate(scales):
        grid = torch.stack([xs[None, :].expand(h, w) / s, ys[:, None].expand(h, w) / s], -1)
        out.append(F.grid_sample(images[:, ch:ch + 1], grid[None].expand(b, h, w, 2).to(images), mode="bilinear",
                                 padding_mode="border", align_corners=False))
    return torch.cat(out, 1)


def lens_traces(images: torch.Tensor, aberration: float = 0.01, vignetting: float = 0.5) -> torch.Tensor:
    """Both traces on (B, 3, H, W) images in [0, 1]: red magnified by 1 + ``aberration``, blue by 1 - ``aberration``,
    then the vignette of ``vignetting`` strength."""
    out = chromatic_aberration(images, (1 + aberration, 1.0, 1 - aberration)) if aberration else images
    if vignetting:
        out = out * vignette_gain(*images.shape[-2:], vignetting).to(images)
    return out


# ------------------------------------------------------------------------------------------ crops and patches
def random_crops(n: int, size: int, generator: torch.Generator, p_crop: float = 0.5,
                 min_factor: float = 0.5, max_factor: float = 0.9, min_side: int = 0) -> torch.Tensor:
    """(n, 4) integer rectangles (x1, x2, y1, y2) in pixels of a size x size frame: with probability ``p_crop`` a
    random crop whose sides are ``min_factor``-``max_factor`` of the frame (and at least ``min_side``), else the
    whole frame."""
    cropped = torch.rand(n, generator=generator) < p_crop
    f = min_factor + (max_factor - min_factor) * torch.rand(n, 2, generator=generator)
    sides = torch.maximum((f * size).round(), torch.full_like(f, float(min_side))).clamp(max=size)
    sides = torch.where(cropped[:, None], sides, torch.full_like(sides, float(size)))
    start = ((size - sides) * torch.rand(n, 2, generator=generator)).floor()
    return torch.stack([start[:, 0], start[:, 0] + sides[:, 0], start[:, 1], start[:, 1] + sides[:, 1]], 1).long()


def crop_sample(images: torch.Tensor, rects: torch.Tensor, grid: int, patch: int, global_size: int) -> dict[str, torch.Tensor]:
    """Patches, global view and targets of ``images`` (B, 3, S, S) cropped to ``rects`` (x1, x2, y1, y2):
    ``patches`` (B, G*G, 3, P, P) at the centres of the crop's G x G cells, ``global`` (B, 3, g, g) (the crop,
    resized by RoIAlign), ``locations`` (B, G*G) each patch centre's cell in the original frame (row-major),
    ``rectangle`` (B, 4) in [0, 1] of the original frame and ``cropped`` (B,) 0/1."""
    from torchvision.ops import roi_align

    b, _, s, _ = images.shape
    x1, x2, y1, y2 = rects.unbind(1)
    cells = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    cx = x1[:, None] + cells[None] * (x2 - x1)[:, None]  # (B, G) patch centres in the original frame
    cy = y1[:, None] + cells[None] * (y2 - y1)[:, None]
    left = (cx - patch / 2).round().long().clamp(0, s - patch)
    top = (cy - patch / 2).round().long().clamp(0, s - patch)
    top_m = top[:, :, None].expand(b, grid, grid).reshape(b, -1)  # (B, M), row-major over (y, x)
    left_m = left[:, None, :].expand(b, grid, grid).reshape(b, -1)
    r = torch.arange(patch)
    rows = (top_m[..., None] + r)[..., :, None]  # (B, M, P, 1)
    cols = (left_m[..., None] + r)[..., None, :]  # (B, M, 1, P)
    bi = torch.arange(b)[:, None, None, None]
    patches = images.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 1, 4, 2, 3)  # (B, M, 3, P, P)
    centre_x, centre_y = left_m + patch / 2, top_m + patch / 2
    locations = (centre_y * grid / s).floor().long().clamp(0, grid - 1) * grid + (centre_x * grid / s).floor().long().clamp(0, grid - 1)
    boxes = torch.cat([torch.arange(b)[:, None].float(), torch.stack([x1, y1, x2, y2], 1).float()], 1)
    glob = roi_align(images, boxes, global_size, spatial_scale=1.0, sampling_ratio=4, aligned=True)
    return {"patches": patches, "global": glob, "locations": locations, "rectangle": rects.float() / s,
            "cropped": ((x2 - x1 < s) | (y2 - y1 < s)).float()}


# ------------------------------------------------------------------------------------------ the network
def small_cnn(in_chans: int, dim: int, width: int = 32) -> nn.Sequential:
    """Four conv-BN-ReLU layers (strides 1, 2, 2, 2), global average pooling, a linear embedding (the miniature's
    stand-in for ResNet-18/34)."""
    layers, cin = [], in_chans
    for i, cout in enumerate((width, width, 2 * width, 4 * width)):
        layers += [nn.Conv2d(cin, cout, 3, 1 if i == 0 else 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, dim))


def _backbone(name: str, in_chans: int, dim: int, width: int) -> nn.Module:
    if name == "small":
        return small_cnn(in_chans, dim, width)
    from ...registry import create_model

    return create_model(name, num_classes=dim, in_chans=in_chans)  # e.g. resnet18 / resnet34, as the paper


def add_coordinates(x: torch.Tensor) -> torch.Tensor:
    """Append (y, x) coordinate channels in [0, 1] to (B, C, H, W)."""
    b, _, h, w = x.shape
    y = torch.linspace(0, 1, h, device=x.device, dtype=x.dtype)[:, None].expand(h, w)
    xx = torch.linspace(0, 1, w, device=x.device, dtype=x.dtype)[None, :].expand(h, w)
    return torch.cat([x, torch.stack([y, xx])[None].expand(b, 2, h, w)], 1)


class CropLocator(nn.Module):
    """``forward(patches (B, M, 3, P, P), global (B, 3, g, g))`` -> ``{"locations": (B, M, M) logits,
    "rectangle": (B, 4), "crop_logit": (B,)}`` with M = grid^2."""

    def __init__(self, grid: int = 4, embed: int = 64, patch_backbone: str = "resnet18",
                 global_backbone: str = "resnet34", width: int = 32) -> None:
        super().__init__()
        self.grid, self.embed = grid, embed
        m = grid * grid
        self.patch_net = _backbone(patch_backbone, 3, embed, width)
        self.global_net = _backbone(global_backbone, 5, embed, width)
        self.location_head = nn.Linear(embed, m)
        self.crop_head = nn.Sequential(nn.Linear(m * embed + embed, 512), nn.ReLU(inplace=True),
                                       nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Linear(256, 5))

    def forward(self, patches: torch.Tensor, global_image: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.grid * self.grid
        if patches.ndim != 5 or patches.shape[1] != m:
            raise PaperzooError(f"CropLocator (grid {self.grid}) takes patches of shape (B, {m}, 3, P, P), got {tuple(patches.shape)}")
        b = patches.shape[0]
        emb = self.patch_net(patches.flatten(0, 1)).view(b, m, self.embed)
        glob = self.global_net(add_coordinates(global_image))
        head = self.crop_head(torch.cat([emb.flatten(1), glob], 1))
        return {"locations": self.location_head(emb), "rectangle": head[:, :4], "crop_logit": head[:, 4]}


def crop_loss(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor], lambda_patch: float = 0.15,
              lambda_rect: float = 3.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """lambda_patch * sum_i CE(location_i) + lambda_rect * MSE(rectangle) + BCE(crop logit)."""
    logits, labels = out["locations"], target["locations"]
    per_patch = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(0)  # (M,): mean over the batch
    loc = per_patch.sum()
    rect = F.mse_loss(out["rectangle"], target["rectangle"])
    crop = F.binary_cross_entropy_with_logits(out["crop_logit"], target["cropped"])
    total = lambda_patch * loc + lambda_rect * rect + crop
    return total, {"location": loc.detach(), "rectangle": rect.detach(), "crop": crop.detach()}


@register_model(paper="crop-dissection", task="crop", input_size=(3, 96, 96), num_classes=16, mean=(0.0,) * 3,
                std=(1.0,) * 3, notes="(patches (B, 16, 3, 96, 96), global (B, 3, 224, 224)) -> locations, rectangle, crop")
def crop_locator(num_classes: int | None = None, grid: int = 4, **kwargs: Any) -> CropLocator:
    """The paper's model: ResNet-18 patch branch, ResNet-34 global branch, 4 x 4 grid, 64-d embeddings.
    ``num_classes`` is not used (the location classes are ``grid`` x ``grid``)."""
    return CropLocator(grid=grid, **kwargs)
