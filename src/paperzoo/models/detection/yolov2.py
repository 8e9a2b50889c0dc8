"""YOLO9000: Better, Faster, Stronger (Redmon & Farhadi, 2016, arXiv:1612.08242) — the YOLOv2 detector.

What the paper changes over YOLO v1 (Sec. 2 "Better", Sec. 3 "Faster"), and where it is here:

* **Darknet-19** (Sec. 3, Table 6): 19 conv layers and 5 max pools, 3x3 convs doubling the channels after each
  pooling with 1x1 reductions between them, batch norm and leaky ReLU after every conv, global average pooling;
  5.58 billion operations at 224 px. ``darknet19`` is the classifier (timm-style ``features_only`` too).
* **Anchor priors from k-means with d(box, centroid) = 1 - IoU(box, centroid)** (Sec. 2 "Dimension Clusters",
  Table 1): ``kmeans_anchors`` on any (w, h) boxes, ``iou_wh`` the IoU of boxes aligned at one centre,
  ``mean_best_iou`` the table's "Avg IOU".
* **Direct location prediction** (Sec. 2, eq. in Fig. 3): b_x = sigma(t_x) + c_x, b_y = sigma(t_y) + c_y, b_w = p_w
  e^{t_w}, b_h = p_h e^{t_h}, Pr(object) x IoU = sigma(t_o); class probabilities by softmax per anchor (``decode``).
* **Fine-grained features** (Sec. 2): a passthrough layer that stacks each 2x2 block of the 26 x 26 x 512 map into
  channels (13 x 13 x 2048) and concatenates it to the input of the second-to-last conv (the paper's description).
  Darknet's released cfg joins at the same place but first reduces the 26 x 26 map to 64 channels by a 1x1 conv:
  ``passthrough_channels=64`` builds that variant. Our space-to-depth is ``pixel_unshuffle``'s; Darknet's ``reorg``
  layer instead reads its input buffer as if it were (C/4, 2H, 2W), which scrambles positions across channels;
  ``reorg="darknet"`` reproduces it (``darknet_reorg``), as weights trained by Darknet need.
  With both, the network equals ``lightnet``'s ``YoloV2`` (``source="lightnet"`` loads its state dicts).
* **Multi-scale training** (Sec. 2): every 10 batches a new input size from {320, 352, ..., 608}; the network is
  fully convolutional (stride 32), so 416 px gives 13 x 13 and 608 px 19 x 19 cells.

``yolov2`` (VOC: 5 anchors, 20 classes) returns the raw head (N, S, S, A x (5 + C)) = 13 x 13 x 125 at 416 px. The
paper gives no loss equation; ``region_loss`` follows the released Darknet region layer's terms (sum-squared):
coordinates of the anchor of best shape in the object's cell (weight 2 - w h), object confidence towards the IoU
(weight 5), no-object confidence for predictions whose best IoU with every object is below 0.6 (weight 1), class
probabilities towards one-hot (weight 1); averaged over images. Labels index classes directly, as in ``yolo``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigError, DataError, WeightsError
from ...registry import register_model
from ...weights import register_converter
from ._parts.detector import Detector
from ._parts.grid import check_targets, image_sizes, normalized_targets, postprocess, square_batch

__all__ = ["Darknet19", "YOLOv2", "iou_wh", "kmeans_anchors", "mean_best_iou", "region_loss"]

# Table 6: (channels, kernel) and "M" for 2x2 max pooling; the 1000-way 1x1 conv and the average pool follow.
DARKNET19: list[tuple[int, int] | str] = [
    (32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M", (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
]
# VOC priors of the released yolo-voc.cfg, (w, h) in cells of a 13 x 13 grid (k-means on VOC 2007+2012)
VOC_ANCHORS = ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053), (11.2364, 10.0071))


def conv_bn(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """conv (no bias) -> BN -> leaky ReLU 0.1, as every Darknet-19 layer."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.1, inplace=True))


