"""From a list of images of any sizes to one padded batch, and detections back to each image's pixels.

Faster R-CNN re-scales every image so that its shorter side is s pixels (Sec. 3.3: s = 600), capping the longer
side (py-faster-rcnn: 1000; torchvision's detectors: 800 and 1333). The image is normalised, resized bilinearly
by the single factor min(s / short side, max / long side), and zero-padded with the others to a common size
divisible by ``size_divisible``. Target boxes are scaled by the same factors; detections are scaled back.
In training ``min_size`` may list several sizes, one drawn per image (multi-scale training) from torch's
generator: one uniform draw per image, as torchvision makes, even for a single size.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import DataError

__all__ = ["DetectionTransform", "ImageBatch", "as_xyxy", "scale_boxes"]


@dataclass
class ImageBatch:
    """A padded batch (B, C, H, W) and each image's (height, width) after resizing, before padding."""

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def scale_boxes(boxes: Tensor, old_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """XYXY boxes of an image of ``old_size`` (h, w) in the pixels of the same image at ``new_size``."""
    ratio_h, ratio_w = (torch.tensor(n, dtype=torch.float32, device=boxes.device)
                        / torch.tensor(o, dtype=torch.float32, device=boxes.device) for n, o in zip(new_size, old_size))
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=-1)


def as_xyxy(boxes: Tensor) -> Tensor:
    """A plain XYXY tensor from a tensor or a ``tv_tensors.BoundingBoxes`` in any format."""
    from torchvision import tv_tensors

    if isinstance(boxes, tv_tensors.BoundingBoxes):
        if boxes.format != tv_tensors.BoundingBoxFormat.XYXY:
            from torchvision.transforms.v2.functional import convert_bounding_box_format

            boxes = convert_bounding_box_format(boxes, new_format=tv_tensors.BoundingBoxFormat.XYXY)
        return boxes.as_subclass(Tensor)
    return torch.as_tensor(boxes)


class DetectionTransform(nn.Module):
    """Normalise with ``mean``/``std``, resize to ``min_size`` (shorter side) within ``max_size`` (longer side),
    and pad into an ``ImageBatch``; ``postprocess`` maps detections back to the input images."""

    def __init__(self, min_size: int | Sequence[int], max_size: int, mean: Sequence[float], std: Sequence[float],
                 size_divisible: int = 32) -> None:
        super().__init__()
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.max_size = max_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.size_divisible = size_divisible

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, max_size={self.max_size}, mean={self.mean}, std={self.std}"

    def _target_size(self) -> int:
        if not self.training:
            return self.min_size[-1]
        return self.min_size[int(torch.empty(1).uniform_(0.0, float(len(self.min_size))).item())]

    def resize(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        size = self._target_size()
        scale = min(size / min(h, w), self.max_size / max(h, w))
        return F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                             align_corners=False)[0]

    def forward(self, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]] | None = None
                ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        resized, new_targets = [], None if targets is None else []
        for i, image in enumerate(images):
            if image.dim() != 3:
                raise DataError(f"image {i} has shape {tuple(image.shape)}; expected (C, H, W)")
            if not image.is_floating_point():
                raise DataError(f"image {i} is {image.dtype}; expected a float image in [0, 1]")
            mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device)[:, None, None]
            std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device)[:, None, None]
            out = self.resize((image - mean) / std)
            resized.append(out)
            if targets is not None:
                target = dict(targets[i])
                target["boxes"] = scale_boxes(as_xyxy(target["boxes"]), image.shape[-2:], out.shape[-2:])
                new_targets.append(target)
        return self.batch(resized), new_targets

    def batch(self, images: Sequence[Tensor]) -> ImageBatch:
        """Zero-pad to the largest height and width, rounded up to a multiple of ``size_divisible``."""
        stride = float(self.size_divisible)
        c = max(img.shape[0] for img in images)
        h = int(math.ceil(max(img.shape[1] for img in images) / stride) * stride)
        w = int(math.ceil(max(img.shape[2] for img in images) / stride) * stride)
        out = images[0].new_zeros((len(images), c, h, w))
        for slot, img in zip(out, images):
            slot[: img.shape[0], : img.shape[1], : img.shape[2]].copy_(img)
        return ImageBatch(out, [(int(img.shape[1]), int(img.shape[2])) for img in images])

    def postprocess(self, detections: list[dict[str, Tensor]], image_sizes: Sequence[tuple[int, int]],
                    original_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = scale_boxes(det["boxes"], size, original)
        return detections
