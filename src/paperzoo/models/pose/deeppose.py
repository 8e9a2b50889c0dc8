"""DeepPose (Toshev and Szegedy, 2014): pose estimation as direct regression of joint coordinates, refined by a
cascade of regressors on crops around the previous estimate.

* **Normalisation** (Sec. 3, Eq. 1): a box ``b = (b_c, b_w, b_h)`` (centre, width, height) normalises a joint by
  ``N(y_i; b) = diag(1 / b_w, 1 / b_h) (y_i - b_c)``, and an image by cropping it to ``b`` and resizing to the net's
  input; ``normalize``/``denormalize`` are ``N`` and ``N^-1``.
* **Stage 1** (Eq. 2): ``y* = N^-1(psi(N(x; b); theta_1); b)`` where ``psi`` regresses all ``k`` joints (2k numbers)
  from the crop of the person box ``b``; trained with the L2 loss ``sum_i ||N(y_i; b) - psi_i(N(x; b))||^2`` (Eq. 3).
* **Cascade** (Sec. 3.1, Eq. 4-6): at stage ``s >= 2`` every joint ``i`` gets a box ``b_i = (y_i^(s-1), sigma diam(y^(s-1)),
  sigma diam(y^(s-1)))`` around its previous estimate (``diam`` is the pose's scale: the distance between two
  opposing joints in the paper), and the estimate moves by the regressed displacement:
  ``y_i^s = y_i^(s-1) + N^-1(psi_i(N(x; b_i); theta_s); b_i) - b_ic``, i.e. the joint's position predicted inside its crop.
  Training data for stage ``s`` are simulated (Eq. 6): ground-truth joints displaced by ``delta ~ N(mu, Sigma)``,
  the normal distribution of the stage ``s - 1`` normalised displacements ``N(y_i^(s-1); b) - N(y_i; b)`` on the
  training set (``displacement_stats``, ``simulate_boxes``).
* **Network** (Sec. 3, Fig. 2): AlexNet-like, ``C(96, 11x11/4) - LRN - P - C(256, 5x5) - LRN - P - C(384, 3x3) -
  C(384, 3x3) - C(256, 3x3) - P - F(4096) - F(4096) - F(2k)`` with ReLUs and dropout in the fully connected layers,
  on 220x220 inputs (``alexnet_regressor``; ``deeppose`` builds stage 1 of it for the 14 LSP joints).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ...registry import register_model
from . import _heatmap as hm


# ------------------------------------------------------------------------------------------ equations
def normalize(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``N(y; b)`` (Eq. 1): points (..., 2) and boxes (..., 4) as (cx, cy, w, h) -> ``(y - b_c) / (b_w, b_h)``."""
    return (points - boxes[..., :2]) / boxes[..., 2:]


def denormalize(u: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``N^-1(u; b) = (b_w, b_h) u + b_c``."""
    return u * boxes[..., 2:] + boxes[..., :2]


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def diameter(points: torch.Tensor, visible: torch.Tensor | None = None, pair: tuple[int, int] | None = None) -> torch.Tensor:
    """The pose's scale, ``diam(y)``: the distance between the joints ``pair`` (the paper: left shoulder and right hip),
    or, without a pair, the diagonal of the labelled joints' bounding box. (N, K, 2) -> (N,)."""
    if pair is not None:
        return (points[:, pair[0]] - points[:, pair[1]]).norm(dim=-1)
    vis = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device) if visible is None else visible > 0
    big = torch.finfo(points.dtype).max
    lo = torch.where(vis[..., None], points, big).amin(1)
    hi = torch.where(vis[..., None], points, -big).amax(1)
    d = (hi - lo).norm(dim=-1)
    return torch.where(vis.any(1), d, torch.zeros_like(d))


