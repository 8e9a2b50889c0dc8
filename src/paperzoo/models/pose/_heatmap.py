"""The heatmap codec every heatmap pose model shares (Hourglass, HRNet, HRFormer, PPT), and top-down crops.

* **Top-down crops** (``box_to_region``, ``crop``): each person (object) box is grown to the network's aspect
  ratio and padded by 1.25 (as HRNet and SimpleBaseline do), then resampled to the input size with
  ``torchvision.ops.roi_align`` (bilinear, ``aligned=True``: continuous coordinates, pixel ``k`` covers
  ``[k, k + 1)``). ``to_region``/``from_region`` move keypoints between image and region coordinates.
* **Targets** (``encode``): one unnormalised 2-D Gaussian per keypoint, ``exp(-((x - mu_x)^2 + (y - mu_y)^2) /
  (2 sigma^2))`` on the heatmap grid (stride ``s``: heatmap pixel ``j`` is centred at region coordinate
  ``(j + 0.5) s``), its centre rounded to the nearest heatmap pixel as in the Stacked Hourglass and HRNet code;
  a keypoint that is not labelled or falls off the heatmap gets weight 0.
* **Decoding** (``decode``): the arg-max of each heatmap, moved a quarter pixel towards the higher of its two
  neighbours along x and along y (Newell et al., Sec. 4; HRNet's ``get_final_preds``), which undoes on average
  the rounding of the encoder; the maximum is the keypoint's score.
* **Flip test** (``flip_test``): the heatmaps of the horizontally flipped input are flipped back, their left and
  right keypoints swapped (``flip_index[p]`` is the keypoint that ``p`` becomes in the mirror image), then
  averaged with the plain ones. With heatmap pixel ``j`` centred at ``(j + 0.5) * stride`` the mirror is exact
  (region ``x -> W - x`` is heatmap ``j -> w - 1 - j``), so the one-pixel shift HRNet's code applies for its
  integer-pixel convention (``SHIFT_HEATMAP``) is off by default (``shift=True`` turns it on).
* **Loss** (``heatmap_loss``): the mean squared error between predicted and target heatmaps over labelled
  keypoints (HRNet's ``JointsMSELoss``: ``0.5 * mean((w * (h - t))^2)``), summed over a stack's outputs for
  intermediate supervision.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

PADDING = 1.25  # box enlargement of the top-down crop (HRNet, SimpleBaseline)


# ------------------------------------------------------------------------------------------ top-down crops
def box_to_region(boxes: torch.Tensor, size: tuple[int, int], padding: float = PADDING) -> torch.Tensor:
    """XYXY boxes (N, 4) -> crop regions (N, 4) XYXY with the network's aspect ratio ``w / h`` of ``size`` =
    (H, W), centred on the box, the short side grown to fit, both sides times ``padding``."""
    boxes = boxes.float()
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0)
    aspect = size[1] / size[0]
    w = torch.maximum(wh[:, 0], wh[:, 1] * aspect)
    h = w / aspect
    half = torch.stack([w, h], 1) * padding / 2
    return torch.cat([center - half, center + half], 1)


def crop(images: torch.Tensor | Sequence[torch.Tensor], regions: Sequence[torch.Tensor],
         size: tuple[int, int]) -> torch.Tensor:
    """Bilinear crops of ``regions[i]`` (N_i, 4) XYXY from image ``i``: (sum N_i, C, H, W) at ``size`` = (H, W)."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        stack = images
    else:
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) == 1:
            stack = torch.stack(list(images))
        else:  # images of different sizes: pad to the largest (regions stay in each image's coordinates)
            h = max(im.shape[-2] for im in images)
            w = max(im.shape[-1] for im in images)
            stack = torch.stack([F.pad(im, (0, w - im.shape[-1], 0, h - im.shape[-2])) for im in images])
    rois = [r.to(stack.dtype) for r in regions]
    return roi_align(stack, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def to_region(points: torch.Tensor, regions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image coordinates (N, P, 2) -> coordinates in each region resampled to ``size`` = (H, W)."""
    scale = torch.tensor([size[1], size[0]], dtype=points.dtype, device=points.device)
    wh = (regions[:, 2:] - regions[:, :2]).to(points.dtype)
    return (points - regions[:, None, :2].to(points.dtype)) * scale / wh[:, None]


def from_region(points: torch.Tensor, regions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Region coordinates (N, P, 2) at ``size`` = (H, W) -> image coordinates (the inverse of ``to_region``)."""
    scale = torch.tensor([size[1], size[0]], dtype=points.dtype, device=points.device)
    wh = (regions[:, 2:] - regions[:, :2]).to(points.dtype)
    return points * wh[:, None] / scale + regions[:, None, :2].to(points.dtype)


# ------------------------------------------------------------------------------------------ targets
def encode(points: torch.Tensor, visibility: torch.Tensor, heatmap_size: tuple[int, int], stride: float,
           sigma: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian target heatmaps for region keypoints (N, P, 2): ((N, P, h, w), weights (N, P)).

    The keypoint's heatmap position is ``x / stride - 0.5`` (heatmap pixel ``j`` is centred at ``(j + 0.5) *
    stride``), rounded to the nearest pixel; ``sigma`` is in heatmap pixels (2 for 64x48 heatmaps in HRNet)."""
    h, w = heatmap_size
    mu = torch.round(points.float() / stride - 0.5)  # (N, P, 2) integer heatmap pixel
    inside = (mu[..., 0] >= 0) & (mu[..., 0] < w) & (mu[..., 1] >= 0) & (mu[..., 1] < h)
    weight = ((visibility > 0) & inside).float()
    xs = torch.arange(w, dtype=torch.float32, device=points.device)
    ys = torch.arange(h, dtype=torch.float32, device=points.device)
    gx = torch.exp(-((xs - mu[..., 0:1]) ** 2) / (2 * sigma ** 2))  # (N, P, w)
    gy = torch.exp(-((ys - mu[..., 1:2]) ** 2) / (2 * sigma ** 2))  # (N, P, h)
    heatmaps = gy[..., :, None] * gx[..., None, :] * weight[..., None, None]
    return heatmaps, weight


def decode(heatmaps: torch.Tensor, shift: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps (N, P, h, w) -> (heatmap coordinates (N, P, 2) in pixels, scores (N, P)).

    Arg-max, then ``shift`` (a quarter pixel) towards the higher neighbour in x and in y, where both neighbours
    exist (HRNet: ``1 < x < w - 1``)."""
    n, p, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, p, h * w)
    score, idx = flat.max(-1)
    x, y = (idx % w), torch.div(idx, w, rounding_mode="floor")
    coords = torch.stack([x, y], -1).to(heatmaps.dtype)
    if shift:
        xl, xr = (x - 1).clamp(0, w - 1), (x + 1).clamp(0, w - 1)
        yu, yd = (y - 1).clamp(0, h - 1), (y + 1).clamp(0, h - 1)
        pick = lambda yy, xx: flat.gather(-1, (yy * w + xx)[..., None])[..., 0]  # noqa: E731
        dx = torch.sign(pick(y, xr) - pick(y, xl))
        dy = torch.sign(pick(yd, x) - pick(yu, x))
        ok_x = (x > 1) & (x < w - 1)
        ok_y = (y > 1) & (y < h - 1)
        coords = coords + shift * torch.stack([dx * ok_x, dy * ok_y], -1).to(coords.dtype)
    return coords, score


def heatmap_to_region(coords: torch.Tensor, stride: float) -> torch.Tensor:
    """Heatmap pixel coordinates -> region coordinates (pixel ``j`` is centred at ``(j + 0.5) * stride``)."""
    return (coords + 0.5) * stride


# ------------------------------------------------------------------------------------------ flip test
def flip_heatmaps(heatmaps: torch.Tensor, flip_index: torch.Tensor | Sequence[int], shift: bool = False) -> torch.Tensor:
    """Heatmaps of a mirrored input (N, P, h, w) back into the original frame: flip along x, put keypoint
    ``flip_index[p]``'s map at ``p`` (``flip_index`` (P,) or per instance (N, P)), optionally shift one pixel right."""
    out = heatmaps.flip(-1)
    idx = torch.as_tensor(flip_index, device=heatmaps.device, dtype=torch.long)
    if idx.ndim == 1:
        out = out[:, idx]
    else:
        out = out.gather(1, idx[..., None, None].expand_as(out))
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], -1)
    return out


