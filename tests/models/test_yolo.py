"""YOLO v1 (arXiv 1506.02640): the paper's output layout (7 x 7 x 30 from 24 conv + 2 FC layers, Fast YOLO's 9 conv
layers), each term of eq. 3 against a hand computation on a 2 x 2 grid, decoding (eq. 2) + batched NMS against a
per-image loop of torchvision's NMS, the detection call convention, and one clear line for bad targets.

Big nets are built on the ``meta`` device; numerics run on a small grid or a narrow Fast YOLO."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import nms

import paperzoo as pz
from paperzoo.errors import DataError
from paperzoo.models.detection._parts.grid import postprocess
from paperzoo.models.detection.yolo import decode, yolo_loss


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.features if isinstance(m, nn.Conv2d)]


@pytest.mark.paper("yolo")
@pytest.mark.parametrize("name,convs,fcs", [("yolov1", 24, 2), ("fast_yolov1", 9, 3)])
def test_output_layout_and_depth(name: str, convs: int, fcs: int, record_property) -> None:
    """448 px in, S x S x (5B + C) = 7 x 7 x 30 out for VOC's 20 classes; 24 conv layers (Fast YOLO: 9) with a
    1024-channel 7 x 7 map before the fully connected layers (Fig. 3)."""
    with torch.device("meta"):
        model = pz.create_model(name)
        out = model(torch.empty(2, 3, 448, 448))
        trunk = model.features(torch.empty(1, 3, 448, 448))
        wider = pz.create_model(name, num_classes=80, boxes=3, grid=5)(torch.empty(1, 3, 448, 448))
    record_property("output_shape", str(tuple(out.shape)))
    assert tuple(out.shape) == (2, 7, 7, 30)
    assert tuple(trunk.shape) == (1, 1024, 7, 7)
    assert len(_convs(model)) == convs
    assert sum(isinstance(m, nn.Linear) for m in model.head) == fcs
    assert all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.1 for m in model.features if not
               isinstance(m, (nn.Conv2d, nn.MaxPool2d)))
    assert tuple(wider.shape) == (1, 5, 5, 3 * 5 + 80)
    if name == "yolov1":  # Fig. 3: 7x7x64-s-2 first, then 3x3x192; the last two 3x3x1024
        first, second = _convs(model)[:2]
        assert (first.kernel_size, first.stride, first.out_channels) == ((7, 7), (2, 2), 64)
        assert (second.kernel_size, second.out_channels) == ((3, 3), 192)
        assert model.head[1].out_features == 4096 and model.head[-1].out_features == 1470


def _hand_head() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2 x 2 grid, B = 2, C = 3, one image with two objects, every number set by hand."""
    head = torch.zeros(1, 2, 2, 13)
    # cell (row 0, col 0): predictor 0 (x .4, y .6, sqrt w .5, sqrt h .6, conf .7), predictor 1 far off (conf .3)
    head[0, 0, 0, :10] = torch.tensor([0.4, 0.6, 0.5, 0.6, 0.7, 0.9, 0.9, 0.2, 0.2, 0.3])
    head[0, 0, 0, 10:] = torch.tensor([0.1, 0.2, 0.6])
    # cell (1, 1): predictor 0 small in the middle (conf .2), predictor 1 close to the box (conf .9)
    head[0, 1, 1, :10] = torch.tensor([0.5, 0.5, 0.3, 0.3, 0.2, 0.6, 0.5, 0.6, 0.5, 0.9])
    head[0, 1, 1, 10:] = torch.tensor([0.8, 0.1, 0.0])
    # the two cells without objects: confidences .1/.2 and .05/0
    head[0, 0, 1, [4, 9]] = torch.tensor([0.1, 0.2])
    head[0, 1, 0, [4, 9]] = torch.tensor([0.05, 0.0])
    head[0, 0, 1, 10:] = 0.7  # class probabilities of empty cells are not penalised
    boxes = torch.tensor([[0.1, 0.1, 0.4, 0.5], [0.55, 0.6, 0.95, 0.9]])  # centres (.25, .3) and (.75, .75)
    return head, torch.tensor([0, 0]), boxes, torch.tensor([2, 0])


