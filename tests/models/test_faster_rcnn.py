"""Faster R-CNN (arXiv 1506.01497): torchvision's four detectors loaded from their perturbed random weights give the
same detections and the same four loss terms (same seed: the samplers draw the same anchors and proposals); the
paper's numbers (9 anchors, 600/1000 px, 256 anchors, 2000/300 proposals, RoI pooling 7x7 at 1/16, cross-boundary
anchors ignored) in ``fasterrcnn_vgg16``; backbone weights, freezing and ``num_classes``; input errors.

Models run at a small size (shorter side 160, fewer proposals) so that the file stays fast on one core."""
from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision
from helpers import n_params, perturb_
from torch import nn
from torchvision import tv_tensors
from torchvision.ops import FrozenBatchNorm2d, roi_pool

import paperzoo as pz
from paperzoo.errors import DataError
from paperzoo.models.detection import faster_rcnn as frcnn
from paperzoo.models.detection._parts.anchors import AnchorGenerator
from paperzoo.models.detection._parts.rpn import RegionProposalNetwork, RPNHead

VARIANTS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
            "fasterrcnn_mobilenet_v3_large_320_fpn"]
# Small and quick on both sides; score threshold 0 so that the comparison covers 100 detections per image.
SMALL = dict(min_size=160, max_size=224, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150,
             rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150, box_batch_size_per_image=64,
             box_score_thresh=0.0)


def _images(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 150, 200, generator=g), torch.rand(3, 190, 140, generator=g), torch.rand(3, 120, 120, generator=g)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 120.0, 140.0], [50.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([3, 7])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # an image of background only
        {"boxes": torch.tensor([[0.0, 0.0, 120.0, 120.0], [30.0, 40.0, 70.0, 110.0]]), "labels": torch.tensor([1, 90])},
    ]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request):
    """(name, ours, torchvision's) with torchvision's perturbed random weights loaded into ours."""
    name = request.param
    torch.manual_seed(0)  # a module fixture is set up before the autouse per-test seed
    ref = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, num_classes=91, **SMALL)
    perturb_(ref, seed=3)
    ours = pz.load_weights(pz.create_model(name, **SMALL), ref.state_dict(), source="torchvision")
    return name, ours, ref


@pytest.mark.paper("faster-rcnn")
def test_detections_equal_torchvision(pair, record_property) -> None:
    name, ours, ref = pair
    ours.eval(), ref.eval()
    images = _images()
    with torch.no_grad():
        out, expected = ours(images), ref(images)
    errs = {"boxes": 0.0, "scores": 0.0}
    for o, e, img in zip(out, expected, images):
        assert len(o["boxes"]) == len(e["boxes"]) >= 20, (name, len(o["boxes"]), len(e["boxes"]))
        assert torch.equal(o["labels"], e["labels"])
        for k in errs:
            errs[k] = max(errs[k], float((o[k] - e[k]).abs().max()))
        assert (o["boxes"][:, 2] <= img.shape[-1] + 1e-3).all()  # in the input image's own pixels
    record_property("max_abs_err_vs_torchvision", errs)
    record_property("detections_per_image", [len(o["boxes"]) for o in out])
    assert errs["boxes"] < 1e-3 and errs["scores"] < 1e-5, errs


