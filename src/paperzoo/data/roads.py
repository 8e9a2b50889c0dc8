"""A synthetic road renderer for PilotNet: camera frames of a two-lane road with the steering that follows it.

A pinhole camera (height 1.5 m) looks along the car. The road's lane centre, in the car's frame, lies at lateral
position ``x_c(z) = -d - psi z + kappa z^2 / 2`` at forward distance z (small angles): ``d`` is the car's offset
to the right of the lane centre (m), ``psi`` its heading to the right of the road's (rad), ``kappa`` the road's
curvature (1/m, positive to the right). Each ground pixel is painted from its lateral distance to that centre:
asphalt for two lanes, a solid edge line on each side, a dashed centre line, grass beyond (or a user's/built-in
image as scenery), sky above the horizon, with random lane width, lighting, colour casts, shadows and fog.

The steering label is an inverse turning radius (1/m, positive right). For a view centred in the lane it is
the road's curvature; for a shifted or rotated view (the paper's augmentation, Sec. 5.2: views from the side
cameras and viewpoint transforms) it is the arc that brings the car back to the lane centre ``lookahead`` metres
ahead (pure pursuit; the paper's "back to the desired location and orientation in two seconds"):
``steer = 2 x_c(L) / L^2 = kappa - 2 d / L^2 - 2 psi / L``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import ConfigError, unknown

HEIGHT, WIDTH = 66, 200
SPLITS = ("train", "val", "test")


def steering_correction(kappa: torch.Tensor | float, d: torch.Tensor | float, psi: torch.Tensor | float,
                        lookahead: float = 20.0) -> torch.Tensor | float:
    """The inverse turning radius that returns a car at offset ``d`` and heading error ``psi`` on a road of
    curvature ``kappa`` to the lane centre ``lookahead`` metres ahead: kappa - 2 d / L^2 - 2 psi / L."""
    return kappa - 2 * d / lookahead**2 - 2 * psi / lookahead


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> YUV (BT.601), U and V offset by 0.5 so that all three lie in [0, 1]."""
    r, g, b = rgb.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, 0.492 * (b - y) + 0.5, 0.877 * (r - y) + 0.5], -3)


@dataclass
class RoadParams:
    """One frame's road and pose, batched (every field a tensor of shape (B,))."""

    kappa: torch.Tensor
    d: torch.Tensor
    psi: torch.Tensor
    lane: torch.Tensor  # lane width (m)
    brightness: torch.Tensor
    horizon: torch.Tensor  # horizon row as a fraction of the image height
    dash_phase: torch.Tensor  # metres
    shadow_z: torch.Tensor  # start of a shadow band across the road (m); negative: none
    cast: torch.Tensor  # (B, 3) colour cast of the light
    grass: torch.Tensor  # (B, 3) grass colour


def random_params(n: int, generator: torch.Generator, augment: bool = True, max_kappa: float = 0.015,
                  max_shift: float = 1.0, max_rotation: float = 0.08) -> RoadParams:
    """Random roads and lighting; with ``augment`` the car is shifted up to ``max_shift`` m and rotated up to
    ``max_rotation`` rad from the lane centre (otherwise it is centred and aligned)."""
    u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=generator)
    return RoadParams(
        kappa=u(-max_kappa, max_kappa), d=u(-max_shift, max_shift) if augment else torch.zeros(n),
        psi=u(-max_rotation, max_rotation) if augment else torch.zeros(n), lane=u(3.0, 4.2),
        brightness=u(0.55, 1.3), horizon=u(0.3, 0.4), dash_phase=u(0, 12),
        shadow_z=torch.where(torch.rand(n, generator=generator) < 0.5, u(4, 30), torch.full((n,), -1.0)),
        cast=u(0.85, 1.15, n, 3), grass=torch.stack([u(0.15, 0.35), u(0.35, 0.6), u(0.1, 0.25)], 1))


