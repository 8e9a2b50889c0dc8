"""You Only Look Once: Unified, Real-Time Object Detection (Redmon et al., 2015, arXiv:1506.02640).

The paper casts detection as one regression problem (Sec. 2): the image is divided into an S x S grid; each cell
predicts B boxes (x, y relative to the cell, w, h relative to the image, and a confidence Pr(Object) x IoU) and one
set of C conditional class probabilities, all in one S x S x (5B + C) tensor from one network pass. At test time
the class-specific confidence of a box is Pr(Class_i | Object) x confidence (eq. 2), followed by non-maximum
suppression (Sec. 2.4).

* ``YOLOv1``: a conv trunk then two fully connected layers (Sec. 2.1, Fig. 3); the second outputs the S x S x
  (5B + C) tensor, which ``forward`` returns (per cell: B x [x, y, sqrt(w), sqrt(h), confidence], then the C class
  probabilities). Leaky ReLU (0.1) everywhere but the last layer, dropout 0.5 after the first FC (Sec. 2.2).
* ``yolo_loss``: the sum-squared error of eq. 3, term by term (``loss_xy``, ``loss_wh``, ``loss_obj``,
  ``loss_noobj``, ``loss_class``), lambda_coord = 5, lambda_noobj = 0.5, square roots of w and h, the predictor
  "responsible" for an object the one of its cell whose current box has the highest IoU with it; the confidence
  target is that IoU. Summed over the grid, averaged over the images of the batch.
* Registered: ``yolov1`` (24 conv layers, Fig. 3, 448 px, S = 7, B = 2, C = 20: 7 x 7 x 30) and ``fast_yolov1``
  (Fast YOLO: 9 conv layers with fewer filters, Sec. 2; the filter counts and its 256-d linear bottleneck before the
  4096-d FC are those of Darknet's 2015 ``yolo-tiny.cfg``, which the paper does not list).

Labels index the C classes directly: with data whose ``num_classes`` counts a background at 0 (the built-in
scenes, COCO json), class 0 simply never occurs. In training, ``model(images, targets)`` returns the five loss
terms; ``detect(images)`` returns torchvision-style detection dicts in each image's pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import register_model
from ._parts.detector import Detector
from ._parts.grid import check_targets, image_sizes, normalized_targets, postprocess, square_batch

__all__ = ["YOLOv1", "decode", "yolo_loss"]

Layer = tuple[int, int] | tuple[int, int, int] | str  # (channels, kernel[, stride]) or "M" (2x2 max pool)

# Fig. 3: 24 convolutional layers (1x1 reductions followed by 3x3 convs), 4 max pools and a stride-2 conv: 448 -> 7.
YOLO_LAYERS: list[Layer] = [
    (64, 7, 2), "M", (192, 3), "M",
    (128, 1), (256, 3), (256, 1), (512, 3), "M",
    *[(256, 1), (512, 3)] * 4, (512, 1), (1024, 3), "M",
    *[(512, 1), (1024, 3)] * 2, (1024, 3), (1024, 3, 2),
    (1024, 3), (1024, 3),
]
# Fast YOLO: 9 convolutional layers, six 2x2 max pools: 448 -> 7.
FAST_YOLO_LAYERS: list[Layer] = [
    (16, 3), "M", (32, 3), "M", (64, 3), "M", (128, 3), "M", (256, 3), "M", (512, 3), "M",
    (1024, 3), (1024, 3), (1024, 3),
]


def _trunk(layers: Sequence[Layer], in_chans: int, width: float) -> tuple[nn.Sequential, int, int]:
    mods: list[nn.Module] = []
    chs, stride = in_chans, 1
    for item in layers:
        if item == "M":
            mods.append(nn.MaxPool2d(2, 2))
            stride *= 2
            continue
        out, k, *s = item
        out = max(1, round(out * width))
        mods += [nn.Conv2d(chs, out, k, s[0] if s else 1, k // 2), nn.LeakyReLU(0.1, inplace=True)]
        chs, stride = out, stride * (s[0] if s else 1)
    return nn.Sequential(*mods), chs, stride


def cell_boxes(head: Tensor, boxes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Split the head tensor (N, S, S, 5B + C): box parameters (N, S, S, B, 4) as predicted (x, y, sqrt w,
    sqrt h), confidences (N, S, S, B) and class probabilities (N, S, S, C)."""
    n, s1, s2, _ = head.shape
    per_box = head[..., : 5 * boxes].reshape(n, s1, s2, boxes, 5)
    return per_box[..., :4], per_box[..., 4], head[..., 5 * boxes:]


