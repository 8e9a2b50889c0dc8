"""SSD (arXiv 1512.02325): torchvision's ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large`` (weights=None,
weights_backbone=None, perturbed) loaded into ours give the same head outputs, default boxes, detections and both
multibox loss terms (hard negative mining included); the paper's default-box counts (8,732 at 300 px, 24,564 for
SSD512) and eq. 4's scales; the detection call convention and bad-target errors.

The perturbed networks saturate their softmax (scores of 1.0 tie everywhere, which makes the order of detections
arbitrary), so the classification predictors of the reference are scaled down before loading; SSDLite's ReLU6
features still tie many scores, so its NMS stage is compared on shared, untied head outputs."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from helpers import rel_err
from torch import nn

import paperzoo as pz
from paperzoo.errors import DataError
from paperzoo.models.detection.ssd import default_boxes, paper_scales

VARIANTS = ["ssd300_vgg16", "ssdlite320_mobilenet_v3_large"]
K = 5  # classes, background included


def _images(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 150, 200, generator=g), torch.rand(3, 190, 140, generator=g)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[10.0, 20.0, 120.0, 140.0], [50.0, 60.0, 90.0, 100.0], [0.0, 0.0, 30.0, 25.0]]),
             "labels": torch.tensor([3, 4, 1])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # background only


@torch.no_grad()
def _random_(model: nn.Module, seed: int = 3) -> nn.Module:
    """Random weights for a model built on the meta device and moved to empty CPU memory (building VGG-16's unused
    classifier for real costs seconds): convs/linears ~ N(0, 1/fan_in), biases and BN shifts ~ N(0, 0.1^2), BN
    scales ~ 1 + N(0, 0.1^2), running statistics as ``perturb_`` sets them, the L2-norm scale 20 +- 2."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            t.zero_()
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif t.dim() > 1:
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t[0].numel()))
        elif name.endswith("scale_weight"):
            t.copy_(20 + 2 * torch.randn(t.shape, generator=g))
        elif name.endswith("weight"):  # norm scales
            t.copy_(1 + 0.1 * torch.randn(t.shape, generator=g))
        else:
            t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return model


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request):
    """(name, ours, torchvision's, what both computed): random weights of torchvision's detector loaded into ours;
    one eval pass (head outputs captured by hooks) and one training pass of each, shared by the checks below."""
    name = request.param
    torch.manual_seed(0)
    with torch.device("meta"):
        ref = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, num_classes=K)
        ours = pz.create_model(name, num_classes=K)
    ref, ours = _random_(ref.to_empty(device="cpu")), ours.to_empty(device="cpu")
    with torch.no_grad():  # desaturate the softmax: scale the last conv of each classification predictor
        for block in ref.head.classification_head.module_list:
            last = block if isinstance(block, nn.Conv2d) else block[-1]
            last.weight.mul_(0.05 if name == "ssd300_vgg16" else 1.0)
    ours = pz.load_weights(ours, ref.state_dict(), source="torchvision")
    images = _images()[:1] if name == "ssd300_vgg16" else _images()
    seen: dict[str, object] = {}
    hooks = [ref.head.register_forward_hook(lambda m, i, o: seen.__setitem__("ref_head", o)),
             ref.backbone.register_forward_hook(lambda m, i, o: seen.__setitem__("ref_features", list(o.values()))),
             ours.head.register_forward_hook(lambda m, i, o: seen.__setitem__("head", o)),
             ours.backbone.register_forward_hook(lambda m, i, o: seen.__setitem__("features", list(o.values())))]
    ours.eval(), ref.eval()
    with torch.no_grad():
        seen["detections"], seen["ref_detections"] = ours(images), ref(images)
    for h in hooks:
        h.remove()
    ours.train(), ref.train()
    seen["losses"], seen["ref_losses"] = ours(_images(), _targets()), ref(_images(), _targets())
    seen["images"] = images
    return name, ours, ref, seen