def joint_boxes(points: torch.Tensor, diam: torch.Tensor, sigma: float) -> torch.Tensor:
    """``b_i = (y_i, sigma diam, sigma diam)`` (Eq. 4) for every joint: (N, K, 2), (N,) -> (N, K, 4) cxcywh."""
    side = (sigma * diam).clamp_min(1.0)[:, None, None].expand(*points.shape[:2], 1)
    return torch.cat([points, side, side], -1)


def displacement_stats(pred: torch.Tensor, gt: torch.Tensor, visible: torch.Tensor, diam: torch.Tensor,
                       sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (K, 2) and covariance (K, 2, 2) of the normalised displacements ``N(y_i^(s-1); b_i) - N(y_i; b_i)`` over the
    labelled joints of the training set, ``b_i`` of side ``sigma diam`` (Eq. 6's distribution, per joint)."""
    d = (pred - gt) / (sigma * diam).clamp_min(1.0)[:, None, None]
    w = (visible > 0).to(d.dtype)[..., None]  # (N, K, 1)
    n = w.sum(0).clamp_min(1.0)  # (K, 1)
    mu = (d * w).sum(0) / n
    c = (d - mu) * w
    cov = torch.einsum("nki,nkj->kij", c, c) / n[..., None]
    return mu, cov + 1e-6 * torch.eye(2, dtype=d.dtype)


def simulate_boxes(gt: torch.Tensor, diam: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor, sigma: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Training boxes of a cascade stage (Eq. 6): around ``y_i + delta``, ``delta ~ N(mu_i, Sigma_i)`` in units of the
    box side ``sigma diam``: (N, K, 2) -> (N, K, 4) cxcywh."""
    z = torch.randn(*gt.shape, generator=generator, dtype=gt.dtype).to(gt.device)
    chol = torch.linalg.cholesky(cov.to(gt.dtype))  # (K, 2, 2)
    delta = mu + torch.einsum("kij,nkj->nki", chol, z)
    side = (sigma * diam).clamp_min(1.0)[:, None, None]
    return joint_boxes(gt + delta * side, diam, sigma)


# ------------------------------------------------------------------------------------------ networks
class AlexNetRegressor(nn.Module):
    """The paper's regressor: five convolutions (11x11/4, 5x5, 3x3 x 3) with LRN and max pooling after the first
    two and the last, two F(4096) layers with dropout, and a linear output of 2k normalised coordinates."""

    def __init__(self, num_keypoints: int = 14, in_chans: int = 3, input_size: int = 220, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 96, 11, 4), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        side = input_size
        for k, s in ((11, 4), (3, 2), (3, 2), (3, 2)):  # conv1 (no padding) and the three poolings
            side = (side - k) // s + 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(256 * side * side, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(4096, 2 * num_keypoints))
        self.num_keypoints = num_keypoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).view(len(x), self.num_keypoints, 2)


class DeepPose(hm.TopDownPose, nn.Module):
    """A cascade of joint regressors. ``forward(crops)`` is stage 1 on box crops: (N, K, 2) coordinates normalised by
    the crop (``pose_output = "coords"``, which the pose task trains); ``cascade(images, boxes)`` runs every stage.

    ``regressor(num_keypoints) -> nn.Module`` builds each stage's net (default: the paper's AlexNet-like one); stages
    after the first see ``stage_input`` x ``stage_input`` crops of side ``sigma diam`` around each joint."""

    pose_output = "coords"

    def __init__(self, num_keypoints: int = 14, stages: int = 1, sigma: float = 1.0,
                 regressor: Callable[[int], nn.Module] | None = None, input_size: tuple[int, int] = (220, 220),
                 stage_input: int | None = None, diam_pair: tuple[int, int] | None = None) -> None:
        super().__init__()
        build = regressor or (lambda k: AlexNetRegressor(k, input_size=input_size[0]))
        self.stages = nn.ModuleList(build(num_keypoints) for _ in range(stages))
        self.num_keypoints, self.sigma, self.diam_pair = num_keypoints, sigma, diam_pair
        self.pose_input_size = tuple(input_size)
        self.stage_input = stage_input or input_size[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages[0](x)

    def refine(self, stage: int, images: Sequence[torch.Tensor], index: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """One cascade step: joint ``i``'s new position inside its box ``boxes`` (N, K, 4 cxcywh) of the image ``index[n]``,
        in image coordinates: ``N^-1(psi_i(N(x; b_i)); b_i)`` (Eq. 5)."""
        n, k = boxes.shape[:2]
        s = self.stage_input
        regions = cxcywh_to_xyxy(boxes).reshape(n * k, 4)
        per_image = [regions[(index.repeat_interleave(k) == i)] for i in range(len(images))]
        order = torch.argsort(index.repeat_interleave(k), stable=True)  # crop() returns image by image
        crops = torch.empty(n * k, images[0].shape[0], s, s, device=boxes.device)
        crops[order] = hm.crop(list(images), per_image, (s, s))
        psi = self.stages[stage](crops).view(n, k, k, 2)  # every crop regresses all joints; joint i keeps its own
        own = psi[:, torch.arange(k), torch.arange(k)]  # (N, K, 2): psi_i of the crop around joint i
        return denormalize(own, boxes)

    @torch.no_grad()
    def cascade(self, images: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor], visible: Sequence[torch.Tensor] | None = None,
                stages: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> list[torch.Tensor]:
        """Every stage's estimate, in image coordinates: a list (one per stage) of (N, K, 2) for the boxes (XYXY)
        of each image, concatenated in order. Images are CHW in [0, 1], normalised by ``mean``/``std`` if given."""
        if mean is not None:
            m = torch.tensor(mean).view(-1, 1, 1)
            sd = torch.tensor(std).view(-1, 1, 1)
            images = [(im - m.to(im)) / sd.to(im) for im in images]
        size = self.pose_input_size
        regions = [hm.box_to_region(b.float(), size) for b in boxes]
        x = hm.crop(list(images), regions, size)
        regions_all = torch.cat(regions)
        scale = torch.tensor([size[1], size[0]], dtype=x.dtype)
        y = hm.from_region((self.stages[0](x) + 0.5) * scale, regions_all, size)
        out = [y]
        index = torch.cat([torch.full((len(b),), i) for i, b in enumerate(boxes)])
        vis = torch.cat(list(visible)) if visible is not None else None
        for s in range(1, stages or len(self.stages)):
            diam = diameter(y, vis if self.diam_pair is None else None, self.diam_pair)
            y = self.refine(s, images, index, joint_boxes(y, diam, self.sigma))
            out.append(y)
        return out


def deeppose_params_closed_form(k: int = 14, input_size: int = 220) -> int:
    """Parameters of the paper's network from its layer list (Sec. 3): the five convolutions and the three fully
    connected layers, biases included (LRN and pooling have none)."""
    side = input_size
    for kk, s in ((11, 4), (3, 2), (3, 2), (3, 2)):
        side = (side - kk) // s + 1
    convs = [(3, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
    n = sum(ci * co * kk * kk + co for ci, co, kk in convs)
    fcs = [(256 * side * side, 4096), (4096, 4096), (4096, 2 * k)]
    return n + sum(i * o + o for i, o in fcs)


@register_model(paper="deeppose", task="pose", input_size=(3, 220, 220), num_classes=14, paper_params_m=40.0,
                notes="stage 1 of the cascade with the paper's AlexNet-like regressor (the paper: 'about 40M' parameters)")
def deeppose(num_keypoints: int = 14, in_chans: int = 3, input_size: tuple[int, int] = (220, 220), stages: int = 1,
             sigma: float = 1.0, num_classes: int | None = None) -> DeepPose:
    """``num_classes`` is accepted and ignored (a pose regressor has keypoints, not classes)."""
    size = tuple(input_size)
    return DeepPose(num_keypoints, stages, sigma, lambda k: AlexNetRegressor(k, in_chans, size[0]), size)