def to_xyxy(params: Tensor, rows: Tensor, cols: Tensor, grid: int) -> Tensor:
    """(x, y, sqrt w, sqrt h) of boxes in the cells (rows, cols; broadcasting with ``params[..., 0]``) -> XYXY in
    [0, 1] of the image."""
    cx = (cols + params[..., 0]) / grid
    cy = (rows + params[..., 1]) / grid
    w, h = params[..., 2] ** 2, params[..., 3] ** 2
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def elementwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes a[..., i] and b[..., i] (XYXY), broadcasting."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp_min(1e-12)


def decode(head: Tensor, boxes: int) -> tuple[Tensor, Tensor]:
    """Every predicted box of a batch as XYXY in [0, 1] (N, S*S*B, 4) with its class-specific confidences
    Pr(Class_i | Object) x confidence (eq. 2), (N, S*S*B, C)."""
    n, s, _, _ = head.shape
    params, conf, probs = cell_boxes(head, boxes)
    grid = torch.arange(s, device=head.device, dtype=head.dtype)
    xyxy = to_xyxy(params, grid.view(1, s, 1, 1).expand(n, s, s, 1), grid.view(1, 1, s, 1).expand(n, s, s, 1), s)
    scores = conf[..., None] * probs[:, :, :, None, :]
    return xyxy.reshape(n, -1, 4), scores.reshape(n, s * s * boxes, -1)


