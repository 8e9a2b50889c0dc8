"""MeanIoU against a confusion matrix worked out by hand and against sklearn's confusion_matrix."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from paperzoo.errors import DataError
from paperzoo.metrics import MeanIoU


def test_hand_computed_confusion_matrix():
    target = torch.tensor([[[0, 0, 1, 1],
                            [0, 2, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1],
                          [2, 2, 0, 0]]])
    m = MeanIoU(3, class_names=["bg", "cat", "dog"])
    m.update(pred, (None, target))
    # rows true, columns predicted; the 255 pixel is ignored
    expected = torch.tensor([[1, 1, 1],
                             [0, 2, 0],
                             [1, 0, 1]])
    assert torch.equal(m.confusion, expected)
    r = m.compute()
    # IoU_k = C_kk / (row_k + col_k - C_kk): bg 1/(3+2-1), cat 2/(2+3-2), dog 1/(2+2-1)
    assert r["iou_bg"] == pytest.approx(1 / 4) and r["iou_cat"] == pytest.approx(2 / 3)
    assert r["iou_dog"] == pytest.approx(1 / 3)
    assert r["miou"] == pytest.approx((1 / 4 + 2 / 3 + 1 / 3) / 3)
    assert r["pixel_acc"] == pytest.approx(4 / 7)
    assert r["mean_acc"] == pytest.approx((1 / 3 + 1 + 1 / 2) / 3)


def test_matches_sklearn_over_batches_and_input_forms():
    g = torch.Generator().manual_seed(0)
    k = 5
    m = MeanIoU(k, ignore_index=255)
    all_t, all_p = [], []
    for step in range(3):
        target = torch.randint(0, k, (2, 12, 10), generator=g)
        target[:, 0, :3] = 255
        logits = torch.randn(2, k, 12, 10, generator=g)
        pred = logits.argmax(1)
        batch = (torch.zeros(2, 3, 12, 10), target)
        if step == 0:
            m.update(logits, batch)  # logits
        elif step == 1:
            m.update({"out": logits}, (None, [{"semantic": t} for t in target]))  # torchvision's dict
        else:
            m.update([p for p in pred], (None, list(target)))  # per-image class maps
        keep = target != 255
        all_t.append(target[keep]), all_p.append(pred[keep])
    t, p = torch.cat(all_t).numpy(), torch.cat(all_p).numpy()
    ref = confusion_matrix(t, p, labels=list(range(k)))
    assert np.array_equal(m.confusion.numpy(), ref)
    tp = np.diag(ref)
    iou = tp / (ref.sum(0) + ref.sum(1) - tp)
    r = m.compute()
    assert r["miou"] == pytest.approx(iou.mean()) and r["pixel_acc"] == pytest.approx(tp.sum() / ref.sum())


def test_low_resolution_logits_are_resized_to_the_target():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :, 4:] = 1
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = torch.tensor([-5.0, 5.0])  # class 1 on the right half at 2x2 (bilinear: changes sign mid-way)
    m = MeanIoU(2)
    m.update(logits, (None, target))
    assert m.compute()["miou"] == pytest.approx(1.0)


def test_absent_class_is_nan_and_left_out_of_the_mean():
    m = MeanIoU(3)
    m.update(torch.tensor([[[0, 1]]]), (None, torch.tensor([[[0, 1]]])))
    r = m.compute()
    assert math.isnan(r["iou_2"]) and r["miou"] == pytest.approx(1.0)


def test_target_class_out_of_range_is_a_data_error():
    m = MeanIoU(3)
    with pytest.raises(DataError, match="target class 7 outside 0..2"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), (None, torch.full((1, 2, 2), 7)))
