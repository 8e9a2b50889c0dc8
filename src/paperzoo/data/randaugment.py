"""RandAugment (Cubuk, Zoph, Shlens & Le, 2019, arXiv:1909.13719): augmentation policy with two numbers.

Instead of searching a policy (AutoAugment), RandAugment applies N operations, each drawn uniformly
(probability 1/K) from K = 14 image operations, all at one global magnitude M. The operations are the
paper's list (section 3): identity, autoContrast, equalize, rotate, solarize, color, posterize,
contrast, brightness, sharpness, shear-x, shear-y, translate-x, translate-y. Magnitudes use the paper's
linear integer scale on which M = 10 is AutoAugment's maximum for every operation:

=================================  ======================  ============================
operation                          range at M = 10         M -> parameter
=================================  ======================  ============================
rotate                             +-30 degrees            30 M/10, random sign
shear-x, shear-y                   +-0.3                   0.3 M/10, random sign
translate-x, translate-y           +-150/331 of the side   150/331 M/10 of the side, sign
solarize                           threshold 256 .. 0      256 (1 - M/10)
posterize                          8 .. 4 bits             8 - round(4 M/10)
color, contrast, brightness,       factor 0.1 .. 1.9       1 +- 0.9 M/10, random sign
sharpness
=================================  ======================  ============================

Every operation is the identity at M = 0 and stronger as M grows; the paper sweeps M beyond 10 (to 30),
so larger values extrapolate linearly, clipped where an operation stops being defined (at least 1 bit,
threshold >= 0, factors >= 0). Geometric operations fill with grey (128) and shear about the image's
corner, as AutoAugment does. The image operations themselves are torchvision's functional transforms;
this module is the policy. Randomness comes from torch's global generator, which the Trainer seeds per
sample (seed, epoch, index), so augmentations are reproducible and resume exactly.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

OPS: tuple[str, ...] = (
    "identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
    "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y",
)
SIGNED = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y", "color", "contrast", "brightness", "sharpness"}
MAX_LEVEL = 10.0  # the paper's scale: M = 10 is the maximum of AutoAugment's ranges


def op_parameter(op: str, magnitude: float) -> float | None:
    """The (unsigned) parameter of ``op`` at magnitude M, per the table in the module docstring."""
    level = magnitude / MAX_LEVEL
    if op in ("identity", "autocontrast", "equalize"):
        return None
    if op == "rotate":
        return 30.0 * level
    if op in ("shear_x", "shear_y"):
        return 0.3 * level
    if op in ("translate_x", "translate_y"):
        return 150 / 331 * level  # AutoAugment's 150 pixels at 331 x 331, as a fraction of the image side
    if op == "solarize":
        return max(0.0, 256.0 * (1.0 - level))
    if op == "posterize":
        return float(max(1, 8 - round(4 * level)))
    if op in ("color", "contrast", "brightness", "sharpness"):
        return 0.9 * level  # factor = 1 +- this
    raise KeyError(op)


GEOMETRIC = {"rotate", "shear_x", "shear_y", "translate_x", "translate_y"}


def _canvas(inpt: torch.Tensor) -> tuple[int, int]:
    size = getattr(inpt, "canvas_size", None)  # BoundingBoxes and KeyPoints carry the image size they live on
    return tuple(size) if size is not None else tuple(inpt.shape[-2:])


def apply_op(img: torch.Tensor, op: str, magnitude: float, sign: float = 1.0,
             interpolation: InterpolationMode = InterpolationMode.NEAREST, fill: int = 128) -> torch.Tensor:
    """Apply one operation to a uint8 CHW image at magnitude ``magnitude`` (``sign`` +-1 for signed ops).

    ``img`` may also be a target of the same image (``tv_tensors.BoundingBoxes``, ``Mask``, ``KeyPoints``):
    geometric operations move it exactly as they move the image (torchvision's functional transforms dispatch
    on the type); colour operations leave it unchanged."""
    v = op_parameter(op, magnitude)
    if v is not None and op in SIGNED:
        v *= sign
    if op == "identity" or (op not in GEOMETRIC and not _is_image(img)):
        return img
    h, w = _canvas(img)
    fills = [float(fill)] * img.shape[-3] if _is_image(img) else None
    if op == "autocontrast":
        return TF.autocontrast(img)
    if op == "equalize":
        return TF.equalize(img)
    if op == "rotate":
        return TF.rotate(img, v, interpolation=interpolation, fill=fills)
    if op == "solarize":
        return img if v >= 256 else TF.solarize(img, int(v))
    if op == "posterize":
        return TF.posterize(img, int(v))
    if op == "color":
        return TF.adjust_saturation(img, max(0.0, 1 + v))
    if op == "contrast":
        return TF.adjust_contrast(img, max(0.0, 1 + v))
    if op == "brightness":
        return TF.adjust_brightness(img, max(0.0, 1 + v))
    if op == "sharpness":
        return TF.adjust_sharpness(img, max(0.0, 1 + v))
    if op in ("shear_x", "shear_y"):
        deg = math.degrees(math.atan(v))
        shear = [deg, 0.0] if op == "shear_x" else [0.0, deg]
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=interpolation,
                         fill=fills, center=[0, 0])
    if op in ("translate_x", "translate_y"):
        shift = [int(round(v * w)), 0] if op == "translate_x" else [0, int(round(v * h))]
        return TF.affine(img, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=interpolation, fill=fills)
    raise KeyError(op)


def _is_spatial(x: Any) -> bool:
    """A target that lives on the image plane: boxes, masks, keypoints."""
    return isinstance(x, (tv_tensors.BoundingBoxes, tv_tensors.Mask, tv_tensors.KeyPoints))


def _is_image(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and not _is_spatial(x)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run per-image ops on one thread: a 32x32 warp split across threads is mostly synchronisation."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class RandAugment:
    """Apply ``num_ops`` operations drawn uniformly from the 14 (with replacement), all at ``magnitude``.

    Takes a CHW image, uint8 or float in [0, 1]. With ``mean`` and ``std`` the float input is taken as
    normalised ((x - mean) / std, as paperzoo's datasets return it) and returned normalised.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, ops: Sequence[str] = OPS,
                 interpolation: InterpolationMode = InterpolationMode.NEAREST, fill: int = 128) -> None:
        if num_ops < 0 or magnitude < 0:
            raise ValueError("RandAugment needs num_ops >= 0 and magnitude >= 0")
        unknown = set(ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown RandAugment ops: {sorted(unknown)}")
        self.num_ops, self.magnitude, self.ops = num_ops, magnitude, tuple(ops)
        self.interpolation, self.fill = interpolation, fill
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    def sample(self) -> list[tuple[str, float]]:
        """The (op, sign) pairs of one application, drawn from torch's global generator."""
        idx = torch.randint(len(self.ops), (self.num_ops,)).tolist()
        signs = torch.where(torch.rand(self.num_ops) < 0.5, -1.0, 1.0).tolist()
        return [(self.ops[i], s) for i, s in zip(idx, signs)]

    def __call__(self, img: torch.Tensor, target: Any = None) -> Any:
        """Augment an image, or an image and its target: with a target dict, its boxes, masks and keypoints
        follow the geometric operations (masks fill with 0), and objects pushed out of the image are dropped
        (``transforms.sanitize``). Returns the image, or ``(image, target)`` when a target was given."""
        if self.num_ops == 0:
            return img if target is None else (img, target)
        ops = self.sample()
        uint8 = img.dtype == torch.uint8
        x = img
        if not uint8:
            if self.mean is not None:
                x = x * self.std + self.mean
            x = x.clamp(0, 1).mul(255).round().to(torch.uint8)
        dense = isinstance(target, dict)
        with _one_thread():
            for op, sign in ops:
                x = apply_op(x, op, self.magnitude, sign, self.interpolation, self.fill)
                if dense and op in GEOMETRIC:
                    target = {k: apply_op(v, op, self.magnitude, sign, self.interpolation, 0) if _is_spatial(v) else v
                              for k, v in target.items()}
        if dense:
            from .transforms import sanitize

            target = sanitize(target)
        if not uint8:
            x = x.float().div_(255)
            x = (x - self.mean) / self.std if self.mean is not None else x
        if isinstance(img, tv_tensors.Image):
            x = tv_tensors.Image(x)
        return x if target is None else (x, target)

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude})"


def randaugment_for(dataset: object, num_ops: int, magnitude: float) -> RandAugment:
    """RandAugment for the normalised images of a paperzoo dataset (its ``mean``/``std``)."""
    return RandAugment(num_ops, magnitude, mean=getattr(dataset, "mean", None), std=getattr(dataset, "std", None))