def _canonical(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detections sorted by score, ties broken by label (the order among equal scores is arbitrary)."""
    order = torch.sort(d["labels"], stable=True).indices
    order = order[torch.sort(d["scores"][order], descending=True, stable=True).indices]
    return {k: v[order] for k, v in d.items()}


@pytest.mark.paper("ssd")
def test_head_outputs_and_default_boxes_equal_torchvision(pair, record_property) -> None:
    """Both heads' outputs (every default box's class logits and offsets, from resized, normalised input) and the
    default boxes themselves equal torchvision's."""
    _, ours, ref, seen = pair
    cls, box = seen["head"]
    expected = seen["ref_head"]
    batch, _ = ref.transform(seen["images"])
    anchors = ref.anchor_generator(batch, seen["ref_features"])[0]
    ours_anchors = ours.anchors(seen["features"])
    errs = {"cls_logits": rel_err(cls, expected["cls_logits"]), "bbox_regression": rel_err(box, expected["bbox_regression"]),
            "default_boxes": float((ours_anchors - anchors).abs().max())}
    record_property("errors_vs_torchvision", errs)
    assert cls.shape == expected["cls_logits"].shape and len(ours_anchors) == len(anchors)
    assert errs["cls_logits"] < 1e-5 and errs["bbox_regression"] < 1e-5 and errs["default_boxes"] < 1e-4, errs


@pytest.mark.paper("ssd")
def test_detections_equal_torchvision(pair, record_property) -> None:
    """Eval-mode detections: end to end for SSD300; for SSDLite (whose ReLU6 features tie many scores) the decoding,
    per-class top-k, NMS and rescaling on the same untied head outputs."""
    name, ours, ref, seen = pair
    images = seen["images"]
    if name == "ssd300_vgg16":
        out, expected = seen["detections"], seen["ref_detections"]
    else:
        ref.eval()  # (its transform rescales detections only in eval mode)
        batch, _ = ref.transform(images)
        anchors = ref.anchor_generator(batch, seen["ref_features"])
        g = torch.Generator().manual_seed(5)
        n_boxes = len(anchors[0])
        head = {"cls_logits": 2 * torch.randn(len(images), n_boxes, K, generator=g),
                "bbox_regression": 0.5 * torch.randn(len(images), n_boxes, 4, generator=g)}
        ref.topk_candidates = ours.topk_candidates = 40  # so that the per-class top-k bites (4 classes x 40 < 300)
        with torch.no_grad():
            expected = ref.transform.postprocess(ref.postprocess_detections(head, anchors, batch.image_sizes),
                                                 batch.image_sizes, [im.shape[-2:] for im in images])
            out = ours.postprocess(head["cls_logits"], head["bbox_regression"], anchors[0],
                                   [tuple(im.shape[-2:]) for im in images])
        ref.topk_candidates = ours.topk_candidates = 300
    errs = {"boxes": 0.0, "scores": 0.0}
    for o, e in zip(out, expected):
        o, e = _canonical(o), _canonical(e)
        assert len(o["boxes"]) == len(e["boxes"]) >= 40, (len(o["boxes"]), len(e["boxes"]))
        assert torch.equal(o["labels"], e["labels"])
        for k in errs:
            errs[k] = max(errs[k], float((o[k] - e[k]).abs().max()))
    record_property("max_abs_err_vs_torchvision", errs)
    assert errs["boxes"] < 1e-3 and errs["scores"] < 1e-5, errs


@pytest.mark.paper("ssd")
def test_loss_terms_equal_torchvision(pair, record_property) -> None:
    """Both multibox loss terms (smooth-L1 localisation over matched default boxes, confidence loss over them and
    the 3:1 hard negatives, both over N) equal torchvision's, with an image of background only in the batch."""
    _, _, _, seen = pair
    losses, expected = seen["losses"], seen["ref_losses"]
    assert set(losses) == set(expected) == {"bbox_regression", "classification"}
    errs = {k: abs(float(losses[k].detach()) - float(expected[k].detach())) / abs(float(expected[k].detach()))
            for k in expected}
    record_property("loss_rel_err_vs_torchvision", errs)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())
    assert max(errs.values()) < 1e-5, errs