@pytest.mark.paper("faster-rcnn")
def test_losses_equal_torchvision(pair, record_property) -> None:
    """Each loss term and every gradient equal torchvision's under the same seed (same RPN anchors and RoI samples,
    one image without objects); a different seed draws a different sample."""
    _, ours, ref = pair
    ours.train(), ref.train()
    images, targets = _images(), _targets()
    torch.manual_seed(7)
    losses = ours(images, targets)
    torch.manual_seed(7)
    expected = ref(images, targets)
    assert set(losses) == set(expected) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    errs = {k: abs(float(losses[k].detach() - expected[k].detach())) for k in expected}
    record_property("loss_abs_err_vs_torchvision", errs)
    for k in expected:
        value = float(expected[k].detach())
        assert math.isfinite(float(losses[k].detach())) and errs[k] <= 1e-6 * max(1.0, abs(value)), (k, errs)
    sum(losses.values()).backward()
    sum(expected.values()).backward()
    ref_grads = frcnn._from_torchvision({k: p.grad for k, p in ref.named_parameters() if p.grad is not None}, ours)
    ours_grads = {k: p.grad for k, p in ours.named_parameters() if p.grad is not None}
    assert set(ours_grads) == set(ref_grads)
    grad_err = max(float((ours_grads[k] - ref_grads[k]).abs().max() / ref_grads[k].abs().max().clamp_min(1e-12))
                   for k in ours_grads)
    record_property("max_grad_rel_err_vs_torchvision", grad_err)
    assert grad_err < 1e-4
    ours.zero_grad(), ref.zero_grad()
    torch.manual_seed(8)
    with torch.no_grad():
        other = ours(images, targets)
    assert float(other["loss_objectness"]) != float(losses["loss_objectness"].detach())


