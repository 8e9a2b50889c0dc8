"""OKS against pycocotools' COCOeval.computeOks; PCK and PCKh on hand cases."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from paperzoo.errors import ConfigError
from paperzoo.metrics import COCO_PERSON_SIGMAS, PCK, PCKh, oks


def _coco_oks(gt_kps, gt_vis, gt_boxes_xywh, areas, dt_kps, scores, sigmas):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "height": 300, "width": 300}], "categories": [{"id": 1, "name": "p"}],
                  "annotations": [{"id": j + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(areas[j]),
                                   "bbox": list(map(float, gt_boxes_xywh[j])), "num_keypoints": int((gt_vis[j] > 0).sum()),
                                   "keypoints": np.concatenate([gt_kps[j], gt_vis[j][:, None]], 1).ravel().tolist()}
                                  for j in range(len(gt_kps))]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "score": float(s),
                          "keypoints": np.concatenate([k, np.ones((len(k), 1))], 1).ravel().tolist()}
                         for k, s in zip(dt_kps, scores)])
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
    return np.asarray(ev.ious[(1, 1)])  # (detections sorted by score, ground truths)


def test_oks_matches_pycocotools(record_property):
    rng = np.random.default_rng(0)
    n, m, p = 4, 5, 17
    gt = rng.uniform(50, 250, (n, p, 2))
    vis = rng.integers(0, 3, (n, p))
    vis[3] = 0  # no labelled keypoint: COCO's fallback on the doubled ground-truth box
    xy0 = rng.uniform(20, 120, (n, 2))
    wh = rng.uniform(40, 150, (n, 2))
    boxes_xywh = np.concatenate([xy0, wh], 1)
    areas = rng.uniform(1000, 20000, n)
    dt = gt[rng.integers(0, n, m)] + rng.normal(0, 8, (m, p, 2))
    dt[4] = rng.uniform(0, 300, (p, 2))  # one far from everything
    scores = np.linspace(0.9, 0.5, m)  # already sorted, so pycocotools' rows are ours
    ref = _coco_oks(gt, vis, boxes_xywh, areas, dt, scores, COCO_PERSON_SIGMAS)
    ours = oks(torch.tensor(dt), torch.tensor(gt), torch.tensor(vis), torch.tensor(areas), COCO_PERSON_SIGMAS,
               gt_boxes=torch.tensor(np.concatenate([xy0, xy0 + wh], 1)))
    err = float(np.abs(ours.numpy() - ref).max())
    record_property("max_abs_err_vs_pycocotools", err)
    assert ref.shape == (m, n) and 0.05 < ref[:, :3].max() and err < 1e-12
    # without boxes, a ground truth with nothing labelled scores 0
    no_box = oks(torch.tensor(dt), torch.tensor(gt), torch.tensor(vis), torch.tensor(areas), COCO_PERSON_SIGMAS)
    assert torch.equal(no_box[:, 3], torch.zeros(m, dtype=no_box.dtype))
    assert torch.allclose(no_box[:, :3], ours[:, :3])


def _pose_batch(kps, vis, boxes, **extra):
    t = {"keypoints": tv_tensors.KeyPoints(torch.tensor(kps, dtype=torch.float32), canvas_size=(200, 200)),
         "visibility": torch.tensor(vis), "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32),
                                                                           format="XYXY", canvas_size=(200, 200)),
         **extra}
    return (torch.zeros(1, 3, 200, 200), [t])


def test_pck_hand_case():
    # box 100 x 50: scale max(w, h) = 100, threshold 0.2 * 100 = 20 px
    gt = [[[50, 50], [60, 60], [70, 70], [80, 80], [90, 90]]]
    vis = [[2, 2, 1, 2, 0]]
    pred = torch.tensor([[[60, 50], [60, 80], [95, 70], [80, 80], [0, 0]]], dtype=torch.float32)  # 10, 20, 25, 0, (far)
    m = PCK(alpha=0.2)
    m.update([{"keypoints": pred}], _pose_batch(gt, vis, [[20, 40, 120, 90]]))
    assert m.compute() == {"pck": pytest.approx(3 / 4)}  # 20 <= 20 counts; the unlabelled one is not counted
    # torso-style scale: distance between keypoints 0 and 3 = 30 * sqrt(2) = 42.4, threshold 8.5: 1 of 4
    m = PCK(alpha=0.2, normalize="pair", pair=(0, 3))
    m.update(pred[None], _pose_batch(gt, vis, [[20, 40, 120, 90]]))
    assert m.compute()["pck"] == pytest.approx(1 / 4)
    m = PCK(alpha=0.3, normalize="pair", pair=(0, 3))  # threshold 12.7: the 10 px one joins
    m.update(pred[None], _pose_batch(gt, vis, [[20, 40, 120, 90]]))
    assert m.compute()["pck"] == pytest.approx(2 / 4)
    with pytest.raises(ConfigError, match="pair"):
        PCK(normalize="pair")


def test_pckh_hand_case():
    gt = [[[100, 40], [100, 60], [100, 100], [120, 100]]]  # head top, upper neck, hip, knee
    vis = [[2, 2, 2, 2]]
    pred = torch.tensor([[[100, 45], [108, 60], [100, 111], [120, 100]]], dtype=torch.float32)  # 5, 8, 11, 0
    m = PCKh(head=(0, 1))  # head segment 20 px, alpha 0.5: threshold 10
    m.update([{"keypoints": pred}], _pose_batch(gt, vis, [[80, 30, 140, 120]]))
    assert m.compute() == {"pckh": pytest.approx(3 / 4)}
    # MPII: 0.6 * head-box diagonal = 0.6 * sqrt(2) * 30 = 25.5, threshold 12.7: all four
    m = PCKh()
    m.update([{"keypoints": pred}], _pose_batch(gt, vis, [[80, 30, 140, 120]], head_boxes=torch.tensor([[85.0, 30, 115, 60]])))
    assert m.compute()["pckh"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="head_boxes"):
        PCKh().update([{"keypoints": pred}], _pose_batch(gt, vis, [[80, 30, 140, 120]]))