class Darknet19(nn.Module):
    """Darknet-19 (Table 6): ``features`` (18 conv layers and 5 max pools), then the 19th conv (1x1 to
    ``num_classes``) and global average pooling. Feature levels end before each pooling and at the last conv
    (strides 1, 2, 4, 8, 16, 32)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.feature_info: list[dict] = []
        chs, reduction = in_chans, 1
        for item in DARKNET19:
            if item == "M":
                self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.{len(layers) - 1}"))
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
                continue
            out, k = item
            out = max(1, round(out * width))
            layers.append(conv_bn(chs, out, k))
            chs = out
        self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self._level_ends = [int(f["module"].split(".")[1]) for f in self.feature_info]
        self.num_features, self.num_classes = chs, num_classes
        self.fc = nn.Conv2d(chs, num_classes, 1) if num_classes > 0 else nn.Identity()  # the 19th conv layer

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Conv2d(self.num_features, num_classes, 1) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if pre_logits:
            return x.mean((2, 3))
        return self.fc(x).mean((2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: Tensor, indices: Sequence[int]) -> list[Tensor]:
        wanted = {self._level_ends[i] for i in indices}
        out = []
        for i, layer in enumerate(self.features):
            if i > max(wanted):
                break
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        del self.features[self._level_ends[max_index] + 1:]
        self.fc = nn.Identity()
        return ["fc"]


# ------------------------------------------------------------------------------------- dimension clusters
def iou_wh(wh: Tensor, centroids: Tensor) -> Tensor:
    """IoU of boxes (N, 2) and centroids (K, 2), both given as (w, h) and aligned at the same centre: (N, K)."""
    inter = torch.minimum(wh[:, None, 0], centroids[None, :, 0]) * torch.minimum(wh[:, None, 1], centroids[None, :, 1])
    return inter / (wh[:, None].prod(-1) + centroids[None].prod(-1) - inter)


def kmeans_anchors(wh: Tensor, k: int, iters: int = 300, seed: int = 0, distance: str = "iou") -> Tensor:
    """k-means on box shapes (N, 2) with the paper's distance d(box, centroid) = 1 - IoU(box, centroid)
    (``distance="euclidean"``: plain k-means, the paper's "Cluster SSE"). Centroids start at k distinct boxes drawn
    with ``seed`` and move to the mean (w, h) of their cluster until assignments stop changing. Returns (k, 2)
    sorted by area."""
    wh = torch.as_tensor(wh, dtype=torch.float64)
    if wh.dim() != 2 or wh.shape[1] != 2 or len(wh) < k or k < 1 or (wh <= 0).any():
        raise DataError(f"k-means needs at least k = {k} boxes of positive (w, h), got shape {tuple(wh.shape)}")
    if distance not in ("iou", "euclidean"):
        raise ConfigError(f"distance must be 'iou' or 'euclidean', got '{distance}'")
    g = torch.Generator().manual_seed(seed)
    centroids = wh[torch.randperm(len(wh), generator=g)[:k]].clone()
    assign = None
    for _ in range(iters):
        d = 1 - iou_wh(wh, centroids) if distance == "iou" else torch.cdist(wh, centroids)
        new = d.argmin(1)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros_like(centroids).index_add_(0, assign, wh)
        counts = torch.bincount(assign, minlength=k).to(wh.dtype)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)  # an empty cluster stays put
    return centroids[centroids.prod(1).argsort()].float()


def mean_best_iou(wh: Tensor, anchors: Tensor) -> float:
    """Table 1's "Avg IOU": the mean over boxes of the IoU with their closest prior."""
    return float(iou_wh(torch.as_tensor(wh, dtype=torch.float64), torch.as_tensor(anchors, dtype=torch.float64)).amax(1).mean())


# ------------------------------------------------------------------------------------------- the detector
def decode_region(head: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The head (N, S, S, A x (5 + C)) -> boxes (N, S, S, A, 4) as (cx, cy, w, h) in [0, 1] of the image by direct
    location prediction, objectness sigma(t_o) (N, S, S, A), class probabilities (N, S, S, A, C) by softmax, and the
    raw (t_x, t_y, t_w, t_h). ``anchors`` (A, 2) are (w, h) priors in cells."""
    n, sy, sx, _ = head.shape
    a = len(anchors)
    p = head.view(n, sy, sx, a, -1)
    t = p[..., :4]
    cy, cx = torch.meshgrid(torch.arange(sy, device=head.device, dtype=head.dtype),
                            torch.arange(sx, device=head.device, dtype=head.dtype), indexing="ij")
    bx = (torch.sigmoid(t[..., 0]) + cx[None, :, :, None]) / sx
    by = (torch.sigmoid(t[..., 1]) + cy[None, :, :, None]) / sy
    bw = anchors[:, 0].to(head) * torch.exp(t[..., 2]) / sx
    bh = anchors[:, 1].to(head) * torch.exp(t[..., 3]) / sy
    return torch.stack((bx, by, bw, bh), -1), torch.sigmoid(p[..., 4]), torch.softmax(p[..., 5:], -1), t


def _xyxy(b: Tensor) -> Tensor:
    return torch.cat((b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2), -1)


def region_loss(head: Tensor, anchors: Tensor, image: Tensor, gt: Tensor, labels: Tensor, ignore_thresh: float = 0.6,
                coord_scale: float = 1.0, object_scale: float = 5.0, noobject_scale: float = 1.0,
                class_scale: float = 1.0) -> dict[str, Tensor]:
    """Darknet's region-layer loss (see the module docstring) on a batch; ``gt`` (M, 4) XYXY in [0, 1], ``image`` (M,)
    their image index, ``labels`` (M,). An object is assigned to the anchor of its centre's cell whose shape has the
    highest IoU with it (shapes aligned at one centre); when two objects pick the same cell and anchor the later
    listed is kept."""
    n, sy, sx, _ = head.shape
    a = len(anchors)
    boxes, obj, probs, t = decode_region(head, anchors)
    c = probs.shape[-1]
    # no-object term: predictions whose best IoU with any object of their image is below the threshold
    from torchvision.ops import box_iou

    pred = _xyxy(boxes).view(n, -1, 4)
    best = torch.zeros(n, pred.shape[1], device=head.device, dtype=head.dtype)
    if len(gt):
        iou = box_iou(pred.reshape(-1, 4), gt).view(n, -1, len(gt))
        same = image[None, None, :] == torch.arange(n, device=head.device)[:, None, None]
        best = iou.masked_fill(~same, 0).amax(2)
    centre = (gt[:, :2] + gt[:, 2:]) / 2
    wh = (gt[:, 2:] - gt[:, :2]).clamp(min=1e-9)
    col = (centre[:, 0] * sx).floor().clamp(0, sx - 1).long()
    row = (centre[:, 1] * sy).floor().clamp(0, sy - 1).long()
    grid_wh = torch.tensor([sx, sy], device=head.device, dtype=head.dtype)
    k = iou_wh(wh * grid_wh, anchors.to(head)).argmax(1)
    slot = ((image * sy + row) * sx + col) * a + k
    owner = torch.full((n * sy * sx * a,), -1, dtype=torch.long, device=head.device)
    owner = owner.scatter_reduce(0, slot, torch.arange(len(slot), device=head.device), "amax")
    keep = owner[slot] == torch.arange(len(slot), device=head.device)
    image, row, col, k, centre, wh, labels, gt = (x[keep] for x in (image, row, col, k, centre, wh, labels, gt))
    responsible = torch.zeros(n, sy, sx, a, dtype=torch.bool, device=head.device)
    responsible[image, row, col, k] = True
    noobj = (best.view(n, sy, sx, a) < ignore_thresh) & ~responsible
    tt = t[image, row, col, k]
    scale = coord_scale * (2 - wh[:, 0] * wh[:, 1])
    loss_xy = (scale * ((torch.sigmoid(tt[:, 0]) - (centre[:, 0] * sx - col)) ** 2
                        + (torch.sigmoid(tt[:, 1]) - (centre[:, 1] * sy - row)) ** 2)).sum()
    anchor_wh = anchors.to(head)[k]
    loss_wh = (scale * ((tt[:, 2] - torch.log(wh[:, 0] * sx / anchor_wh[:, 0])) ** 2
                        + (tt[:, 3] - torch.log(wh[:, 1] * sy / anchor_wh[:, 1])) ** 2)).sum()
    iou_target = torch.diag(box_iou(_xyxy(boxes[image, row, col, k]), gt)).detach() if len(gt) else gt.new_zeros(0)
    loss_obj = object_scale * ((obj[image, row, col, k] - iou_target) ** 2).sum()
    loss_noobj = noobject_scale * (obj[noobj] ** 2).sum()
    onehot = F.one_hot(labels, c).to(probs.dtype)
    loss_class = class_scale * ((probs[image, row, col, k] - onehot) ** 2).sum()
    return {"loss_xy": loss_xy / n, "loss_wh": loss_wh / n, "loss_obj": loss_obj / n, "loss_noobj": loss_noobj / n,
            "loss_class": loss_class / n}


def space_to_depth(x: Tensor, block: int = 2) -> Tensor:
    """The passthrough layer: each block x block patch of positions becomes block^2 x the channels."""
    return F.pixel_unshuffle(x, block)


def darknet_reorg(x: Tensor, stride: int = 2) -> Tensor:
    """Darknet's reorg layer as its forward pass computes it (``reorg_cpu`` with ``forward = 0``, the layer's input
    dims): output element (k, j, i) of the (C, H, W) buffer takes input element w2 + W s (h2 + H s c2), with
    c2 = k mod C/s^2, o = k div C/s^2, w2 = i s + o mod s, h2 = j s + o div s; the buffer is then read as
    (C s^2, H/s, W/s). One gather for the batch."""
    b, c, h, w = x.shape
    s = stride
    if c % (s * s) or h % s or w % s:
        raise ConfigError(f"reorg by {s} needs channels divisible by {s * s} and sides by {s}, got {tuple(x.shape[1:])}")
    k = torch.arange(c, device=x.device).view(c, 1, 1)
    j = torch.arange(h, device=x.device).view(1, h, 1)
    i = torch.arange(w, device=x.device).view(1, 1, w)
    out_c = c // (s * s)
    c2, o = k % out_c, k // out_c
    source = (i * s + o % s) + w * s * ((j * s + o // s) + h * s * c2)
    return x.reshape(b, -1)[:, source.reshape(-1)].reshape(b, c * s * s, h // s, w // s)


class YOLOv2(Detector, nn.Module):
    """Darknet-19's conv layers (its classifier removed), three 3x3x1024 convs with the passthrough joined before the
    last of them, and a 1x1 conv to A x (5 + C) per cell.

    ``model(x)`` -> the head (N, S, S, A x (5 + C)) for an (N, 3, H, W) batch (H, W multiples of 32) or a list of
    images (resized to ``image_size``, or in training to the current multi-scale size); ``model(images, targets)``
    -> the region loss terms; ``detect(images)`` -> detection dicts. ``anchors`` are (w, h) in cells of the
    ``image_size`` grid (VOC's k-means priors by default)."""

    def __init__(self, num_classes: int = 20, anchors: Sequence[Sequence[float]] = VOC_ANCHORS, *, in_chans: int = 3,
                 image_size: int = 416, width: float = 1.0, passthrough_channels: int | None = None,
                 reorg: str = "space_to_depth",
                 multiscale: Sequence[int] | None = tuple(range(320, 609, 32)), multiscale_every: int = 10,
                 score_thresh: float = 0.005, nms_thresh: float = 0.45, detections_per_img: int = 100,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0), **loss: Any) -> None:
        super().__init__()
        if image_size % 32 or (multiscale and any(s % 32 for s in multiscale)):
            raise ConfigError(f"input sizes must be multiples of 32 (the network's stride), got {image_size}, {multiscale}")
        trunk = Darknet19(0, in_chans, width)
        ends = trunk._level_ends
        self.stage1 = nn.Sequential(*trunk.features[: ends[4] + 1])  # to the last 3x3x512 layer (stride 16)
        self.stage2 = nn.Sequential(*trunk.features[ends[4] + 1:])  # pool, then the 1024-channel layers (stride 32)
        c512, c1024 = trunk.feature_info[4]["num_chs"], trunk.num_features
        d = max(1, round(1024 * width))
        if reorg not in ("space_to_depth", "darknet"):
            raise ConfigError(f"reorg must be 'space_to_depth' or 'darknet', got '{reorg}'")
        self.reorg = space_to_depth if reorg == "space_to_depth" else darknet_reorg
        self.reduce = conv_bn(c512, passthrough_channels, 1) if passthrough_channels else nn.Identity()
        fine = 4 * (passthrough_channels or c512)
        # join before the second-to-last conv layer (the third added 3x3 conv), then the 1x1 output conv
        self.head1 = nn.Sequential(conv_bn(c1024, d, 3), conv_bn(d, d, 3))
        self.head2 = conv_bn(d + fine, d, 3)
        self.anchors_cells = torch.tensor(anchors, dtype=torch.float32)
        self.anchor_grid = image_size // 32  # the priors are in cells of this grid (the built image_size's)
        self.num_classes, self.image_size = num_classes, image_size
        self.out = nn.Conv2d(d, len(anchors) * (5 + num_classes), 1)
        self.multiscale, self.multiscale_every = (tuple(multiscale) if multiscale else None), multiscale_every
        self._batches, self._train_size = 0, image_size
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.mean, self.std = tuple(mean), tuple(std)
        self.loss_weights = loss

    def _size(self) -> int:
        """The input size of this call: ``image_size`` in eval; in training a new draw from ``multiscale`` (torch's
        generator) every ``multiscale_every`` batches."""
        if not self.training or not self.multiscale:
            return self.image_size
        if self._batches % self.multiscale_every == 0:
            self._train_size = self.multiscale[int(torch.randint(len(self.multiscale), ()))]
        self._batches += 1
        return self._train_size

    def head(self, x: Tensor) -> Tensor:
        fine = self.stage1(x)
        y = self.head1(self.stage2(fine))
        y = self.head2(torch.cat([self.reorg(self.reduce(fine)), y], 1))
        return self.out(y).permute(0, 2, 3, 1)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        if isinstance(images, Tensor) and images.dim() == 4 and targets is None:
            return self.head((images - torch.tensor(self.mean).view(1, -1, 1, 1).to(images))
                             / torch.tensor(self.std).view(1, -1, 1, 1).to(images))
        sizes = image_sizes(images)
        if targets is not None:
            check_targets(targets, len(sizes), self.num_classes)
        x, _ = square_batch(images, self._size() if targets is not None else self.image_size, self.mean, self.std)
        out = self.head(x)
        if targets is None:
            return out
        image, boxes, labels = normalized_targets(targets, sizes)
        return region_loss(out, self._anchors(out), image, boxes, labels, **self.loss_weights)

    def _anchors(self, head: Tensor) -> Tensor:
        """The priors in cells of this head's grid: the same fraction of the image at every input size (training
        at a multi-scale size, or detecting after ``image_size`` was changed)."""
        return self.anchors_cells.to(head.device) * head.shape[1] / self.anchor_grid

    def _detections(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Objectness x class probability above ``score_thresh``, NMS per class, in each image's pixels."""
        x, _ = square_batch(images, self.image_size, self.mean, self.std)
        head = self.head(x)
        boxes, obj, probs, _ = decode_region(head, self._anchors(head))
        n = len(x)
        scores = (obj[..., None] * probs).reshape(n, -1, self.num_classes)
        return postprocess(_xyxy(boxes).reshape(n, -1, 4), scores, image_sizes(images), self.score_thresh,
                           self.nms_thresh, self.detections_per_img)


@register_model(paper="yolov2", paper_gflops=5.58, input_size=(3, 224, 224), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                classifier=("fc",), notes="the paper's 5.58 billion operations count a multiply-add as two")
def darknet19(num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> Darknet19:
    """Darknet-19 (Table 6): 19 conv layers, 5 max pools, BN and leaky ReLU, global average pooling."""
    return Darknet19(num_classes, in_chans, **kwargs)


@register_model(paper="yolov2", task="detection", input_size=(3, 416, 416), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                num_classes=20, notes="passthrough joined before the second-to-last conv as the paper says; "
                "passthrough_channels=64, reorg='darknet' builds the released cfg's layout (lightnet's YoloV2)")
def yolov2(num_classes: int = 20, **kwargs: Any) -> YOLOv2:
    """YOLOv2 at 416 px: 13 x 13 x 5 x (5 + C) outputs with VOC's five k-means priors; multi-scale training 320-608."""
    return YOLOv2(num_classes, **kwargs)


@register_converter("yolov2", "lightnet")
def _from_lightnet(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """``lightnet``'s ``Darknet19`` and ``YoloV2``: the trunk's ``N_convbatch.layers.{0,1}`` in order onto our conv-BN
    layers; Darknet19's classifier conv ``head.0``; YoloV2's ``neck.0`` (the two added 3x3 convs), ``neck.1.0`` (the
    1x1 passthrough reduction), ``head.0`` (the conv after the join) and ``head.1`` (the output conv)."""
    trunk = re.compile(r"backbone\.(?:module\.)?(\d+)_convbatch\.layers\.([01])\.(\w+)$")
    indices = sorted({int(m.group(1)) for k in state_dict if (m := trunk.match(k))})
    if isinstance(model, YOLOv2):
        ours = [f"stage1.{i}" for i, m in enumerate(model.stage1) if isinstance(m, nn.Sequential)]
        ours += [f"stage2.{i}" for i, m in enumerate(model.stage2) if isinstance(m, nn.Sequential)]
        fixed = {"neck.0.0.layers": "head1.0", "neck.0.1.layers": "head1.1", "neck.1.0.layers": "reduce",
                 "head.0.layers": "head2", "head.1": "out"}
    else:
        ours = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.Sequential)]
        fixed = {"head.0": "fc"}
    if len(indices) != len(ours):
        raise WeightsError(f"lightnet weights hold {len(indices)} trunk conv layers, this model {len(ours)}")
    names = dict(zip(indices, ours))
    out = {}
    for key, value in state_dict.items():
        if key.endswith("_LN_MODEL_VERSION"):
            continue
        m = trunk.match(key)
        if m:
            out[f"{names[int(m.group(1))]}.{m.group(2)}.{m.group(3)}"] = value
            continue
        src = next((p for p in fixed if key.startswith(p + ".")), None)
        if src is not None:
            out[fixed[src] + key[len(src):]] = value
            continue
        raise WeightsError(f"unexpected tensor '{key}' in lightnet weights")
    return out