def flip_test(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
              flip_index: torch.Tensor | Sequence[int], shift: bool = False) -> torch.Tensor:
    """The mean of ``forward(x)`` and the heatmaps of the mirrored input brought back (``flip_heatmaps``).
    Instances whose ``flip_index`` row holds -1 (an object that is not its own mirror image) keep the plain maps."""
    plain = forward(x)
    mirrored = forward(x.flip(-1))
    idx = torch.as_tensor(flip_index, device=plain.device, dtype=torch.long)
    valid = (idx >= 0).all(-1)
    both = (plain + flip_heatmaps(mirrored, idx.clamp_min(0), shift)) / 2
    if valid.ndim == 0:
        return both if bool(valid) else plain
    return torch.where(valid[:, None, None, None], both, plain)


# ------------------------------------------------------------------------------------------ loss
def heatmap_loss(outputs: torch.Tensor | Sequence[torch.Tensor], targets: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """HRNet's ``JointsMSELoss``, ``0.5 * mean over (N, P, h, w) of (w_p (pred - target))^2``, summed over the
    outputs of every stack when ``outputs`` is a list (intermediate supervision)."""
    outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    w = weights[..., None, None]
    return sum(0.5 * ((o - targets) * w).pow(2).mean() for o in outs)


# ------------------------------------------------------------------------------------------ shapes' skeletons
def shapes_flip_index(label_names: Sequence[str], labels: torch.Tensor, slots: int) -> torch.Tensor:
    """Per-instance flip permutations (N, slots) for the synthetic scenes' shapes drawn without rotation: the
    corner that corner ``p`` becomes when the image is mirrored left-right (padding slots map to themselves; a
    shape that is not its own mirror image, the arrow, gets a row of -1: no flip test).
    ``labels`` index ``label_names`` (the dataset's ``categories``, background at 0)."""
    table = torch.arange(slots).repeat(len(label_names), 1)
    for c, name in enumerate(label_names):
        perm = _shape_flip(name)
        if perm is not None:
            table[c, : len(perm)] = torch.as_tensor(perm)
    return table[labels.long().cpu()]


def _shape_flip(name: str) -> list[int] | None:
    from ...data.shapes import SHAPES

    if name not in SHAPES:
        return None
    unit, kp_idx = SHAPES[name]
    pts = torch.as_tensor(unit[list(kp_idx)], dtype=torch.float64)
    mirrored = pts * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    d, idx = torch.cdist(mirrored, pts).min(1)
    return idx.tolist() if bool((d < 1e-6).all()) else [-1] * len(idx)  # not its own mirror image: no flip test


# ------------------------------------------------------------------------------------------ models
def check_input_size(model: str, size: Sequence[int], multiple: int) -> tuple[int, int]:
    """A crop size (H, W) the network's strides divide, else a one-line error naming the model."""
    from ...errors import ConfigError

    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0 or h % multiple or w % multiple:
        raise ConfigError(f"{model}: input_size {h}x{w} must be positive multiples of {multiple} (its total stride)")
    return h, w


class TopDownPose:
    """Mixin of the pose networks: ``detect(images, boxes=None)``, the one path ``paperzoo predict`` uses — the
    keypoints in each box (default: the whole image) of CHW images in [0, 1], as detection-style dicts."""

    def detect(self, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor] | None = None,
               flip: bool = False) -> list[dict[str, torch.Tensor]]:
        from ...tasks.pose import PoseTask

        p = int(getattr(self, "num_keypoints"))
        targets = []
        for i, im in enumerate(images):
            b = boxes[i] if boxes is not None else torch.tensor([[0.0, 0.0, im.shape[-1], im.shape[-2]]])
            b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
            targets.append({"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64),
                            "keypoints": torch.zeros(len(b), p, 2), "visibility": torch.zeros(len(b), p, dtype=torch.int64)})
        return PoseTask(flip=flip and getattr(self, "flip_index", None) is not None,
                        flip_index=getattr(self, "flip_index", None)).predict(self, (list(images), targets))