def render(p: RoadParams, generator: torch.Generator, scenery: torch.Tensor | None = None,
           camera_height: float = 1.5, focal: float = 0.55, supersample: int = 1) -> torch.Tensor:
    """Frames (B, 3, 66, 200) RGB in [0, 1] (rendered at ``supersample`` times the size and averaged). ``focal`` is in image
    widths; ``scenery`` (B, 3, h, w) RGB in [0, 1], if given, replaces grass and sky."""
    b, s = len(p.kappa), supersample
    h, w = HEIGHT * s, WIDTH * s
    f = focal * w
    rows = torch.arange(h, dtype=torch.float32)[None, :, None] + 0.5
    cols = torch.arange(w, dtype=torch.float32)[None, None, :] + 0.5 - w / 2
    col = lambda t: t.view(b, 1, 1)
    horizon = col(p.horizon) * h
    below = (rows - horizon).clamp_min(1e-3)
    z = camera_height * f / below  # ground distance of each row
    x = cols * z / f
    centre = -col(p.d) - col(p.psi) * z + col(p.kappa) * z**2 / 2
    e = x - centre  # lateral distance to the lane centre (right positive)
    lane = col(p.lane)
    ground = rows > horizon
    noise = torch.rand(b, 1, h, w, generator=generator)
    asphalt = (0.33 + 0.08 * noise[:, 0]) * torch.ones(b, h, w)
    on_road = (e > -1.5 * lane) & (e < 0.5 * lane)
    line = 0.1 + 0.004 * z  # markings widen with distance so that they survive the averaging
    edge = ((e - 0.5 * lane + 0.15).abs() < line) | ((e + 1.5 * lane - 0.15).abs() < line)
    dashed = ((e + 0.5 * lane).abs() < line) & (torch.remainder(z + col(p.dash_phase), 12.0) < 4.0)
    grass = p.grass.view(b, 3, 1, 1) * (0.7 + 0.6 * noise)
    sky = torch.stack([0.55 + 0.25 * rows / h, 0.65 + 0.2 * rows / h, 0.9 + 0 * rows], 1).expand(b, 3, h, w)
    if scenery is not None:
        scene = F.interpolate(scenery.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        grass, sky = scene, scene
    img = torch.where(ground[:, None], grass, sky)
    road = asphalt[:, None].expand(b, 3, h, w)
    img = torch.where((ground & on_road)[:, None], road, img)
    img = torch.where((ground & on_road & (edge | dashed))[:, None], torch.full_like(img, 0.92), img)
    shadow = (z > col(p.shadow_z)) & (z < col(p.shadow_z) + 3.0) & (col(p.shadow_z) > 0) & ground
    img = img * torch.where(shadow, 0.5, 1.0)[:, None]
    fog = torch.exp(-z / 150.0)[:, None]  # distant ground fades into the haze
    haze = torch.tensor([0.75, 0.8, 0.9]).view(1, 3, 1, 1)
    img = torch.where(ground[:, None], fog * img + (1 - fog) * haze, img)
    img = img * p.brightness.view(b, 1, 1, 1) * p.cast.view(b, 3, 1, 1)
    return (F.avg_pool2d(img, s) if s > 1 else img).clamp(0, 1)


class RoadDataset(Dataset):
    """Seeded road frames for PilotNet: ``(yuv (3, 66, 200) in [0, 1], steer (1,) in 1/m)``; sample i never
    changes. ``augment`` shifts and rotates the viewpoint with the matching steering correction."""

    def __init__(self, split: str = "train", size: int | None = None, seed: int = 0, augment: bool = True,
                 lookahead: float = 20.0, max_kappa: float = 0.015) -> None:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        self.size = size if size is not None else {"train": 4000, "val": 500, "test": 500}[split]
        if self.size < 1:
            raise ConfigError(f"RoadDataset: size must be >= 1, got {self.size}")
        self.split, self.seed, self.augment, self.lookahead, self.max_kappa = split, seed, augment, lookahead, max_kappa
        self.num_classes, self.in_chans, self.image_size = 1, 3, (HEIGHT, WIDTH)
        self.mean, self.std, self.classes = (0.0,) * 3, (1.0,) * 3, ["steer"]
        self._frames: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.size

    def _render_all(self) -> None:
        frames, targets = [], []
        for start in range(0, self.size, 256):
            n = min(256, self.size - start)
            gen = torch.Generator().manual_seed(hash((self.seed, SPLITS.index(self.split), start)) % 2**31)
            p = random_params(n, gen, self.augment, self.max_kappa)
            frames.append((rgb_to_yuv(render(p, gen)) * 255).round().to(torch.uint8))
            targets.append(steering_correction(p.kappa, p.d, p.psi, self.lookahead))
        self._frames, self._targets = torch.cat(frames), torch.cat(targets).float()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} frames")
        if self._frames is None:
            self._render_all()
        return self._frames[index].float() / 255, self._targets[index:index + 1]


def autonomy(interventions: int, elapsed_s: float, penalty_s: float = 6.0) -> float:
    """The paper's autonomy metric (Sec. 7.1): (1 - interventions x 6 s / elapsed time) x 100 %."""
    if elapsed_s <= 0:
        raise ConfigError(f"autonomy: elapsed time must be > 0, got {elapsed_s}")
    return (1.0 - interventions * penalty_s / elapsed_s) * 100.0


@torch.no_grad()
def drive(policy, kappas: torch.Tensor, generator: torch.Generator, speed: float = 10.0, dt: float = 0.1,
          limit: float = 1.0, actuation_noise: float = 0.0) -> dict[str, float]:
    """Closed loop in a simulated lane: at each step the camera frame of the current pose goes through
    ``policy`` ((1, 3, 66, 200) YUV -> inverse turning radius), the car follows that arc for ``speed * dt`` m while
    the road bends by ``kappas[step]``; the executed arc is off by N(0, ``actuation_noise``) 1/m (the actuator,
    wind, the road's camber: what makes a real car drift); leaving the lane centre by more than ``limit`` m is an
    intervention (the car is put back on the centre line). Returns interventions, elapsed seconds, autonomy and the mean |offset|."""
    d = psi = 0.0
    ds = speed * dt
    interventions, offsets = 0, []
    for kappa in kappas.tolist():
        p = random_params(1, generator, augment=False)
        p.kappa, p.d, p.psi = torch.tensor([kappa]), torch.tensor([d]), torch.tensor([psi])
        steer = float(policy(rgb_to_yuv(render(p, generator))))
        steer += actuation_noise * float(torch.randn(1, generator=generator))
        psi += (steer - kappa) * ds  # heading relative to the road
        d += math.sin(psi) * ds
        offsets.append(abs(d))
        if abs(d) > limit:
            interventions += 1
            d = psi = 0.0
    elapsed = len(kappas) * dt
    return {"interventions": interventions, "elapsed_s": elapsed, "autonomy": autonomy(interventions, elapsed),
            "mean_offset_m": sum(offsets) / len(offsets)}