def test_batch_without_objects_trains() -> None:
    model = pz.create_model("fasterrcnn_mobilenet_v3_large_320_fpn", **SMALL).train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in range(2)]
    losses = model(_images()[:2], empty)
    values = {k: float(v.detach()) for k, v in losses.items()}
    assert all(math.isfinite(v) for v in values.values())
    assert values["loss_box_reg"] == 0.0 and values["loss_rpn_box_reg"] == 0.0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_detect_and_target_formats() -> None:
    """``detect`` is eval-mode, no-grad, in each image's pixels and leaves the mode as it was; boxes given as
    ``BoundingBoxes`` in XYWH train exactly like XYXY tensors."""
    model = pz.create_model("fasterrcnn_mobilenet_v3_large_320_fpn", **SMALL).train()
    images = _images()[:2]
    dets = model.detect(images)
    assert model.training and not dets[0]["boxes"].requires_grad
    assert set(dets[0]) == {"boxes", "labels", "scores"}
    assert all((d["boxes"][:, 2] <= img.shape[-1]).all() and (d["boxes"][:, 3] <= img.shape[-2]).all()
               for d, img in zip(dets, images))
    model.eval()
    with torch.no_grad():
        again = model(images)
    assert all(torch.equal(a["boxes"], d["boxes"]) for a, d in zip(again, dets))
    model.train()
    xyxy = _targets()[:2]
    xywh = [dict(t, boxes=tv_tensors.BoundingBoxes(torch.cat([t["boxes"][:, :2], t["boxes"][:, 2:] - t["boxes"][:, :2]], 1),
                                                   format="XYWH", canvas_size=img.shape[-2:]))
            for t, img in zip(xyxy, images)]
    torch.manual_seed(0)
    a = model(images, xyxy)
    torch.manual_seed(0)
    b = model(images, xywh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_targets_are_named() -> None:
    model = pz.create_model("fasterrcnn_mobilenet_v3_large_320_fpn", **SMALL).train()
    images = _images()[:1]
    with pytest.raises(DataError, match="targets are needed"):
        model(images)
    with pytest.raises(DataError, match=r"target 0: box \[50.0, 10.0, 40.0, 30.0\]"):
        model(images, [{"boxes": torch.tensor([[50.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([1])}])
    with pytest.raises(DataError, match=r"labels must lie in 1..90"):
        model(images, [{"boxes": torch.tensor([[5.0, 10.0, 40.0, 30.0]]), "labels": torch.tensor([91])}])


def test_torchvision_old_key_layout_loads() -> None:
    """torchvision's pre-0.13 checkpoints (the COCO v1 weights) name the RPN conv and FPN convs without the
    Conv2dNormActivation wrapper; they load the same."""
    ref = perturb_(torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SMALL))
    def old_name(key: str) -> str:
        key = re.sub(r"rpn\.head\.conv\.0\.0\.", "rpn.head.conv.", key)
        return re.sub(r"(inner_blocks|layer_blocks)\.(\d+)\.0\.", r"\1.\2.", key)

    old = {old_name(k): v for k, v in ref.state_dict().items()}
    assert "rpn.head.conv.weight" in old and "backbone.fpn.inner_blocks.0.weight" in old
    ours = pz.load_weights(pz.create_model("fasterrcnn_resnet50_fpn", **SMALL), old, source="torchvision")
    assert torch.equal(ours.rpn.head.conv[0].weight, ref.rpn.head.conv[0][0].weight)
    assert torch.equal(ours.backbone.fpn.lateral[0].conv.weight, ref.backbone.fpn.inner_blocks[0][0].weight)


def test_pretrained_backbone_path_freezes_like_torchvision(tmp_path) -> None:
    """A backbone-only checkpoint fills the backbone; BatchNorm becomes frozen and only layer2-4 train (torchvision's
    trainable_backbone_layers=3); the FPN and heads train. Without weights: live BatchNorm, everything trains."""
    torch.manual_seed(0)
    resnet = pz.create_model("resnet50")
    path = tmp_path / "resnet50.pth"
    torch.save(resnet.state_dict(), path)
    model = pz.create_model("fasterrcnn_resnet50_fpn", pretrained_backbone=str(path))
    body = model.backbone.body.model
    assert torch.equal(body.layer3[0].conv2.weight, resnet.layer3[0].conv2.weight)
    assert torch.equal(body.bn1.running_var, resnet.bn1.running_var)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert isinstance(body.layer1[0].bn1, FrozenBatchNorm2d)
    frozen = {n.split(".")[0] for n, p in body.named_parameters() if not p.requires_grad}
    trained = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert frozen == {"conv1", "layer1"} and trained == {"layer2", "layer3", "layer4"}
    assert all(p.requires_grad for p in [*model.backbone.fpn.parameters(), *model.rpn.parameters()])
    scratch = pz.create_model("fasterrcnn_resnet50_fpn")
    assert all(p.requires_grad for p in scratch.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in scratch.backbone.body.modules())


def test_whole_detector_from_a_torchvision_checkpoint(tmp_path) -> None:
    """``pretrained="torchvision::PATH"`` loads a torchvision detector's checkpoint and, since trained weights are
    coming, the model is built frozen as torchvision builds it for its COCO weights (stem and blocks 1-6 of the
    MobileNet frozen, BatchNorm frozen) without asking."""
    ref = perturb_(torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None))
    path = tmp_path / "detector.pth"
    torch.save(ref.state_dict(), path)
    model = pz.create_model("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=f"torchvision::{path}")
    body = model.backbone.body
    assert torch.equal(model.rpn.head.objectness.weight, ref.rpn.head.cls_logits.weight)
    assert torch.equal(body.model.bn1.running_var, ref.backbone.body["0"][1].running_var)
    assert isinstance(body.model.bn1, FrozenBatchNorm2d)
    grads = [any(p.requires_grad for p in b.parameters()) for b in body.blocks]
    assert not body.model.conv_stem.weight.requires_grad and grads == [False] * 6 + [True] * 10


def test_num_classes_changes_the_predictor_only() -> None:
    with torch.device("meta"):
        coco = pz.create_model("fasterrcnn_resnet50_fpn")
        voc = pz.create_model("fasterrcnn_resnet50_fpn", num_classes=21)
    a, b = coco.state_dict(), voc.state_dict()
    changed = {k for k in a if a[k].shape != b[k].shape}
    assert changed == {f"roi_heads.box_predictor.{n}.{p}" for n in ("cls_score", "bbox_pred") for p in ("weight", "bias")}
    assert voc.roi_heads.box_predictor.cls_score.out_features == 21 and voc.meta.num_classes == 21


# ----------------------------------------------------------------------------- the paper's numbers (VGG-16)
@pytest.mark.paper("faster-rcnn")
def test_nine_anchors_per_position(record_property) -> None:
    """Sec. 3.3: 3 scales (box areas 128^2, 256^2, 512^2) x 3 aspect ratios (1:1, 1:2, 2:1) = 9 anchors per position
    of the stride-16 map, each centred on its position."""
    with torch.device("meta"):
        model = pz.create_model("fasterrcnn_vgg16")
    gen = model.rpn.anchor_generator
    assert gen.num_anchors_per_location() == [9]
    assert model.rpn.head.objectness.out_channels == 9 and model.rpn.head.deltas.out_channels == 36
    anchors = AnchorGenerator(gen.sizes, gen.aspect_ratios)((160, 160), [torch.zeros(1, 512, 10, 10)])
    assert anchors.shape == (10 * 10 * 9, 4)
    cell = anchors[:9]
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    shapes = sorted(zip(w.tolist(), h.tolist()))
    record_property("anchor_shapes_wh", shapes)
    areas, ratios = (w * h).view(3, 3), (h / w).view(3, 3)  # rows: ratios 1:2, 1:1, 2:1 (h/w); columns: scales
    assert torch.allclose(areas, torch.tensor([128.0, 256.0, 512.0]).pow(2).expand(3, 3), rtol=0.01)
    assert torch.allclose(ratios, torch.tensor([[0.5], [1.0], [2.0]]).expand(3, 3), rtol=0.02)
    assert torch.equal((cell[:, :2] + cell[:, 2:]) / 2, torch.zeros(9, 2))
    assert torch.equal(anchors[9:18] - anchors[:9], torch.tensor([16.0, 0.0, 16.0, 0.0]).expand(9, 4))  # next position


def _vgg16_parameters(num_classes: int) -> int:
    """Parameters of Faster R-CNN VGG-16 counted layer by layer (weights + biases)."""
    cfg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # conv1_1 .. conv5_3, 3x3
    convs = sum(9 * i * o + o for i, o in cfg)
    fc6, fc7 = 512 * 7 * 7 * 4096 + 4096, 4096 * 4096 + 4096
    rpn = (9 * 512 * 512 + 512) + (512 * 9 + 9) + (512 * 36 + 36)  # 3x3 conv, cls (k), reg (4k)
    predictor = (4096 * num_classes + num_classes) + (4096 * 4 * num_classes + 4 * num_classes)
    return convs + fc6 + fc7 + rpn + predictor


@pytest.mark.paper("faster-rcnn")
def test_vgg16_setup_matches_the_paper(record_property) -> None:
    """600 px shorter side (1000 max), RPN: IoU 0.7/0.3, 256 anchors with up to half positives, NMS 0.7, 2000 training
    and 300 test proposals, cross-boundary anchors ignored; RoI max pooling 7x7; fc6/fc7 of 4096 with dropout;
    138.5M parameters with COCO's 91 classes (137.1M with VOC's 21), counted layer by layer."""
    with torch.device("meta"):
        model = pz.create_model("fasterrcnn_vgg16")
        voc = pz.create_model("fasterrcnn_vgg16", num_classes=21)
    t, rpn, heads = model.transform, model.rpn, model.roi_heads
    assert (t.min_size, t.max_size) == ((600,), 1000)
    assert (rpn.fg_iou_thresh, rpn.bg_iou_thresh, rpn.batch_size_per_image, rpn.positive_fraction) == (0.7, 0.3, 256, 0.5)
    assert rpn.nms_thresh == 0.7 and rpn._post_nms_top_n == {"training": 2000, "testing": 300}
    assert rpn.allowed_border == 0.0 and rpn.head.objectness.in_channels == 512
    pool = heads.box_roi_pool
    assert (pool.mode, pool.output_size, pool.featmap_names) == ("pool", (7, 7), ["0"])
    assert heads.box_head.fc6.in_features == 512 * 7 * 7 and heads.box_head.fc7.out_features == 4096
    assert heads.box_head.dropout == 0.5
    count, count_voc = n_params(model), n_params(voc)
    record_property("params", {"coco_91": count, "voc_21": count_voc})
    assert count == _vgg16_parameters(91) == 138_507_572
    assert count_voc == _vgg16_parameters(21)


@pytest.mark.paper("faster-rcnn")
def test_vgg16_pools_conv5_3_at_one_sixteenth(record_property) -> None:
    """The RoI head max-pools 7x7 cells from conv5_3 at spatial scale 1/16: equal to torchvision's roi_pool with
    spatial_scale=1/16 on the feature map the backbone produced."""
    model = pz.create_model("fasterrcnn_vgg16", min_size=160, max_size=200, rpn_pre_nms_top_n_test=200,
                            rpn_post_nms_top_n_test=10).eval()
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, args: seen.update(batch=args[0].shape))
    model.roi_heads.box_roi_pool.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    with torch.no_grad():
        model(_images()[:2])
    features, rois, _ = seen["args"]
    assert seen["batch"][-2:] == (224, 224) and features["0"].shape[-2:] == (14, 14)  # the padded batch at stride 16
    expected = roi_pool(features["0"], rois, (7, 7), 1 / 16)
    record_property("rois", int(rois.shape[0]))
    assert rois.shape[0] == 20 and seen["out"].shape == (20, 512, 7, 7)
    assert torch.equal(seen["out"], expected)


@pytest.mark.paper("faster-rcnn")
def test_cross_boundary_anchors_are_ignored() -> None:
    """Sec. 3.3: in training, anchors crossing the image boundary do not contribute to the loss (label -1), even where
    they overlap the object well; inside anchors are labelled by IoU as usual."""
    gen = AnchorGenerator(((64,),), ((1.0,),))
    rpn = RegionProposalNetwork(gen, RPNHead(4, 1), allowed_border=0.0)
    anchors = gen((128, 128), [torch.zeros(1, 4, 8, 8)])  # 64x64 anchors centred every 16 px
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 64.0, 64.0]])}]
    labels, _, _ = rpn.anchor_labels(anchors, targets, [(128, 128)])
    inside = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2:] < 128).all(1)
    assert (labels[0][~inside] == -1).all() and (labels[0][inside] == 1).any() and (labels[0][inside] == 0).any()
    keep_all = RegionProposalNetwork(gen, RPNHead(4, 1))  # torchvision's detectors keep them
    labels_all, _, _ = keep_all.anchor_labels(anchors, targets, [(128, 128)])
    assert (labels_all[0][~inside] >= 0).any()


