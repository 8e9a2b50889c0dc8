"""SSD: Single Shot MultiBox Detector (Liu et al., 2015, arXiv:1512.02325).

SSD predicts, in one pass, class scores and box offsets for a fixed set of **default boxes** tiled over several
feature maps of decreasing resolution (Sec. 2.1, Fig. 2): small 3x3 conv predictors on each map, so that
high-resolution maps handle small objects and coarse maps large ones. What this file implements:

* ``default_boxes``: Sec. 2.2's default boxes; the box of scale s_k and aspect ratio a_r has width s_k sqrt(a_r)
  and height s_k / sqrt(a_r), plus an extra square box of scale s'_k = sqrt(s_k s_{k+1}); centres ((i + 0.5) /
  |f_k|, (j + 0.5) / |f_k|) (with ``steps``: the released models' stride-based centres). ``paper_scales`` is eq. 4,
  s_k = s_min + (s_max - s_min)(k - 1)/(m - 1) with s_min = 0.2, s_max = 0.9.
* matching (Sec. 2.2): each ground-truth box to the default box of best Jaccard overlap, then every default box
  to any ground truth with overlap > 0.5;
* the multibox loss (eq. 1-3): softmax confidence loss plus smooth-L1 localisation loss of the offsets
  (x, y, w, h scaled by the variances 0.1, 0.2), divided by the number of matched boxes N, with **hard negative
  mining**: the negatives of highest confidence loss, at most 3 per positive;
* inference: per class the top 400 scores above 0.01, NMS at 0.45, 200 detections (Sec. 3, torchvision's
  defaults).

Registered, with torchvision's names, layouts and conventions (``model(images)`` -> detection dicts in eval,
``model(images, targets)`` -> ``{"bbox_regression", "classification"}`` in training, ``num_classes`` counting the
background): ``ssd300_vgg16`` (VGG-16 with conv4_3 L2-normalised and a learned scale of 20, atrous fc6/fc7, extra
layers conv8_2-conv11_2: 8,732 default boxes), ``ssdlite320_mobilenet_v3_large`` (MobileNetV2's SSDLite head of
depthwise-separable predictors on MobileNetV3-Large, its reduced tail when no backbone weights are given) and the
paper's ``ssd512_vgg16`` (an extra conv12_2 layer: 24,564 default boxes, the released SSD512 layout).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, box_iou

from ...errors import ConfigError
from ...registry import create_model, register_model
from ...weights import register_converter
from ._coco import COCO_CATEGORIES
from ._parts.backbone import trainable_layers
from ._parts.box_coder import BoxCoder
from ._parts.detector import Detector
from ._parts.grid import check_targets, image_sizes, nms_per_image, square_batch
from ._parts.sampler import match_boxes, pad_boxes
from ._parts.transform import as_xyxy

__all__ = ["SSD", "default_boxes", "multibox_loss", "paper_scales"]


def paper_scales(m: int, s_min: float = 0.2, s_max: float = 0.9) -> list[float]:
    """Eq. 4: the scales s_1..s_m of m feature maps, evenly spaced from ``s_min`` to ``s_max``, and s_{m+1} = 1
    (for the last map's extra box s'_m = sqrt(s_m))."""
    if m < 2:
        raise ConfigError(f"eq. 4 needs at least 2 feature maps, got {m}")
    return [s_min + (s_max - s_min) * k / (m - 1) for k in range(m)] + [1.0]


def default_boxes(grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int], scales: Sequence[float],
                  aspect_ratios: Sequence[Sequence[float]], steps: Sequence[float] | None = None,
                  clip: bool = True) -> Tensor:
    """Default boxes of every map, XYXY in the pixels of an ``image_size`` (h, w) input, ordered map by map, then
    position by position (row-major), then box: [s_k, s'_k, then (w, h) and (h, w) per ratio a_r >= 2].

    Centres are ((j + 0.5) / |f_k|, (i + 0.5) / |f_k|) in [0, 1] of the image, with |f_k| the map's size, or
    image / step with ``steps`` (the released models). ``clip`` keeps widths and heights within [0, 1]."""
    h, w = image_size
    out = []
    for k, (fh, fw) in enumerate(grid_sizes):
        s, s_next = scales[k], scales[k + 1]
        wh = [(s, s), (math.sqrt(s * s_next),) * 2]
        for ar in aspect_ratios[k]:
            r = math.sqrt(ar)
            wh += [(s * r, s / r), (s / r, s * r)]
        wh_t = torch.tensor(wh, dtype=torch.float32)
        if clip:
            wh_t = wh_t.clamp(0, 1)
        nx, ny = (w / steps[k], h / steps[k]) if steps is not None else (fw, fh)
        cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) / ny, (torch.arange(fw) + 0.5) / nx, indexing="ij")
        centres = torch.stack((cx.reshape(-1), cy.reshape(-1)), -1)[:, None, :].expand(-1, len(wh), 2)
        sizes = wh_t[None].expand(fh * fw, -1, 2)
        scale = torch.tensor([w, h], dtype=torch.float32)
        out.append(torch.cat(((centres - sizes / 2) * scale, (centres + sizes / 2) * scale), -1).reshape(-1, 4))
    return torch.cat(out)


def match_default_boxes(gt: Tensor, gt_valid: Tensor, anchors: Tensor, iou_thresh: float = 0.5) -> Tensor:
    """Per image and default box, the index of its ground-truth box or ``BELOW_LOW`` (-1): overlap >= ``iou_thresh``
    with its best ground truth, or being the best default box of some ground truth (the later listed wins)."""
    b, g = gt_valid.shape
    matches, _ = match_boxes(gt, gt_valid, anchors[None].expand(b, -1, 4), iou_thresh, iou_thresh)
    best_box = torch.vmap(box_iou)(gt, anchors[None].expand(b, -1, 4)).argmax(2)  # (B, G): each ground truth's best
    gt_index = torch.arange(g, device=gt.device)[None].expand(b, g).masked_fill(~gt_valid, -1)
    forced = torch.full_like(matches, -1).scatter_reduce(1, best_box, gt_index, "amax")
    return torch.where(forced >= 0, forced, matches)


def multibox_loss(cls_logits: Tensor, bbox_regression: Tensor, anchors: Tensor, gt: Tensor, gt_labels: Tensor,
                  matches: Tensor, box_coder: BoxCoder, neg_pos_ratio: float = 3.0) -> dict[str, Tensor]:
    """Eq. 1 on a batch: ``cls_logits`` (B, A, C), ``bbox_regression`` (B, A, 4), ``anchors`` (A, 4), padded ground
    truth ``gt`` (B, G, 4) / ``gt_labels`` (B, G), ``matches`` (B, A) as from ``match_default_boxes``.

    L_loc: smooth L1 (beta 1) of the offsets of matched boxes, summed; L_conf: cross-entropy of the matched boxes
    plus that of each image's ``neg_pos_ratio`` x (its positives) unmatched boxes of highest loss (hard negative
    mining, Sec. 2.2); both divided by N, the number of matched boxes in the batch (at least 1)."""
    fg = matches >= 0
    index = matches.clamp(min=0)
    matched_gt = torch.gather(gt, 1, index[..., None].expand(-1, -1, 4))
    labels = torch.where(fg, torch.gather(gt_labels, 1, index), torch.zeros_like(index))
    target = box_coder.encode(matched_gt[fg], anchors[None].expand_as(matched_gt)[fg])
    loc = F.smooth_l1_loss(bbox_regression[fg], target, reduction="sum")
    conf = F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    num_neg = neg_pos_ratio * fg.sum(1, keepdim=True)
    neg_loss = conf.masked_fill(fg, -float("inf"))
    rank = neg_loss.sort(1, descending=True).indices.sort(1).indices  # each box's rank by negative loss
    hard_neg = rank < num_neg
    n = max(1, int(fg.sum()))
    return {"bbox_regression": loc / n, "classification": (conf[fg].sum() + conf[hard_neg].sum()) / n}


class SSD(Detector, nn.Module):
    """A backbone giving an ordered dict of maps, one classification and one box conv predictor per map, default
    boxes, the multibox loss and NMS. ``size`` is the square input every image is resized to (aspect not kept).

    Options (torchvision's names and defaults): ``score_thresh`` 0.01, ``nms_thresh`` 0.45, ``detections_per_img``
    200, ``iou_thresh`` 0.5, ``topk_candidates`` 400 per class before NMS, ``positive_fraction`` 0.25 (3 negatives
    per positive)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int, size: int, aspect_ratios: Sequence[Sequence[int]],
                 scales: Sequence[float], steps: Sequence[float] | None = None, *, image_mean: Sequence[float],
                 image_std: Sequence[float], score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 200, iou_thresh: float = 0.5, topk_candidates: int = 400,
                 positive_fraction: float = 0.25) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
        if len(scales) != len(aspect_ratios) + 1:
            raise ConfigError(f"{len(aspect_ratios)} feature maps need {len(aspect_ratios) + 1} scales, got {len(scales)}")
        self.backbone, self.head = backbone, head
        self.num_classes, self.size = num_classes, size
        self.aspect_ratios = [list(r) for r in aspect_ratios]
        self.scales, self.steps = list(scales), list(steps) if steps is not None else None
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))  # the variances 0.1, 0.1, 0.2, 0.2
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.iou_thresh, self.topk_candidates = iou_thresh, topk_candidates
        self.neg_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def num_anchors_per_location(self) -> list[int]:
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    def anchors(self, features: Sequence[Tensor]) -> Tensor:
        grids = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        return default_boxes(grids, (self.size, self.size), self.scales, self.aspect_ratios, self.steps).to(features[0].device)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        sizes = image_sizes(images)
        if self.training:
            check_targets(targets, len(sizes), self.num_classes, first=1)
        x, _ = square_batch(images, self.size, self.image_mean, self.image_std)
        features = list(self.backbone(x).values())
        cls_logits, bbox_regression = self.head(features)
        anchors = self.anchors(features)
        if self.training:
            scale = torch.tensor([[self.size / w, self.size / h] * 2 for h, w in sizes], device=x.device)
            gt, valid = pad_boxes([as_xyxy(t["boxes"]).float() * s for t, s in zip(targets, scale)])
            gt_labels = torch.nn.utils.rnn.pad_sequence(
                [torch.as_tensor(t["labels"], device=x.device).long() for t in targets], batch_first=True)
            if gt_labels.shape[1] < gt.shape[1]:
                gt_labels = F.pad(gt_labels, (0, gt.shape[1] - gt_labels.shape[1]))
            matches = match_default_boxes(gt, valid, anchors, self.iou_thresh)
            return multibox_loss(cls_logits, bbox_regression, anchors, gt, gt_labels, matches, self.box_coder,
                                 self.neg_pos_ratio)
        return self.postprocess(cls_logits, bbox_regression, anchors, sizes)

    def postprocess(self, cls_logits: Tensor, bbox_regression: Tensor, anchors: Tensor,
                    sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Per image and class (background excluded) the ``topk_candidates`` best softmax scores above
        ``score_thresh``, boxes decoded and clipped to the input, NMS per class, ``detections_per_img`` kept;
        boxes returned in each original image's pixels."""
        n, a, c = cls_logits.shape
        scores = F.softmax(cls_logits, -1)[..., 1:].transpose(1, 2)  # (N, C - 1, A)
        boxes = self.box_coder.decode(bbox_regression, anchors[None]).clamp(0, self.size)
        top, idx = scores.topk(min(self.topk_candidates, a), dim=2)
        image, label, j = (top > self.score_thresh).nonzero(as_tuple=True)
        anchor = idx[image, label, j]
        ratio = torch.tensor([[w / self.size, h / self.size] * 2 for h, w in sizes], device=boxes.device)
        cand = boxes[image, anchor] * ratio[image]
        return nms_per_image(image, cand, top[image, label, j], label + 1, n, c, self.nms_thresh, self.detections_per_img)

    def _detections(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        return self(images)  # eval mode: boxes XYXY in each image's pixels


class SSDHead(nn.Module):
    """One classification and one box predictor per map, outputs flattened to (N, sum H W A, C) and (N, ..., 4) in
    the order of the default boxes. ``block(in_chs, out_chs)`` builds a predictor (SSD: a 3x3 conv)."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, block=None) -> None:
        super().__init__()
        block = block or (lambda i, o: nn.Conv2d(i, o, 3, padding=1))
        self.num_classes = num_classes
        self.cls_logits = nn.ModuleList(block(c, num_classes * a) for c, a in zip(in_channels, num_anchors))
        self.bbox_reg = nn.ModuleList(block(c, 4 * a) for c, a in zip(in_channels, num_anchors))

    @staticmethod
    def _flatten(x: Tensor, k: int) -> Tensor:
        n, _, h, w = x.shape
        return x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        cls = torch.cat([self._flatten(m(f), self.num_classes) for m, f in zip(self.cls_logits, features)], 1)
        box = torch.cat([self._flatten(m(f), 4) for m, f in zip(self.bbox_reg, features)], 1)
        return cls, box


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _normal(module: nn.Module, std: float = 0.03) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class VGGSSDFeatures(nn.Module):
    """VGG-16 for SSD (Sec. 3, "base network"): conv1_1-conv4_3 with pool3 in ceil mode (38 x 38 at 300 px),
    conv4_3 L2-normalised per position and rescaled by a learned per-channel scale initialised to 20 (ParseNet);
    pool5 becomes 3x3 stride 1, fc6 a 3x3 conv dilated by 6 and fc7 a 1x1 conv (both 1024); then the extra layers,
    each a 1x1 reduction and a 3x3 (SSD512's last: 4x4) conv. ``extra`` lists (reduce, out, kernel, stride,
    padding)."""

    def __init__(self, vgg: nn.Module, extra: Sequence[tuple[int, int, int, int, int]]) -> None:
        super().__init__()
        features = vgg.features
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        features[pools[2]].ceil_mode = True
        self.scale_weight = nn.Parameter(torch.full((512,), 20.0))
        self.features = nn.Sequential(*features[: pools[3]])  # up to conv4_3's ReLU
        fc = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                           nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True))
        _xavier(fc)
        blocks = [nn.Sequential(*features[pools[3]: pools[4]], fc)]  # pool4 ... conv5_3, fc6, fc7
        chs = 1024
        for reduce, out, k, s, p in extra:
            blocks.append(nn.Sequential(nn.Conv2d(chs, reduce, 1), nn.ReLU(inplace=True), nn.Conv2d(reduce, out, k, s, p),
                                        nn.ReLU(inplace=True)))
            chs = out
        self.extra = nn.ModuleList(blocks)
        _xavier(self.extra[1:])
        self.out_channels = [512, 1024] + [e[1] for e in extra]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.features(x)
        out = {"0": self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)}
        for i, block in enumerate(self.extra, start=1):
            x = block(x)
            out[str(i)] = x
        return out


class MobileNetSSDLiteFeatures(nn.Module):
    """MobileNetV3 for SSDLite (MobileNetV3 Sec. 6.3): the first map is the expansion layer of the C4 block (the
    last strided one, stride 16), the second the network's last 1x1 conv (stride 32); four extra blocks (1x1 to
    half the width, 3x3 depthwise stride 2, 1x1) halve the resolution down to 1 x 1."""

    def __init__(self, model: nn.Module, extra: Sequence[int], norm: Any) -> None:
        super().__init__()
        model.prune_for_features(len(model.feature_info) - 1)
        self.model = model
        blocks = [b for stage in model.blocks for b in stage]
        strided = [i for i, b in enumerate(blocks) if getattr(getattr(b, "conv_dw", None), "stride", (1,))[0] > 1]
        self._c4 = strided[-1]
        c4 = blocks[self._c4]
        chs = [c4.conv_pw.out_channels, [m for m in blocks[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels]
        mods = []
        for out in extra:
            mid = out // 2
            mods.append(nn.Sequential(
                Conv2dNormActivation(chs[-1], mid, 1, norm_layer=norm, activation_layer=nn.ReLU6),
                Conv2dNormActivation(mid, mid, 3, 2, groups=mid, norm_layer=norm, activation_layer=nn.ReLU6),
                Conv2dNormActivation(mid, out, 1, norm_layer=norm, activation_layer=nn.ReLU6)))
            chs.append(out)
        self.extra = nn.ModuleList(mods)
        _normal(self.extra)
        self.out_channels = chs

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        m = self.model
        x = m.act1(m.bn1(m.conv_stem(x)))
        out = {}
        for i, block in enumerate(b for stage in m.blocks for b in stage):
            if i == self._c4:  # tap after the expansion layer, then finish the block (no residual: it is strided)
                y = block.act1(block.bn1(block.conv_pw(x)))
                out["0"] = y
                y = block.se(block.act2(block.bn2(block.conv_dw(y))))
                x = block.act3(block.bn3(block.conv_pwl(y)))
            else:
                x = block(x)
        out["1"] = x
        for i, e in enumerate(self.extra, start=2):
            x = e(x)
            out[str(i)] = x
        return out


def _lite_predictor(norm: Any):
    def block(i: int, o: int) -> nn.Module:  # MobileNetV2 Sec. 6.2: 3x3 depthwise + BN + ReLU6, then 1x1 conv
        return nn.Sequential(Conv2dNormActivation(i, i, 3, groups=i, norm_layer=norm, activation_layer=nn.ReLU6),
                             nn.Conv2d(i, o, 1))
    return block


# ------------------------------------------------------------------------------------------- converters
@register_converter("ssd", "torchvision")
def _from_torchvision(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """torchvision's SSD keys -> ours: the head's ``classification_head/regression_head.module_list`` ->
    ``cls_logits``/``bbox_reg``; SSDLite's two backbone pieces (``features.0`` up to the C4 expansion layer,
    ``features.1`` from its depthwise conv on) -> positions of MobileNetV3's ``features``, then the MobileNetV3 key
    map of our classification model. VGG's keys are the same on both sides."""
    from ...weights import _CONVERTERS

    out: dict[str, Tensor] = {}
    feats: dict[str, Tensor] = {}
    lite = isinstance(model.backbone, MobileNetSSDLiteFeatures)
    c4 = None
    if lite:
        # torchvision's MobileNetV3 features: 0 is the stem, 1.. the blocks (the last conv is a block too)
        c4 = model.backbone._c4 + 1
    for key, value in state_dict.items():
        key = key.replace("head.classification_head.module_list.", "head.cls_logits.")
        key = key.replace("head.regression_head.module_list.", "head.bbox_reg.")
        if lite and key.startswith("backbone.features."):
            part, pos, rest = key[len("backbone.features."):].split(".", 2)
            pos = int(pos)
            if part == "0":
                feats[f"features.{pos}.{rest}" if pos < c4 else f"features.{c4}.block.0.{rest}"] = value
            elif pos == 0:
                feats[f"features.{c4}.block.{rest}"] = value  # a slice of the block keeps its positions
            else:
                feats[f"features.{c4 + pos}.{rest}"] = value
        else:
            out[key] = value
    if feats:
        inner = model.backbone.model
        convert = _CONVERTERS[("mobilenetv3", "torchvision")]
        out.update({f"backbone.model.{k}": v for k, v in convert(feats, inner).items()})
    return out