@pytest.mark.paper("ssd")
@pytest.mark.parametrize("name,count,grids", [
    ("ssd300_vgg16", 8732, [38, 19, 10, 5, 3, 1]),
    ("ssd512_vgg16", 24564, [64, 32, 16, 8, 4, 2, 1]),
    ("ssdlite320_mobilenet_v3_large", 3234, [20, 10, 5, 3, 2, 1]),
])
def test_default_box_counts(name: str, count: int, grids: list[int], record_property) -> None:
    """The paper's 8,732 default boxes for SSD300 and 24,564 for SSD512 (Sec. 3.1, Table 7), from maps of the
    sizes of Fig. 2 and 4 or 6 boxes per position."""
    with torch.device("meta"):
        model = pz.create_model(name).eval()
        size = model.size
        maps = list(model.backbone(torch.empty(1, 3, size, size)).values())
    assert [m.shape[-1] for m in maps] == grids
    boxes = default_boxes([m.shape[-2:] for m in maps], (size, size), model.scales, model.aspect_ratios, model.steps)
    record_property("default_boxes", len(boxes))
    assert len(boxes) == count == sum(g * g * a for g, a in zip(grids, model.num_anchors_per_location()))


@pytest.mark.paper("ssd")
def test_scales_and_shapes_of_eq_4() -> None:
    """Eq. 4 with s_min = 0.2, s_max = 0.9 over 6 maps gives 0.2, 0.34, ..., 0.9; a box of ratio a_r is
    s_k sqrt(a_r) wide and s_k / sqrt(a_r) high, the extra square one sqrt(s_k s_{k+1}); centres at (i + 0.5)/|f_k|."""
    scales = paper_scales(6)
    assert all(abs(a - b) < 1e-12 for a, b in zip(scales, [0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.0]))
    boxes = default_boxes([(2, 2)], (100, 100), [0.2, 0.34], [[2, 3]], clip=False).view(2, 2, 6, 4)
    wh = boxes[..., 2:] - boxes[..., :2]
    expected = torch.tensor([[20.0, 20.0], [100 * math.sqrt(0.2 * 0.34)] * 2, [20 * math.sqrt(2), 20 / math.sqrt(2)],
                             [20 / math.sqrt(2), 20 * math.sqrt(2)], [20 * math.sqrt(3), 20 / math.sqrt(3)],
                             [20 / math.sqrt(3), 20 * math.sqrt(3)]])
    torch.testing.assert_close(wh[0, 1], expected)
    torch.testing.assert_close((boxes[0, 1, 0, :2] + boxes[0, 1, 0, 2:]) / 2, torch.tensor([75.0, 25.0]))
    with torch.device("meta"):
        assert pz.create_model("ssd300_vgg16", scales="paper").scales == paper_scales(6)


def test_detect_convention_and_bad_targets() -> None:
    model = pz.create_model("ssdlite320_mobilenet_v3_large", num_classes=K).train()
    images = _images()
    dets = model.detect(images)
    assert model.training and set(dets[0]) == {"boxes", "scores", "labels"} and not dets[0]["boxes"].requires_grad
    assert (dets[0]["boxes"][:, 2] <= 200 + 1e-3).all() and (dets[1]["boxes"][:, 3] <= 190 + 1e-3).all()
    assert int(dets[0]["labels"].min()) >= 1
    losses = model(images, _targets())
    sum(losses.values()).backward()
    with pytest.raises(DataError, match="labels must lie in 1..4"):
        model(images[:1], [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(DataError, match="2 images but 1 targets"):
        model(images, _targets()[:1])


def test_parameter_counts_match_torchvision_weights() -> None:
    """The COCO builds have exactly the parameters torchvision's published weights list (num_params in their
    metadata): 35,641,826 and 3,440,060 (SSDLite's reduced tail included)."""
    from torchvision.models.detection import SSD300_VGG16_Weights, SSDLite320_MobileNet_V3_Large_Weights

    with torch.device("meta"):
        for name, w in [("ssd300_vgg16", SSD300_VGG16_Weights.COCO_V1),
                        ("ssdlite320_mobilenet_v3_large", SSDLite320_MobileNet_V3_Large_Weights.COCO_V1)]:
            assert sum(p.numel() for p in pz.create_model(name, pretrained=False).parameters()) == w.meta["num_params"]