def test_vgg16_fc_layers_come_from_the_pretrained_classifier(monkeypatch) -> None:
    """With backbone weights, fc6/fc7 are VGG-16's own (the paper initialises them from the ImageNet classifier) and
    conv1-conv2 are frozen (Fast R-CNN: fine-tune from conv3_1)."""
    built = {}
    real = frcnn.create_model

    def fake_create(name, pretrained=None, **kw):  # stands in for loading a checkpoint: records the VGG it returns
        built["vgg"] = real(name, **kw)
        built["pretrained"] = pretrained
        return built["vgg"]

    monkeypatch.setattr(frcnn, "create_model", fake_create)
    model = frcnn.fasterrcnn_vgg16(pretrained_backbone="vgg16.pth")
    vgg = built["vgg"]
    assert built["pretrained"] == "vgg16.pth"
    assert model.roi_heads.box_head.fc6.weight is vgg.pre_logits.fc6.weight
    assert model.roi_heads.box_head.fc7.weight is vgg.pre_logits.fc7.weight
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    frozen = [all(not p.requires_grad for p in c.parameters()) for c in convs]
    assert len(convs) == 13 and frozen == [True] * 4 + [False] * 9


# ----------------------------------------------------------------------------- compile and benchmark plumbing
@pytest.mark.slow
def test_compiles() -> None:
    model = pz.create_model("fasterrcnn_mobilenet_v3_large_320_fpn", **SMALL).eval()
    compiled = torch.compile(model)
    images = _images()[:2]
    with torch.no_grad():
        out, expected = compiled(images), model(images)
    assert all(torch.allclose(o["boxes"], e["boxes"], atol=1e-3) for o, e in zip(out, expected))


def test_bench_runs_against_torchvision() -> None:
    from paperzoo.bench import bench, ratios

    results = bench(["fasterrcnn_mobilenet_v3_large_320_fpn"], vs="torchvision", batch_size=1, image_size=64, iters=1,
                    rounds=1, memory=False)
    assert [r.impl for r in results] == ["paperzoo", "torchvision"]
    assert results[0].params_m == results[1].params_m and results[0].gmacs == results[1].gmacs
    assert set(ratios(results)["fasterrcnn_mobilenet_v3_large_320_fpn"]) == {"infer", "train"}