@pytest.mark.paper("yolo")
def test_loss_terms_by_hand(record_property) -> None:
    """Every term of eq. 3 on a 2 x 2 grid equals the hand computation: the responsible predictor is the one with
    the higher IoU (predictor 0 in cell (0, 0), predictor 1 in cell (1, 1)), the confidence target is that IoU,
    widths and heights enter through square roots, lambda_coord = 5 and lambda_noobj = 0.5."""
    head, image, boxes, labels = _hand_head()
    head.requires_grad_(True)
    losses = yolo_loss(head, image, boxes, labels, boxes=2)
    values = {k: float(v.detach()) for k, v in losses.items()}
    # cell (0, 0), object A: offset in cell (.5, .6), w .3, h .4; predictor 0's box is [.075, .12, .325, .48]:
    # intersection .225 x .36 = .081, union .09 + .12 - .081 = .129; predictor 1's box [.43, .43, .47, .47] misses.
    iou_a = 0.081 / 0.129
    # cell (1, 1), object B: offset (.5, .5), w .4, h .3; predictor 1's box [.62, .625, .98, .875]: intersection
    # .33 x .25 = .0825, union .09 + .12 - .0825 = .1275; predictor 0's box lies inside B: .0081 / .12 = .0675.
    iou_b = 0.0825 / 0.1275
    expected = {
        "loss_xy": 5 * ((0.4 - 0.5) ** 2 + (0.6 - 0.6) ** 2 + (0.6 - 0.5) ** 2 + (0.5 - 0.5) ** 2),
        "loss_wh": 5 * ((0.5 - math.sqrt(0.3)) ** 2 + (0.6 - math.sqrt(0.4)) ** 2
                        + (0.6 - math.sqrt(0.4)) ** 2 + (0.5 - math.sqrt(0.3)) ** 2),
        "loss_obj": (0.7 - iou_a) ** 2 + (0.9 - iou_b) ** 2,
        "loss_noobj": 0.5 * (0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2 + 0.2 ** 2 + 0.05 ** 2 + 0.0 ** 2),
        "loss_class": (0.1 ** 2 + 0.2 ** 2 + (0.6 - 1) ** 2) + ((0.8 - 1) ** 2 + 0.1 ** 2 + 0.0 ** 2),
    }
    errs = {k: abs(values[k] - v) for k, v in expected.items()}
    record_property("max_abs_err_vs_hand", max(errs.values()))
    assert set(losses) == set(expected)
    for k, v in expected.items():
        assert abs(values[k] - v) < 1e-6, (k, values[k], v)
    sum(losses.values()).backward()
    # the IoU target is a constant: the confidence gradient is 2 (c - IoU), the empty cells' class outputs get none
    assert abs(float(head.grad[0, 0, 0, 4]) - 2 * (0.7 - iou_a)) < 1e-6
    assert float(head.grad[0, 0, 1, 10:].abs().sum()) == 0.0
    # a batch with a second, empty image halves every term (averaged over images) except no-object confidences
    two = torch.cat([head.detach(), torch.zeros_like(head.detach())])
    halved = yolo_loss(two, image, boxes, labels, boxes=2)
    assert all(abs(float(halved[k]) - expected[k] / 2) < 1e-6 for k in expected)


def test_one_object_per_cell_and_responsibility_moves() -> None:
    """Two centres in one cell: the cell learns the last listed; making predictor 1 the better fit moves the
    responsibility (its offsets enter loss_xy, predictor 0's confidence becomes a no-object term)."""
    head, image, boxes, labels = _hand_head()
    extra = torch.tensor([[0.2, 0.2, 0.3, 0.3]])  # centre (.25, .25): also cell (0, 0), listed last
    both = yolo_loss(head, torch.tensor([0, 0, 0]), torch.cat([boxes, extra]), torch.tensor([2, 0, 1]), boxes=2)
    assert abs(float(both["loss_class"]) - ((0.1 ** 2 + (0.2 - 1) ** 2 + 0.6 ** 2) + 0.05)) < 1e-6
    moved = head.clone()
    moved[0, 0, 0, 5:9] = torch.tensor([0.5, 0.6, math.sqrt(0.3), math.sqrt(0.4)])  # predictor 1 = object A exactly
    out = yolo_loss(moved, image, boxes, labels, boxes=2)
    assert abs(float(out["loss_xy"]) - 5 * 0.01) < 1e-6  # only cell (1, 1)'s x offset error is left
    assert abs(float(out["loss_noobj"]) - 0.5 * (0.7 ** 2 + 0.2 ** 2 + 0.1 ** 2 + 0.2 ** 2 + 0.05 ** 2)) < 1e-6


