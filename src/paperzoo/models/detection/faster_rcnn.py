"""Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks (Ren et al., 2015,
arXiv:1506.01497).

The paper's contribution is the Region Proposal Network (Sec. 3.1, ``_parts/rpn.py``): a fully convolutional
network over the detector's own feature maps that scores k anchors per position (``_parts/anchors.py``) and
regresses a box from each, so that region proposals come nearly for free instead of from Selective Search.
The proposals feed a Fast R-CNN head on the same features (Sec. 3.2, ``_parts/roi_heads.py``); the two are
trained together, proposals treated as constants (the paper's "approximate joint training", which torchvision and
py-faster-rcnn's end-to-end scripts use; the paper's tables mostly report its 4-step alternating training).

``GeneralizedRCNN`` composes the stages, each injected: ``transform`` (normalise, resize, pad), ``backbone`` (maps,
optionally an FPN), ``rpn`` and ``roi_heads``. ``FasterRCNN`` builds the default RPN and RoI head around a backbone
with torchvision's option names and defaults. Registered variants:

* ``fasterrcnn_resnet50_fpn``, ``fasterrcnn_resnet50_fpn_v2``, ``fasterrcnn_mobilenet_v3_large_fpn``,
  ``fasterrcnn_mobilenet_v3_large_320_fpn``: torchvision's detectors (FPN, RoIAlign), loading their weights.
* ``fasterrcnn_vgg16``: the paper's own setup on VGG-16 (Sec. 3.3, 4.1): conv5_3 features at stride 16, RoI max
  pooling to 7x7 and VGG's fc6/fc7, 600 px images, 9 anchors, 2000/300 proposals.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...registry import IMAGENET_MEAN, IMAGENET_STD, create_model, register_model
from ...weights import register_converter
from ._coco import COCO_CATEGORIES
from ._parts.anchors import AnchorGenerator
from ._parts.backbone import MobileNetTaps, mobilenet_fpn_backbone, resnet_fpn_backbone, trainable_layers
from ._parts.detector import Detector
from ._parts.grid import check_targets
from ._parts.poolers import RoIPooler
from ._parts.roi_heads import ConvFCHead, FastRCNNPredictor, RoIHeads, TwoMLPHead
from ._parts.rpn import RegionProposalNetwork, RPNHead
from ._parts.transform import DetectionTransform

__all__ = ["FasterRCNN", "GeneralizedRCNN"]


class GeneralizedRCNN(Detector, nn.Module):
    """transform -> backbone -> rpn -> roi_heads -> back to each image's pixels.

    ``model(images)`` in eval mode returns one dict per image, ``{"boxes" (N, 4) XYXY in the image's pixels,
    "labels" (N,), "scores" (N,)}``; ``model(images, targets)`` in training returns the named losses. Images are
    float (C, H, W) tensors in [0, 1] of any sizes; a target holds ``"boxes"`` (N, 4) XYXY in pixels (a tensor or a
    ``tv_tensors.BoundingBoxes``) and ``"labels"`` (N,) in 1..num_classes-1; N = 0 is an image of background.
    """

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        images = list(images)
        if self.training:
            check_targets(targets, len(images), getattr(self, "num_classes", None), first=1)
            targets = [dict(t, labels=torch.as_tensor(t["labels"]).to(torch.int64)) for t in targets]
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets if self.training else None)
        features = self.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(batch, features, targets)
        detections, detector_losses = self.roi_heads(features, proposals, batch.image_sizes, targets)
        if self.training:
            return {**detector_losses, **proposal_losses}
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def _detections(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        return self(images)  # eval mode, no gradients: boxes XYXY in each image's own pixels


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN around a ``backbone`` that has ``out_channels`` (the same for all its maps).

    Options and defaults are torchvision's ``FasterRCNN``'s: ``min_size``/``max_size`` (transform),
    ``rpn_*`` (anchors, head, IoU thresholds 0.7/0.3, 256 anchors with half positives, 2000/1000 proposals before
    and after NMS 0.7 in training/testing), ``box_*`` (RoIAlign 7x7 over FPN levels "0"-"3", a 2x1024 fc head,
    IoU 0.5, 512 RoIs with 25% foreground, score 0.05, NMS 0.5, 100 detections). Components passed in replace the
    defaults. Options of ours for the paper's setup: ``rpn_allowed_border`` (cross-boundary anchors ignored in
    training), ``box_bg_iou_low`` (Fast R-CNN's lower background threshold), ``box_loss_beta`` (the head's
    smooth-L1 beta), ``size_divisible`` (padding).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 91,
        *,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        size_divisible: int = 32,
        rpn_anchor_generator: AnchorGenerator | None = None,
        rpn_head: nn.Module | None = None,
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        rpn_allowed_border: float | None = None,
        box_roi_pool: nn.Module | None = None,
        box_head: nn.Module | None = None,
        box_predictor: nn.Module | None = None,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_bg_iou_low: float = 0.0,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        box_loss_beta: float = 1.0 / 9,
        bbox_reg_weights: Sequence[float] | None = None,
    ) -> None:
        if not hasattr(backbone, "out_channels"):
            raise ConfigError("the backbone needs an `out_channels` attribute (channels of each feature map)")
        if num_classes < 2:
            raise ConfigError(f"num_classes counts the background too and must be >= 2, got {num_classes}")
        channels = backbone.out_channels
        anchors = rpn_anchor_generator or AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
        rpn = RegionProposalNetwork(
            anchors, rpn_head or RPNHead(channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
            batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
            pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            nms_thresh=rpn_nms_thresh, score_thresh=rpn_score_thresh, allowed_border=rpn_allowed_border,
        )
        box_roi_pool = box_roi_pool or RoIPooler(["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        if box_head is None:
            resolution = box_roi_pool.output_size[0]
            box_head = TwoMLPHead(channels * resolution**2, 1024)
        box_predictor = box_predictor or FastRCNNPredictor(1024, num_classes)
        roi_heads = RoIHeads(
            box_roi_pool, box_head, box_predictor,
            fg_iou_thresh=box_fg_iou_thresh, bg_iou_thresh=box_bg_iou_thresh, bg_iou_low=box_bg_iou_low,
            batch_size_per_image=box_batch_size_per_image, positive_fraction=box_positive_fraction,
            bbox_reg_weights=bbox_reg_weights, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img, box_loss_beta=box_loss_beta,
        )
        transform = DetectionTransform(min_size, max_size, image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD,
                                       size_divisible=size_divisible)
        super().__init__(backbone, rpn, roi_heads, transform)
        self.num_classes = num_classes


# ------------------------------------------------------------------------------------------- converters
def _backbone_converter(family: str | None, source: str):
    from ...weights import _CONVERTERS

    return _CONVERTERS.get((family, source))


_FPN_KEY = re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(?:(0|1)\.)?(.+)$")
_RPN_CONV_KEY = re.compile(r"^rpn\.head\.conv\.(?:(\d+)\.0\.)?(weight|bias)$")
_BOX_HEAD_KEY = re.compile(r"^roi_heads\.box_head\.(\d+)\.(?:(0|1)\.)?(.+)$")


@register_converter("faster_rcnn", "torchvision")
def _from_torchvision(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """torchvision's detection keys -> ours: the backbone body through its own family's torchvision key map
    (``backbone.body.model.*``); FPN ``inner_blocks``/``layer_blocks`` -> ``lateral``/``output``; RPN ``cls_logits``/
    ``bbox_pred`` -> ``objectness``/``deltas``; the v2 box head's positions -> ``convs``/``fcs``. Keys of
    torchvision's older layout (before Conv2dNormActivation wrappers, as in the COCO v1 checkpoint) map too;
    BatchNorm counters are dropped where ours has frozen BatchNorm."""
    out: dict[str, Tensor] = {}
    body_keys: dict[str, Tensor] = {}
    body = model.backbone.body if hasattr(model.backbone, "body") else None
    n_convs = len(model.roi_heads.box_head.convs) if isinstance(model.roi_heads.box_head, ConvFCHead) else 0
    for key, value in state_dict.items():
        if key.startswith("backbone.body."):
            body_keys[key[len("backbone.body."):]] = value
        elif m := _FPN_KEY.match(key):
            kind, i, pos, rest = m.groups()
            ours = "lateral" if kind == "inner_blocks" else "output"
            out[f"backbone.fpn.{ours}.{i}.{'bn' if pos == '1' else 'conv'}.{rest}"] = value
        elif m := _RPN_CONV_KEY.match(key):
            out[f"rpn.head.conv.{m.group(1) or 0}.{m.group(2)}"] = value
        elif key.startswith("rpn.head.cls_logits."):
            out["rpn.head.objectness." + key[len("rpn.head.cls_logits."):]] = value
        elif key.startswith("rpn.head.bbox_pred."):
            out["rpn.head.deltas." + key[len("rpn.head.bbox_pred."):]] = value
        elif n_convs and (m := _BOX_HEAD_KEY.match(key)):
            i, pos, rest = int(m.group(1)), m.group(2), m.group(3)
            if i < n_convs:
                out[f"roi_heads.box_head.convs.{i}.{'bn' if pos == '1' else 'conv'}.{rest}"] = value
            else:  # after the convs: Flatten, then (Linear, ReLU) pairs
                out[f"roi_heads.box_head.fcs.{(i - n_convs - 1) // 2}.{rest}"] = value
        else:
            out[key] = value
    if body_keys:
        inner = getattr(body, "model", None)
        if isinstance(body, MobileNetTaps):  # torchvision's body is the MobileNet's `features` sequence
            body_keys = {f"features.{k}": v for k, v in body_keys.items()}
        convert = _backbone_converter(getattr(getattr(inner, "meta", None), "family", None), "torchvision")
        if convert is not None:
            body_keys = convert(body_keys, inner)
        out.update({f"backbone.body.model.{k}": v for k, v in body_keys.items()})
    own = model.state_dict()  # BatchNorm counters have no place in frozen BatchNorm
    return {k: v for k, v in out.items() if k in own or not k.endswith("num_batches_tracked")}


# ---------------------------------------------------------------------------------------------- builders
_TV = "https://download.pytorch.org/models/"
_COCO = dict(paper="faster-rcnn", task="detection", categories=COCO_CATEGORIES, num_classes=91,
             classifier=("roi_heads.box_predictor",))
_BN_NOTE = ("with trained weights (pretrained= or pretrained_backbone=) BatchNorm is frozen and only the last 3 "
            "backbone stages train, as torchvision builds it; frozen_bn= and trainable_backbone_layers= override")
_EPS_NOTE = _BN_NOTE + "; with the COCO weights the frozen BatchNorm's eps is 0, as torchvision sets it for them"


def _resnet_fpn(pretrained_backbone: str | bool | None, trainable_backbone_layers: int | None, frozen_bn: bool | None,
                frozen_bn_eps: float | None = None, fpn_norm: Any = None, pretrained: bool = False) -> nn.Module:
    return resnet_fpn_backbone("resnet50", pretrained_backbone, trainable_backbone_layers, frozen_bn=frozen_bn,
                               frozen_bn_eps=frozen_bn_eps, fpn_norm=fpn_norm, trained=pretrained or bool(pretrained_backbone))


@register_model(**_COCO, input_size=(3, 800, 800), reference={"torchvision": "fasterrcnn_resnet50_fpn"},
                weights={"torchvision": _TV + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"}, notes=_EPS_NOTE)
def fasterrcnn_resnet50_fpn(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                            trainable_backbone_layers: int | None = None, frozen_bn: bool | None = None,
                            frozen_bn_eps: float | None = None, pretrained: bool = False, **kwargs: Any) -> FasterRCNN:
    """ResNet-50-FPN Faster R-CNN (FPN paper, Sec. 5.2): RPN on P2-P6 with one anchor size per level (32^2 to 512^2),
    RoIAlign 7x7 from P2-P5 by eq. 1 of FPN, a 2x1024 fc head. BatchNorm is frozen with trained weights."""
    if pretrained and frozen_bn_eps is None:
        frozen_bn_eps = 0.0  # torchvision's COCO weights were trained with this eps
    backbone = _resnet_fpn(pretrained_backbone, trainable_backbone_layers, frozen_bn, frozen_bn_eps, pretrained=pretrained)
    return FasterRCNN(backbone, num_classes, **kwargs)


@register_model(**_COCO, input_size=(3, 800, 800), reference={"torchvision": "fasterrcnn_resnet50_fpn_v2"},
                weights={"torchvision": _TV + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth"})
def fasterrcnn_resnet50_fpn_v2(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                               trainable_backbone_layers: int | None = None, frozen_bn: bool | None = False,
                               pretrained: bool = False, **kwargs: Any) -> FasterRCNN:
    """torchvision's improved recipe (Li et al., 2021): BatchNorm in the FPN and in a 4conv1fc box head, two 3x3
    convs in the RPN head, live BatchNorm in the backbone even when pretrained."""
    backbone = _resnet_fpn(pretrained_backbone, trainable_backbone_layers, frozen_bn, fpn_norm=nn.BatchNorm2d,
                           pretrained=pretrained)
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], depth=2)
    box_head = ConvFCHead(backbone.out_channels, 7, (256, 256, 256, 256), (1024,), norm_layer=nn.BatchNorm2d)
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, rpn_head=rpn_head, box_head=box_head, **kwargs)


def _mobilenet(pretrained_backbone: str | bool | None, num_classes: int, trainable_backbone_layers: int | None,
               frozen_bn: bool | None, defaults: dict[str, Any], kwargs: dict[str, Any], pretrained: bool) -> FasterRCNN:
    backbone = mobilenet_fpn_backbone("mobilenetv3_large_100", pretrained_backbone, trainable_backbone_layers, frozen_bn,
                                      trained=pretrained or bool(pretrained_backbone))
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **{**defaults, **kwargs})


@register_model(**_COCO, input_size=(3, 800, 800), reference={"torchvision": "fasterrcnn_mobilenet_v3_large_fpn"},
                weights={"torchvision": _TV + "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"}, notes=_BN_NOTE)
def fasterrcnn_mobilenet_v3_large_fpn(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                                      trainable_backbone_layers: int | None = None, frozen_bn: bool | None = None,
                                      pretrained: bool = False, **kwargs: Any) -> FasterRCNN:
    """MobileNetV3-Large FPN Faster R-CNN (torchvision): FPN over the last stage's strided block and the final 1x1
    conv (both stride 32), 15 anchors per position (5 sizes x 3 ratios) on each of the 3 levels, proposals scored
    >= 0.05."""
    return _mobilenet(pretrained_backbone, num_classes, trainable_backbone_layers, frozen_bn,
                      {"rpn_score_thresh": 0.05}, kwargs, pretrained)


@register_model(**_COCO, input_size=(3, 320, 320), reference={"torchvision": "fasterrcnn_mobilenet_v3_large_320_fpn"},
                weights={"torchvision": _TV + "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"}, notes=_BN_NOTE)
def fasterrcnn_mobilenet_v3_large_320_fpn(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                                          trainable_backbone_layers: int | None = None, frozen_bn: bool | None = None,
                                          pretrained: bool = False, **kwargs: Any) -> FasterRCNN:
    """The low-resolution MobileNetV3 detector: 320 px images (640 max), 150 proposals before and after NMS."""
    defaults = {"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
                "rpn_score_thresh": 0.05}
    return _mobilenet(pretrained_backbone, num_classes, trainable_backbone_layers, frozen_bn, defaults, kwargs, pretrained)


# The paper's VGG-16 detector. Numbers: Sec. 3.3 (600 px shorter side; anchors of 128^2, 256^2, 512^2 x ratios 1:1,
# 1:2, 2:1; cross-boundary anchors ignored in training; NMS 0.7 leaving ~2000 proposals), Sec. 3.1.3 (256 anchors per
# image, up to 1:1 positives), Sec. 3.1.2 (IoU 0.7 / 0.3), Sec. 4.1 / Table 2 (top-300 proposals at test time),
# Sec. 3.1 (a 3x3 conv of 512 channels for VGG). Where the paper defers to Fast R-CNN or to its code, py-faster-rcnn's
# config (lib/fast_rcnn/config.py): max side 1000; 12000 / 6000 proposals before NMS (train / test); 128 RoIs per
# image with 25% foreground at IoU >= 0.5 and background in [0.1, 0.5) (Fast R-CNN Sec. 2.3); smooth L1 with
# sigma 3 (beta 1/9) for the RPN and 1 for the head; test NMS 0.3. RoI max pooling 7x7 and dropout 0.5 in fc6/fc7
# are Fast R-CNN's VGG-16 head (Sec. 2.1); conv1-conv2 stay frozen (Fast R-CNN Sec. 4.5: fine-tune from conv3_1).
VGG16_SETUP: dict[str, Any] = dict(
    min_size=600, max_size=1000,
    rpn_pre_nms_top_n_train=12000, rpn_pre_nms_top_n_test=6000,
    rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=300,
    rpn_nms_thresh=0.7, rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3,
    rpn_batch_size_per_image=256, rpn_positive_fraction=0.5, rpn_allowed_border=0.0,
    box_batch_size_per_image=128, box_positive_fraction=0.25, box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5,
    box_bg_iou_low=0.1, box_loss_beta=1.0, box_nms_thresh=0.3, box_score_thresh=0.05, box_detections_per_img=100,
)
_VGG_NOTE = ("the paper's VGG-16 setup on torchvision-style parts: anchors are centred boxes of exact area (py-faster-"
             "rcnn enumerates them from a 16x16 cell), proposals under 1e-3 px are dropped (py-faster-rcnn: 16 px), "
             "training is approximate joint (the paper's tables mostly use 4-step alternating training)")


@register_model(**_COCO, input_size=(3, 600, 600), notes=_VGG_NOTE)
def fasterrcnn_vgg16(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                     trainable_backbone_layers: int | None = None, pretrained: bool = False, **kwargs: Any) -> FasterRCNN:
    """Faster R-CNN on VGG-16 as in the paper: the RPN and the Fast R-CNN head share conv5_3 (stride 16); RoI max
    pooling to 7x7 feeds fc6/fc7 (4096, dropout 0.5), initialised from VGG-16's classifier when the backbone is
    pretrained. ``trainable_backbone_layers`` counts VGG's 5 conv blocks from the top (default 3: conv3_1 up)."""
    vgg = create_model("vgg16", pretrained=pretrained_backbone or None)
    n_train = trainable_layers(pretrained or bool(pretrained_backbone), trainable_backbone_layers, 5)
    conv5_end = vgg._level_ends[4]  # conv5_3's ReLU; the last max pool is left out (stride 16)
    backbone = nn.Sequential(*list(vgg.features)[: conv5_end + 1])
    backbone.out_channels = vgg.features[conv5_end - 1].out_channels
    block_starts = [0, *[i + 1 for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)], len(backbone)]
    for layer in list(backbone)[: block_starts[5 - n_train]]:
        layer.requires_grad_(False)
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, vgg.pre_logits.fc6.out_features, dropout=0.5)
    box_head.fc6, box_head.fc7 = vgg.pre_logits.fc6, vgg.pre_logits.fc7
    predictor = FastRCNNPredictor(box_head.fc7.out_features, num_classes)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    anchors = AnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),))
    return FasterRCNN(
        backbone, num_classes, rpn_anchor_generator=anchors,
        rpn_head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        box_roi_pool=RoIPooler(["0"], output_size=7, mode="pool"), box_head=box_head, box_predictor=predictor,
        **{**VGG16_SETUP, **kwargs},
    )
