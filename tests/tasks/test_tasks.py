"""The task contract end to end: each task's batching, loss, predictions and metrics through the one Trainer."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.tasks import SumEvaluator, get_task, split_batch, task_names
from paperzoo.train import TrainConfig, Trainer, evaluate


class TinySegmenter(nn.Module):
    """Three convolutions: enough to learn the scenes' foreground classes a little."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, num_classes, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.body(x)}


def test_registered_tasks() -> None:
    assert {"classification", "detection", "instances", "keypoints", "segmentation"} <= set(task_names())
    with pytest.raises(pz.PaperzooError, match="unknown task 'detectoin'.*did you mean detection"):
        get_task("detectoin")


def test_split_batch_into_micro_batches() -> None:
    images, targets = torch.arange(6.0).view(6, 1), [{"i": i} for i in range(6)]
    parts = split_batch((images, targets), 3)
    assert [p[0].flatten().tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    assert [[t["i"] for t in p[1]] for p in parts] == [[0, 1], [2, 3], [4, 5]]


def test_sum_evaluator_divides_by_count_and_keeps_totals() -> None:
    class Counting(SumEvaluator):
        totals = ("n",)

        def update(self, predictions, batch):
            self.add("hits", predictions.sum())
            self.add("n", len(predictions))
            self.count += len(predictions)

    ev = Counting()
    ev.update(torch.tensor([1, 0, 1]), None)
    ev.update(torch.tensor([1]), None)
    assert ev.compute() == {"hits": 0.75, "n": 4.0}


def test_segmentation_collate_pads_images_and_ignores_padding() -> None:
    task = get_task("segmentation", num_classes=9)
    a = (torch.ones(3, 4, 6), {"mask": torch.ones(4, 6, dtype=torch.int64)})
    b = (torch.ones(3, 5, 3), {"mask": torch.full((5, 3), 2, dtype=torch.int64)})
    images, masks = task.collate([a, b])
    assert images.shape == (2, 3, 5, 6) and masks.shape == (2, 5, 6)
    assert int(masks[0, 4, 0]) == 255 and int(masks[1, 0, 5]) == 255 and float(images[0, 0, 4, 0]) == 0.0
    assert int(masks[1, 4, 2]) == 2 and int(masks[0, 3, 5]) == 1


def test_segmentation_trains_and_reports_miou(tmp_path) -> None:
    """A tiny segmenter on the scenes' class maps: the loss falls and evaluation reports mean IoU, which equals the
    metric computed by hand from the predictions' confusion matrix."""
    kw = dict(kind="segmentation", image_size=24, scale=(0.5, 0.9))
    train, val = ShapesDataset("train", size=64, **kw), ShapesDataset("val", size=16, **kw)
    torch.manual_seed(0)
    model = TinySegmenter(train.num_classes)
    cfg = TrainConfig(epochs=3, batch_size=16, lr=0.05, log_every=10**9)
    t = Trainer(model, train, val, cfg, task=get_task("segmentation", num_classes=train.num_classes), quiet=True)
    history = t.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    metrics = t.evaluate()
    assert {"miou", "pixel_acc"} <= set(metrics)
    # by hand: IoU per class over the validation pixels
    task = t.task
    batch = task.collate([val[i] for i in range(len(val))])
    pred = task.predict(model.eval(), batch).flatten()
    true = batch[1].flatten()
    ious = []
    for c in range(train.num_classes):
        inter = ((pred == c) & (true == c)).sum().item()
        union = ((pred == c) | (true == c)).sum().item()
        if union:
            ious.append(inter / union)
    assert metrics["miou"] == pytest.approx(sum(ious) / len(ious), rel=1e-6)
    assert metrics["pixel_acc"] == pytest.approx((pred == true).float().mean().item(), rel=1e-6)


def test_classification_evaluate_is_accuracy_and_mean_loss(tiny_shapes) -> None:
    train, val = tiny_shapes
    model = pz.create_model("resnet20_cifar", num_classes=8).eval()
    metrics = evaluate(model, val, batch_size=7)  # batches that do not divide the split
    xs = torch.stack([val[i][0] for i in range(len(val))])
    ys = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = model(xs)
    assert metrics["acc"] == pytest.approx((logits.argmax(1) == ys).float().mean().item())
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, ys).item(), rel=1e-5)
    assert metrics["top5"] == pytest.approx((logits.topk(5, 1).indices == ys[:, None]).any(1).float().mean().item())


def _tiny_rcnn(kind: str, num_classes: int):
    """torchvision's Mask / Keypoint R-CNN on a two-conv backbone (a test-only model with torchvision's call
    convention; the tasks are what is tested here)."""
    from torchvision.models.detection import KeypointRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1))
    backbone.out_channels = 32
    kw = dict(min_size=48, max_size=48, rpn_pre_nms_top_n_train=100, rpn_post_nms_top_n_train=50,
              rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_batch_size_per_image=32,
              rpn_anchor_generator=AnchorGenerator(((8, 16, 32),), ((0.5, 1.0, 2.0),)),
              box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2))
    if kind == "instances":
        return MaskRCNN(backbone, num_classes, mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), **kw)
    return KeypointRCNN(backbone, num_classes, num_keypoints=8, keypoint_roi_pool=MultiScaleRoIAlign(["0"], 14, 2), **kw)


class _Detect(nn.Module):
    """Adds ``detect`` to a torchvision detector (eval mode, no gradients), as every paperzoo detector has it."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images, targets=None):
        return self.inner(images, targets)

    @torch.no_grad()
    def detect(self, images):
        was = self.inner.training
        self.inner.eval()
        out = self.inner(images)
        self.inner.train(was)
        return out


@pytest.mark.parametrize("kind", ["instances", "keypoints"])
def test_instance_and_keypoint_tasks_train_and_report_coco_ap(kind: str) -> None:
    """The instances task feeds masks to the model and scores mask AP; the keypoints task feeds (x, y, visibility)
    keypoints and scores keypoint AP with the scenes' OKS sigmas; both train a step without NaN, empty scenes
    included."""
    kw = dict(kind=kind, image_size=48, max_objects=2, scale=(0.3, 0.6))
    train, val = ShapesDataset("train", size=8, **kw), ShapesDataset("val", size=4, **kw)
    torch.manual_seed(0)
    model = _Detect(_tiny_rcnn(kind, train.num_classes))
    task = get_task(kind) if kind == "instances" else get_task(kind, sigmas=train.keypoint_sigmas)
    t = Trainer(model, train, val, TrainConfig(epochs=1, batch_size=4, lr=0.01, log_every=10**9), task=task, quiet=True)
    history = t.fit()
    assert torch.isfinite(torch.tensor(history[-1]["train_loss"]))
    keys = {"instances": {"val_map", "val_mask_map", "val_mask_map_50"}, "keypoints": {"val_kp_map", "val_kp_map_50"}}[kind]
    assert keys <= set(history[-1])