# ---------------------------------------------------------------------------------------------- builders
_TV = "https://download.pytorch.org/models/"
_COCO = dict(paper="ssd", task="detection", categories=COCO_CATEGORIES, num_classes=91,
             classifier=("head.cls_logits",))
# the released SSD300 COCO config (Caffe: min ratio 15, max 90, conv4_3 at 0.07), as torchvision builds it
SSD300_SCALES = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
SSD512_SCALES = [0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06]  # the released SSD512 COCO config (min 10, max 90)


def _scales(scales: str | Sequence[float], released: Sequence[float], m: int) -> list[float]:
    if isinstance(scales, str):
        if scales == "paper":
            return paper_scales(m)
        if scales == "released":
            return list(released)
        raise ConfigError(f"scales must be 'released', 'paper' or a list of {m + 1} numbers, got '{scales}'")
    return list(scales)


def _vgg_ssd(num_classes: int, pretrained_backbone: Any, trainable_backbone_layers: int | None, pretrained: bool,
             size: int, extra: Sequence[tuple[int, int, int, int, int]], aspect_ratios: Sequence[Sequence[int]],
             scales: Sequence[float], steps: Sequence[float], kwargs: dict[str, Any]) -> SSD:
    vgg = create_model("vgg16", pretrained=pretrained_backbone or None)
    n_train = trainable_layers(pretrained or bool(pretrained_backbone), trainable_backbone_layers, 5, default=4)
    pools = [0] + [i for i, m in enumerate(vgg.features) if isinstance(m, nn.MaxPool2d)][:-1]
    for layer in list(vgg.features)[: len(vgg.features) if n_train == 0 else pools[5 - n_train]]:
        layer.requires_grad_(False)
    backbone = VGGSSDFeatures(vgg, extra)
    head = SSDHead(backbone.out_channels, [2 + 2 * len(r) for r in aspect_ratios], num_classes)
    _xavier(head)
    defaults = dict(image_mean=(0.48235, 0.45882, 0.40784), image_std=(1.0 / 255.0,) * 3)  # Caffe VGG: 0-255 pixels
    return SSD(backbone, head, num_classes, size, aspect_ratios, scales, steps, **{**defaults, **kwargs})


