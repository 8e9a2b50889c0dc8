"""CocoEvaluator on hand-computed cases: each number below is worked out from COCO's definitions (IoU
thresholds 0.50:0.05:0.95, 101-point interpolated precision, area ranges 32^2 / 96^2), not read back from
pycocotools."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from paperzoo.errors import ConfigError
from paperzoo.metrics import COCO_PERSON_SIGMAS, CocoEvaluator

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _target(boxes, labels, image_id, size=(200, 200), **extra):
    t = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                           format="XYXY", canvas_size=size),
         "labels": torch.tensor(labels, dtype=torch.int64), "image_id": image_id}
    n = len(labels)
    t["iscrowd"] = extra.pop("iscrowd", torch.zeros(n, dtype=torch.int64))
    t.update(extra)
    return t


def _pred(boxes, scores, labels, **extra):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64), **extra}


def _evaluate(pairs, **kwargs):
    ev = CocoEvaluator(**kwargs)
    for pred, target in pairs:
        h, w = target["boxes"].canvas_size
        ev.update([pred], (torch.zeros(1, 3, h, w), [target]))
    ev.synchronize()
    return ev, ev.compute()


def test_perfect_detections_give_one():
    boxes = [[[10, 10, 20, 20], [30, 40, 100, 90], [0, 0, 150, 120]], [[50, 60, 58, 75]]]
    labels = [[1, 2, 1], [3]]
    pairs = [(_pred(b, [0.9] * len(b), lab), _target(b, lab, image_id=i)) for i, (b, lab) in enumerate(zip(boxes, labels))]
    ev, m = _evaluate(pairs)
    for key in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_10", "mar_100"):
        assert m[key] == pytest.approx(1.0), key
    assert "Average Precision" in ev.summary and "IoU metric: bbox" in ev.summary


def test_false_positive_ranked_first_halves_ap():
    # one ground truth; a false positive (0.9) ranks above the true positive (0.8): precision 0 then 1/2 at
    # recall 1, so the interpolated precision is 1/2 at all 101 recall points and AP = 0.5 at every IoU
    gt = _target([[20, 20, 80, 80]], [1], image_id=1)
    pred = _pred([[120, 120, 180, 180], [20, 20, 80, 80]], [0.9, 0.8], [1, 1])
    _, m = _evaluate([(pred, gt)])
    assert m["map"] == pytest.approx(0.5) and m["map_50"] == pytest.approx(0.5)
    assert m["mar_100"] == pytest.approx(1.0) and m["mar_1"] == pytest.approx(0.0)  # the top-1 is the FP


def test_interpolated_precision_101_points():
    # two ground truths; ranks TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Interpolated precision is 1 for recall <= 1/2 (51 of the 101 points) and 2/3 above (50 points).
    gt = _target([[0, 0, 50, 50], [100, 100, 150, 150]], [1, 1], image_id=1)
    pred = _pred([[0, 0, 50, 50], [60, 0, 90, 30], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [1, 1, 1])
    _, m = _evaluate([(pred, gt)])
    assert m["map"] == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_iou_0_62_counts_at_50_not_at_75():
    # IoU = 62*100 / (100*100) = 0.62: a match at thresholds 0.50, 0.55, 0.60 only (3 of 10)
    gt = _target([[0, 0, 100, 100]], [1], image_id=1)
    pred = _pred([[0, 0, 62, 100]], [0.9], [1])
    _, m = _evaluate([(pred, gt)])
    assert m["map_50"] == pytest.approx(1.0) and m["map_75"] == pytest.approx(0.0)
    assert m["map"] == pytest.approx(0.3)


def test_small_medium_large_by_area():
    # areas 100 (< 32^2: small), 2500 (medium), 10000 (>= 96^2: large); the large one is missed
    boxes = [[0, 0, 10, 10], [20, 20, 70, 70], [90, 90, 190, 190]]
    gt = _target(boxes, [1, 1, 1], image_id=1, area=torch.tensor([100.0, 2500.0, 10000.0]))
    pred = _pred(boxes[:2], [0.9, 0.8], [1, 1])
    _, m = _evaluate([(pred, gt)])
    assert m["map_small"] == pytest.approx(1.0) and m["map_medium"] == pytest.approx(1.0)
    assert m["map_large"] == pytest.approx(0.0)
    assert m["map"] == pytest.approx(67 / 101)  # precision 1 up to recall 2/3: recall points 0.00..0.66
    assert m["mar_1"] == pytest.approx(1 / 3) and m["mar_10"] == pytest.approx(2 / 3)
    # the area that decides the range is the target's "area", not the box's
    gt2 = _target(boxes, [1, 1, 1], image_id=1, area=torch.tensor([100.0, 100.0, 100.0]))
    _, m2 = _evaluate([(pred, gt2)])
    assert m2["map_small"] == pytest.approx(67 / 101) and m2["map_medium"] == -1.0  # -1: nothing to measure


def test_crowd_ground_truth_is_ignored_not_a_false_positive():
    gt = _target([[0, 0, 50, 50], [100, 100, 200, 200]], [1, 1], image_id=1, iscrowd=torch.tensor([0, 1]))
    pred = _pred([[110, 110, 190, 190], [0, 0, 50, 50]], [0.9, 0.8], [1, 1])  # the 0.9 one lies in the crowd
    _, m = _evaluate([(pred, gt)])
    assert m["map"] == pytest.approx(1.0)
    # not crowd: the 0.9 detection (IoU 6400/10000 = 0.64 with the second object) is a TP at thresholds
    # 0.50-0.60 (AP 1) and an FP ranked first above them (precision 1/2 up to recall 1/2: AP 51 * 0.5 / 101)
    gt.update(iscrowd=torch.tensor([0, 0]))
    _, m = _evaluate([(pred, gt)])
    above = 0.5 * 51 / 101
    assert m["map_50"] == pytest.approx(1.0) and m["map_75"] == pytest.approx(above)
    assert m["map"] == pytest.approx((3 * 1.0 + 7 * above) / 10)


def test_wrong_label_is_a_false_positive():
    gt = _target([[0, 0, 50, 50]], [2], image_id=1)
    _, m = _evaluate([(_pred([[0, 0, 50, 50]], [0.9], [1]), gt)])
    assert m["map"] == pytest.approx(0.0)


def test_no_detections_give_zero_and_empty_evaluator_too():
    gt = _target([[0, 0, 50, 50], [10, 10, 30, 30]], [1, 2], image_id=3)
    _, m = _evaluate([(_pred([], [], []), gt)])
    assert m["map"] == 0.0 and m["map_50"] == 0.0 and m["mar_100"] == 0.0
    gt["masks"] = tv_tensors.Mask(torch.zeros(2, 200, 200, dtype=torch.uint8))
    _, m = _evaluate([(_pred([], [], [], masks=torch.zeros(0, 1, 200, 200)), gt)], iou_types=("bbox", "segm"))
    assert m["map"] == 0.0 and m["mask_map"] == 0.0
    assert CocoEvaluator().compute()["map"] == 0.0


def test_repeated_image_counted_once():
    # DistributedSampler repeats images to even out the shards: the evaluator keeps one record per image id
    gt = _target([[20, 20, 80, 80]], [1], image_id=1)
    pred = _pred([[120, 120, 180, 180], [20, 20, 80, 80]], [0.9, 0.8], [1, 1])
    _, m = _evaluate([(pred, gt), (pred, gt)])
    assert m["map"] == pytest.approx(0.5)


def _disk(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.uint8)


def test_mask_ap_on_drawn_masks():
    h, w = 64, 64
    disk = _disk(h, w, 32, 30, 14)
    cut = disk.copy()
    cut[36:] = 0  # the prediction loses the disk's bottom rows
    iou = cut.sum() / disk.sum()  # cut is inside disk: IoU = |cut| / |disk|
    assert 0.6 < iou < 0.75
    ys, xs = np.nonzero(disk)
    box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    gt = _target(box, [1], image_id=1, size=(h, w), masks=tv_tensors.Mask(torch.from_numpy(disk)[None]),
                 area=torch.tensor([float(disk.sum())]))
    probs = torch.from_numpy(cut)[None, None].float() * 0.9 + 0.05  # (N, 1, H, W) probabilities, as Mask R-CNN
    pred = _pred(box, [0.9], [1], masks=probs)
    ev, m = _evaluate([(pred, gt)], iou_types=("bbox", "segm"))
    assert m["map"] == pytest.approx(1.0)  # the box is exact ...
    assert m["mask_map"] == pytest.approx((THRESHOLDS <= iou).sum() / 10)  # ... the mask is not
    assert m["mask_map_50"] == pytest.approx(1.0) and m["mask_map_75"] == pytest.approx(0.0)
    assert "IoU metric: segm" in ev.summary
    # the exact mask, given as binary
    _, m = _evaluate([(_pred(box, [0.9], [1], masks=torch.from_numpy(disk)[None]), gt)], iou_types="segm")
    assert m["mask_map"] == pytest.approx(1.0)


def _kp_target(kps, vis, box, area, image_id=1):
    return _target([box], [1], image_id=image_id,
                   keypoints=tv_tensors.KeyPoints(torch.tensor(kps, dtype=torch.float32)[None], canvas_size=(200, 200)),
                   visibility=torch.tensor(vis)[None], area=torch.tensor([area]))


def test_keypoint_ap_from_oks():
    rng = np.random.default_rng(0)
    gt_kps = rng.uniform(40, 160, (17, 2))
    vis = [2] * 15 + [1, 0]
    area = 6400.0  # medium (32^2 <= a < 96^2)
    gt = _kp_target(gt_kps.tolist(), vis, [40, 40, 160, 160], area)
    ev, m = _evaluate([(_pred([[40, 40, 160, 160]], [0.9], [1], keypoints=torch.tensor(gt_kps)[None]), gt)],
                      iou_types="keypoints")
    assert m["kp_map"] == pytest.approx(1.0) and m["kp_map_medium"] == pytest.approx(1.0)
    assert m["kp_map_large"] == -1.0 and "IoU metric: keypoints" in ev.summary
    # every keypoint 3 px off: OKS = mean over the 16 labelled of exp(-d^2 / (2 area (2 sigma)^2))
    sig = np.asarray(COCO_PERSON_SIGMAS)
    labelled = np.asarray(vis) > 0
    o = np.exp(-9.0 / (2 * area * (2 * sig[labelled]) ** 2)).mean()
    pred = _pred([[40, 40, 160, 160]], [0.9], [1], keypoints=torch.tensor(gt_kps + [3.0, 0.0])[None])
    _, m = _evaluate([(pred, gt)], iou_types="keypoints")
    assert 0.5 < o < 0.95
    assert m["kp_map"] == pytest.approx((THRESHOLDS <= o).sum() / 10)
    assert m["kp_map_50"] == pytest.approx(1.0)
    # an image with no people and no detections (torchvision's (0, P, 3) keypoints) changes nothing
    empty = _target([], [], image_id=2, keypoints=tv_tensors.KeyPoints(torch.zeros(0, 17, 2), canvas_size=(200, 200)),
                    visibility=torch.zeros(0, 17, dtype=torch.int64), area=torch.zeros(0))
    none = _pred([], [], [], keypoints=torch.zeros(0, 17, 3))
    _, m2 = _evaluate([(pred, gt), (none, empty)], iou_types="keypoints")
    assert m2["kp_map"] == m["kp_map"]


def test_keypoints_need_sigmas_unless_coco_persons():
    gt = _kp_target([[10, 10], [20, 20], [30, 30]], [2, 2, 2], [5, 5, 40, 40], 900.0)
    pred = _pred([[5, 5, 40, 40]], [0.9], [1], keypoints=torch.tensor([[[10, 10], [20, 20], [30, 30]]], dtype=torch.float32))
    with pytest.raises(ConfigError, match="needs kpt_oks_sigmas"):
        _evaluate([(pred, gt)], iou_types="keypoints")
    _, m = _evaluate([(pred, gt)], iou_types="keypoints", kpt_oks_sigmas=[0.05, 0.05, 0.05])
    assert m["kp_map"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="2 kpt_oks_sigmas for 3 keypoints"):
        _evaluate([(pred, gt)], iou_types="keypoints", kpt_oks_sigmas=[0.05, 0.05])


def test_per_class_ap():
    gt = _target([[0, 0, 50, 50], [60, 60, 120, 120]], [1, 2], image_id=1)
    pred = _pred([[0, 0, 50, 50], [0, 0, 10, 10]], [0.9, 0.8], [1, 2])
    _, m = _evaluate([(pred, gt)], per_class=True)
    assert m["map_class_1"] == pytest.approx(1.0) and m["map_class_2"] == pytest.approx(0.0)
    assert m["map"] == pytest.approx(0.5)
