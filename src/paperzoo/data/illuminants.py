"""Raw camera images with ground-truth illuminants: a folder of real ones, and a synthetic camera renderer.

* ``read_raw_png`` / ``CameraFolder``: linear raw-space PNGs (16-bit or 8-bit) with ``NAME_metadata.json`` beside
  each (key ``illuminant_color_raw`` or ``gt_ill``: the raw RGB of the light), the layout of the C5 authors' data
  (``../shared/data/c5``); the camera is the part of the name after ``sensorname_`` when there is one.
* ``random_camera``, ``random_illuminants``, ``render_raw``: a synthetic camera turns reflectances (any built-in
  images, linearised) into raw images: raw = M (rho * l), whose true illuminant is M l. A camera is its 3 x 3
  matrix M — per-channel gains (which shift every illuminant of that camera in log-chroma, the cross-camera problem
  C5 addresses) times a small positive channel mixing.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import DataError


def read_raw_png(path: str | Path) -> torch.Tensor:
    """A linear raw PNG as float64 (3, H, W) in [0, 1] (16-bit PNGs keep their precision; PIL would drop it)."""
    from torchvision.io import ImageReadMode, decode_png, read_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"image not found: {path}")
    try:
        img = decode_png(read_file(str(path)), ImageReadMode.UNCHANGED)
    except RuntimeError as e:
        raise DataError(f"cannot read PNG {path}: {str(e).splitlines()[0]}") from None
    if img.shape[0] != 3:
        raise DataError(f"{path}: a raw colour image needs 3 channels, it has {img.shape[0]}")
    peak = 65535.0 if img.dtype == torch.uint16 else 255.0
    return img.to(torch.int32).to(torch.float64) / peak


class CameraFolder:
    """The raw images of a folder (``*.png``, sorted by name) with their illuminants from ``*_metadata.json``.

    ``images`` (N, 3, H, W) float64, ``illuminants`` (N, 3), ``names``, ``cameras`` (one name per image)."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"camera folder not found: {root}")
        files = sorted(root.glob("*.png"))
        if not files:
            raise DataError(f"{root} holds no .png images")
        images, lights = [], []
        for f in files:
            meta = f.with_name(f.stem + "_metadata.json")
            if not meta.exists():
                raise DataError(f"{f.name} has no {meta.name} beside it (the ground-truth illuminant)")
            try:
                record = json.loads(meta.read_text())
            except json.JSONDecodeError as e:
                raise DataError(f"{meta}: not valid JSON ({e.msg})") from None
            light = record.get("illuminant_color_raw", record.get("gt_ill"))
            if light is None or len(light) != 3:
                raise DataError(f"{meta}: needs 'illuminant_color_raw' (or 'gt_ill'): an RGB triple")
            images.append(read_raw_png(f))
            lights.append(torch.tensor(light, dtype=torch.float64))
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) > 1:
            raise DataError(f"{root}: images differ in size ({sorted(shapes)}); resize them to one size first")
        self.names = [f.name for f in files]
        self.cameras = [f.stem.split("sensorname_")[-1] if "sensorname_" in f.stem else root.name for f in files]
        self.images = torch.stack(images)
        self.illuminants = torch.stack(lights)

    def __len__(self) -> int:
        return len(self.names)


# ------------------------------------------------------------------------------------------ synthetic cameras
def random_camera(generator: torch.Generator, gain: float = 0.5, mixing: float = 0.25) -> torch.Tensor:
    """A camera's 3 x 3 matrix: diag(exp(U(-gain, gain)) for R and B, 1 for G) @ (I + U(0, mixing) off the diagonal)."""
    g = torch.exp((torch.rand(3, generator=generator, dtype=torch.float64) * 2 - 1) * gain)
    g[1] = 1.0
    mix = torch.eye(3, dtype=torch.float64) + torch.rand(3, 3, generator=generator, dtype=torch.float64) * mixing * (1 - torch.eye(3, dtype=torch.float64))
    return torch.diag(g) @ mix


def random_illuminants(n: int, generator: torch.Generator, spread: float = 0.6, tint: float = 0.05) -> torch.Tensor:
    """(n, 3) lights along a warm-cool axis, (exp(t + e_r), 1, exp(-t + e_b)) with t ~ U(-spread, spread), e ~ N(0, tint)."""
    t = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * spread
    e = torch.randn(n, 2, generator=generator, dtype=torch.float64) * tint
    return torch.stack([torch.exp(t + e[:, 0]), torch.ones(n, dtype=torch.float64), torch.exp(-t + e[:, 1])], 1)


def render_raw(reflectance: torch.Tensor, lights: torch.Tensor, camera: torch.Tensor, noise: float = 0.005,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reflectances (B, 3, H, W) in [0, 1] under ``lights`` (B, 3) seen by ``camera`` ((3, 3) or (B, 3, 3)) ->
    raw images (B, 3, H, W) scaled to a peak of 1, with Gaussian noise, and their unit-norm illuminants (B, 3)."""
    reflectance = reflectance.to(torch.float64)
    cams = camera.to(torch.float64).expand(len(reflectance), 3, 3)
    raw = torch.einsum("bij,bjhw->bihw", cams, reflectance * lights[:, :, None, None])
    raw = raw / raw.amax((1, 2, 3), keepdim=True).clamp_min(1e-12)
    if noise:
        raw = raw + noise * torch.randn(raw.shape, generator=generator, dtype=torch.float64)
    truth = torch.einsum("bij,bj->bi", cams, lights)
    return raw.clamp(0, 1), truth / truth.norm(dim=1, keepdim=True)