_VGG_NOTE = ("images are resized to a square without keeping the aspect ratio; pixels are scaled to 0-255 minus "
             "VGG's mean (Caffe's convention), as torchvision does")


@register_model(**_COCO, input_size=(3, 300, 300), reference={"torchvision": "ssd300_vgg16"},
                weights={"torchvision": _TV + "ssd300_vgg16_coco-b556d3b4.pth"}, paper_params_m=None, notes=_VGG_NOTE)
def ssd300_vgg16(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                 trainable_backbone_layers: int | None = None, pretrained: bool = False,
                 scales: str | Sequence[float] = "released", **kwargs: Any) -> SSD:
    """SSD300 (Fig. 2): maps of 38, 19, 10, 5, 3, 1 from conv4_3, fc7, conv8_2-conv11_2 with 4, 6, 6, 6, 4, 4
    default boxes per position: 8,732 in all. ``scales="paper"`` uses eq. 4 (0.2-0.9) instead of the released
    COCO scales."""
    extra = [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    return _vgg_ssd(num_classes, pretrained_backbone, trainable_backbone_layers, pretrained, 300, extra, ratios,
                    _scales(scales, SSD300_SCALES, 6), [8, 16, 32, 64, 100, 300], kwargs)


@register_model(**_COCO, input_size=(3, 512, 512), notes=_VGG_NOTE + "; the released SSD512 layout (conv8_2-conv11_2 "
                "3x3 stride 2, conv12_2 4x4), not torchvision's unregistered 'highres' variant")
def ssd512_vgg16(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                 trainable_backbone_layers: int | None = None, pretrained: bool = False,
                 scales: str | Sequence[float] = "released", **kwargs: Any) -> SSD:
    """SSD512 (Sec. 3.1 footnote): maps of 64, 32, 16, 8, 4, 2, 1 (an extra conv12_2) with 4, 6, 6, 6, 6, 4, 4
    default boxes per position: 24,564 in all."""
    extra = [(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 4, 1, 1)]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
    return _vgg_ssd(num_classes, pretrained_backbone, trainable_backbone_layers, pretrained, 512, extra, ratios,
                    _scales(scales, SSD512_SCALES, 7), [8, 16, 32, 64, 128, 256, 512], kwargs)


def _mobilenetv3_large(reduced_tail: bool, norm: Any, pretrained_backbone: Any) -> nn.Module:
    """MobileNetV3-Large, with MobileNetV3's reduced tail (Table 6: the last stage at half width) when asked."""
    if not reduced_tail:
        return create_model("mobilenetv3_large_100", pretrained=pretrained_backbone or None, norm_layer=norm)
    from ..classification._efficient_blocks import MobileNetBase
    from ..classification.mobilenetv3 import LARGE, _se, _stages

    rows = [*LARGE[:-3], (5, 672, 80, True, "HS", 2), (5, 480, 80, True, "HS", 1), (5, 480, 80, True, "HS", 1)]
    return MobileNetBase(_stages(rows, 480, 16, None, True), stem_chs=16, num_features=640, act_layer="hard_swish",
                         se_layer=_se, head_after_pool=True, norm_layer=norm)


@register_model(**_COCO, input_size=(3, 320, 320), reference={"torchvision": "ssdlite320_mobilenet_v3_large"},
                weights={"torchvision": _TV + "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"},
                notes="without backbone weights (so also for the COCO weights) MobileNetV3's last stage is halved (reduced tail), as torchvision builds it")
def ssdlite320_mobilenet_v3_large(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                                  trainable_backbone_layers: int | None = None, pretrained: bool = False,
                                  **kwargs: Any) -> SSD:
    """SSDLite (MobileNetV2 Sec. 6.2) on MobileNetV3-Large at 320 px: 6 maps (20, 10, 5, 3, 2, 1) with 6 default
    boxes each (ratios 2 and 3), scales by eq. 4 from 0.2 to 0.95; BN eps 1e-3, momentum 0.03; score 0.001, NMS
    0.55, 300 candidates and detections."""
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    # torchvision halves the tail whenever no backbone weights are given, its COCO weights included
    model = _mobilenetv3_large(not pretrained_backbone, norm, pretrained_backbone)
    if not pretrained_backbone:
        _normal(model)
    n_train = trainable_layers(pretrained or bool(pretrained_backbone), trainable_backbone_layers, 6, default=6)
    backbone = MobileNetSSDLiteFeatures(model, [512, 256, 256, 128], norm)
    if n_train < 6:  # stages counted as torchvision does: stem, the 4 strided blocks' stages, the rest
        from ._parts.backbone import stage_boundaries

        blocks = [b for stage in model.blocks for b in stage]
        bounds = stage_boundaries(blocks)
        first = len(blocks) + 1 if n_train == 0 else bounds[len(bounds) - n_train]
        for unit in [nn.ModuleList([model.conv_stem, model.bn1]), *blocks][:first]:
            unit.requires_grad_(False)
    ratios = [[2, 3]] * 6
    head = SSDHead(backbone.out_channels, [6] * 6, num_classes, _lite_predictor(norm))
    _normal(head)
    defaults = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300,
                    image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    return SSD(backbone, head, num_classes, 320, ratios, paper_scales(6, 0.2, 0.95), None, **{**defaults, **kwargs})