@pytest.mark.paper("yolo")
def test_decode_and_batched_nms_match_a_per_image_loop(record_property) -> None:
    """Class-specific confidences (eq. 2) decoded from a random head, then one batched NMS over all images and
    classes, equal a loop over images and classes calling torchvision's ``nms``; boxes land in each image's pixels."""
    g = torch.Generator().manual_seed(0)
    head = torch.rand(3, 4, 4, 2 * 5 + 3, generator=g)
    sizes = [(100, 200), (64, 64), (90, 30)]
    boxes, scores = decode(head, 2)
    assert boxes.shape == (3, 32, 4) and scores.shape == (3, 32, 3)
    # the box of cell (row 1, col 2), predictor 1, of image 0
    p = head[0, 1, 2, 5:9]
    cx, cy, w, h = (2 + p[0]) / 4, (1 + p[1]) / 4, p[2] ** 2, p[3] ** 2
    torch.testing.assert_close(boxes[0, (1 * 4 + 2) * 2 + 1], torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    torch.testing.assert_close(scores[0, (1 * 4 + 2) * 2 + 1], head[0, 1, 2, 9] * head[0, 1, 2, 10:])
    out = postprocess(boxes, scores, sizes, score_thresh=0.2, nms_thresh=0.4, detections_per_img=7)
    for i, (h_, w_) in enumerate(sizes):
        pix = boxes[i].clamp(0, 1) * torch.tensor([w_, h_, w_, h_])
        cand = [(s, c, j) for c in range(3) for j in nms(pix, scores[i, :, c], 0.4).tolist()
                if (s := float(scores[i, j, c])) > 0.2]
        cand.sort(key=lambda t: -t[0])
        cand = cand[:7]
        assert len(out[i]["boxes"]) == len(cand) > 0
        assert out[i]["labels"].tolist() == [c for _, c, _ in cand]
        torch.testing.assert_close(out[i]["scores"], torch.tensor([s for s, _, _ in cand]))
        torch.testing.assert_close(out[i]["boxes"], pix[[j for _, _, j in cand]])
    record_property("detections_per_image", [len(o["boxes"]) for o in out])


def _small():
    return pz.create_model("fast_yolov1", num_classes=4, width=0.125, image_size=64, grid=4)


def test_train_and_detect_convention() -> None:
    """model(images, targets) gives eq. 3's terms with gradients; detect is eval-mode, no-grad, in pixels."""
    model = _small().train()
    images = [torch.rand(3, 50, 80), torch.rand(3, 64, 40)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0]]), "labels": torch.tensor([3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(images, targets)
    assert set(losses) == {"loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.score_thresh = 0.0
    dets = model.detect(images)
    assert model.training and set(dets[0]) == {"boxes", "scores", "labels"} and not dets[0]["boxes"].requires_grad
    assert (dets[0]["boxes"][:, 2] <= 80).all() and (dets[1]["boxes"][:, 3] <= 64).all()
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4, 4, 14)


def test_bad_targets_are_named() -> None:
    model = _small().train()
    images = [torch.rand(3, 64, 64)]
    with pytest.raises(DataError, match="1 images but 0 targets"):
        model(images, [])
    with pytest.raises(DataError, match="labels must lie in 0..3"):
        model(images, [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([4])}])
    with pytest.raises(DataError, match="no positive width"):
        model(images, [{"boxes": torch.tensor([[5.0, 1.0, 5.0, 9.0]]), "labels": torch.tensor([1])}])


def test_trains_through_the_engine(tmp_path) -> None:
    """A few steps of `paperzoo train --model fast_yolov1 --data shapes` with a miniature config, then COCO AP."""
    from paperzoo.cli import main

    main(["train", "--model", "fast_yolov1", "--data", "shapes", "--epochs", "1", "--batch-size", "4",
          "--out", str(tmp_path / "run"), "data.image_size=64", "data.size=8", "data.val_size=4", "lr=0.001",
          "model_args.width=0.125", "model_args.image_size=64", "model_args.grid=4"])
    import json

    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "val_map" in [r for r in rows if r["kind"] == "epoch"][-1]