def yolo_loss(head: Tensor, image: Tensor, gt_boxes: Tensor, labels: Tensor, boxes: int,
              lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> dict[str, Tensor]:
    """Eq. 3 of the paper on a batch: ``head`` (N, S, S, 5B + C); the objects of all images at once, ``image`` (M,)
    their image index, ``gt_boxes`` (M, 4) XYXY in [0, 1], ``labels`` (M,) class indices.

    An object belongs to the cell that contains its centre; when several centres fall into one cell the cell keeps
    the last listed (one set of class probabilities per cell, Sec. 2). Of that cell's B predictors the one whose
    predicted box has the highest IoU with the object is responsible (1^obj_ij); every other predictor of every
    cell counts as 1^noobj_ij. Terms (each summed, then divided by N):

    * ``loss_xy`` = lambda_coord sum 1^obj_ij [(x_i - x^_i)^2 + (y_i - y^_i)^2], x, y the centre's offset in its cell;
    * ``loss_wh`` = lambda_coord sum 1^obj_ij [(sqrt w_i - sqrt w^_i)^2 + (sqrt h_i - sqrt h^_i)^2];
    * ``loss_obj`` = sum 1^obj_ij (C_i - C^_i)^2 with the target C_i = IoU(predicted box, truth), held constant;
    * ``loss_noobj`` = lambda_noobj sum 1^noobj_ij (C_i - C^_i)^2 with C_i = 0;
    * ``loss_class`` = sum_i 1^obj_i sum_c (p_i(c) - p^_i(c))^2, p the one-hot class of the cell's object.
    """
    n, s, _, depth = head.shape
    c = depth - 5 * boxes
    params, conf, probs = cell_boxes(head, boxes)
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    col = (centre[:, 0] * s).floor().clamp(0, s - 1).long()
    row = (centre[:, 1] * s).floor().clamp(0, s - 1).long()
    cell = (image * s + row) * s + col
    owner = torch.full((n * s * s,), -1, dtype=torch.long, device=head.device)
    owner = owner.scatter_reduce(0, cell, torch.arange(len(cell), device=head.device), "amax")
    keep = owner[cell] == torch.arange(len(cell), device=head.device)  # one object per cell: the last listed
    image, row, col, cell, gt, labels, centre = (t[keep] for t in (image, row, col, cell, gt_boxes, labels, centre))

    p = params[image, row, col]  # (K, B, 4) the predictors of each object's cell
    pred_xyxy = to_xyxy(p, row.to(p.dtype)[:, None], col.to(p.dtype)[:, None], s)
    iou = elementwise_iou(pred_xyxy, gt[:, None, :]).detach()  # (K, B)
    best = iou.argmax(1)  # the responsible predictor
    k = torch.arange(len(best), device=head.device)
    resp = p[k, best]  # (K, 4)
    tx, ty = centre[:, 0] * s - col, centre[:, 1] * s - row
    wh = (gt[:, 2:] - gt[:, :2]).clamp(min=0)
    responsible = torch.zeros_like(conf, dtype=torch.bool)
    responsible[image, row, col, best] = True

    loss_xy = ((resp[:, 0] - tx) ** 2 + (resp[:, 1] - ty) ** 2).sum()
    loss_wh = ((resp[:, 2] - wh[:, 0].sqrt()) ** 2 + (resp[:, 3] - wh[:, 1].sqrt()) ** 2).sum()
    loss_obj = ((conf[image, row, col, best] - iou[k, best]) ** 2).sum()
    loss_noobj = (conf[~responsible] ** 2).sum()
    onehot = torch.nn.functional.one_hot(labels, c).to(probs.dtype)
    loss_class = ((probs[image, row, col] - onehot) ** 2).sum()
    return {"loss_xy": lambda_coord * loss_xy / n, "loss_wh": lambda_coord * loss_wh / n, "loss_obj": loss_obj / n,
            "loss_noobj": lambda_noobj * loss_noobj / n, "loss_class": loss_class / n}


class YOLOv1(Detector, nn.Module):
    """A conv trunk, FC (``hidden``) then FC to S x S x (5B + C).

    ``model(x)`` with ``x`` an (N, 3, image_size, image_size) batch (or a list of images of any sizes, resized) gives
    the head tensor (N, S, S, 5B + C); ``model(images, targets)`` gives eq. 3's five terms (targets' boxes XYXY in
    each image's pixels); ``detect(images)`` gives detection dicts. ``width`` scales every conv for miniatures;
    ``image_size`` need not be 448: the FCs read whatever map the trunk gives and still output the S x S grid.
    """

    def __init__(self, layers: Sequence[Layer] = YOLO_LAYERS, num_classes: int = 20, *, grid: int = 7, boxes: int = 2,
                 image_size: int = 448, in_chans: int = 3, hidden: Sequence[tuple[int, bool]] = ((4096, True),),
                 width: float = 1.0, drop_rate: float = 0.5, lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                 score_thresh: float = 0.01, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        super().__init__()
        if num_classes < 1 or grid < 1 or boxes < 1:
            raise ConfigError(f"num_classes, grid and boxes must be >= 1, got {num_classes}, {grid}, {boxes}")
        self.features, chs, stride = _trunk(layers, in_chans, width)
        if image_size % stride:
            raise ConfigError(f"image_size must be a multiple of the trunk's stride {stride}, got {image_size}")
        self.num_classes, self.grid, self.boxes, self.image_size = num_classes, grid, boxes, image_size
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.mean, self.std = tuple(mean), tuple(std)
        mods: list[nn.Module] = [nn.Flatten()]
        dim = chs * (image_size // stride) ** 2
        for out, leaky in hidden:  # (features, activation?); Fast YOLO has a linear 256-d layer before the 4096-d one
            mods.append(nn.Linear(dim, out))
            if leaky:
                mods += [nn.LeakyReLU(0.1, inplace=True), nn.Dropout(drop_rate)]
            dim = out
        mods.append(nn.Linear(dim, grid * grid * (5 * boxes + num_classes)))
        self.head = nn.Sequential(*mods)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        x, sizes = square_batch(images, self.image_size, self.mean, self.std)
        out = self.head(self.features(x)).view(len(x), self.grid, self.grid, 5 * self.boxes + self.num_classes)
        if targets is None:
            return out
        check_targets(targets, len(x), self.num_classes)
        image, boxes, labels = normalized_targets(targets, sizes)
        return yolo_loss(out, image, boxes, labels, self.boxes, self.lambda_coord, self.lambda_noobj)

    def _detections(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Class-specific confidences (eq. 2) above ``score_thresh``, NMS per class at ``nms_thresh``, the best
        ``detections_per_img``; boxes XYXY in the image's pixels."""
        boxes, scores = decode(self(images), self.boxes)
        return postprocess(boxes, scores, image_sizes(images), self.score_thresh, self.nms_thresh,
                           self.detections_per_img)


_META = dict(paper="yolo", task="detection", input_size=(3, 448, 448), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
             num_classes=20)


@register_model(**_META, notes="the paper's Fig. 3 network (fully connected head, no batch norm); VOC: 7x7x30")
def yolov1(num_classes: int = 20, **kwargs: Any) -> YOLOv1:
    """YOLO: 24 conv layers, FC 4096, FC to 7 x 7 x (2 x 5 + C) for 448 px images."""
    return YOLOv1(YOLO_LAYERS, num_classes, **kwargs)


@register_model(**_META, notes="filter counts from Darknet's yolo-tiny.cfg (2015); the paper gives only '9 layers'")
def fast_yolov1(num_classes: int = 20, **kwargs: Any) -> YOLOv1:
    """Fast YOLO: 9 conv layers (16 to 1024 filters), a linear 256-d FC, FC 4096, FC to 7 x 7 x (2 x 5 + C)."""
    return YOLOv1(FAST_YOLO_LAYERS, num_classes, **{"hidden": ((256, False), (4096, True)), **kwargs})
