"""Dense samples of the synthetic scenes as tv_tensors: every kind from one scene, targets that follow
transforms.v2 and RandAugment's geometric operations, and batching of images of different sizes."""
from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from paperzoo.data import KINDS, RandAugment, ShapesDataset
from paperzoo.data.randaugment import apply_op
from paperzoo.data.transforms import detection_train_transforms, pad_images, sanitize


def _boxes_of(masks: torch.Tensor) -> torch.Tensor:
    out = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        out.append(torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32))
    return torch.stack(out)


def test_every_kind_comes_from_the_same_scene() -> None:
    kw = dict(size=4, image_size=48, min_objects=2, max_objects=3)
    scene = ShapesDataset("val", kind="scene", **kw)
    _, full = scene[1]
    for kind in KINDS:
        ds = ShapesDataset("val", kind=kind, **kw)
        _, t = ds[1]
        if kind == "classification":
            assert t == full["label"] and ds.num_classes == 8
            continue
        assert ds.num_classes == 9 and ds.categories[0] == "__background__"
        for key in set(t) & set(full):
            a, b = t[key], full[key]
            assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), (kind, key)
    assert isinstance(full["boxes"], tv_tensors.BoundingBoxes) and full["boxes"].canvas_size == (48, 48)
    assert torch.equal(full["boxes"].as_subclass(torch.Tensor), _boxes_of(full["masks"]))  # boxes are the masks' extent
    assert full["labels"].min() >= 1 and full["keypoints"].shape[1:] == (8, 2)
    sem = full["mask"]
    for m, label in zip(full["masks"], full["labels"]):
        assert torch.all(sem[m.bool()] == label)


def test_detection_images_are_unnormalised_and_classification_normalised() -> None:
    det, cls = ShapesDataset("val", size=2, kind="detection"), ShapesDataset("val", size=2)
    x, _ = det[0]
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    y, _ = cls[0]
    torch.testing.assert_close(y, (x - 0.5) / 0.25)


def test_horizontal_flip_moves_boxes_masks_and_keypoints() -> None:
    ds = ShapesDataset("val", size=2, kind="scene", image_size=40, min_objects=2, max_objects=2)
    image, target = ds[0]
    flipped_image, flipped = v2.RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped["masks"], target["masks"].flip(-1))
    b = target["boxes"].as_subclass(torch.Tensor)
    assert torch.equal(flipped["boxes"].as_subclass(torch.Tensor), torch.stack([40 - b[:, 2], b[:, 1], 40 - b[:, 0], b[:, 3]], 1))
    assert torch.allclose(flipped["keypoints"][..., 0], 40 - target["keypoints"][..., 0], atol=1.0)  # continuous vs pixel index
    assert torch.equal(flipped["labels"], target["labels"])


def test_randaugment_rotation_moves_the_target_with_the_image() -> None:
    """A geometric RandAugment operation rotates the boxes (to the enclosing box of the rotated corners) and the
    masks exactly as the image; colour operations leave the target alone."""
    ds = ShapesDataset("val", size=3, kind="instances", image_size=48, scale=(0.3, 0.4), rotate=False, max_objects=1)
    image, target = ds[2]
    augment = RandAugment(1, 10, ops=("rotate",))
    torch.manual_seed(0)
    (_, s), = augment.sample()  # the draw the call below makes: which way it rotates
    torch.manual_seed(0)
    out_image, out = augment(image, target)
    rotated_mask = apply_op(target["masks"], "rotate", 10, s)
    assert torch.equal(out["masks"], rotated_mask)
    x8 = (image * 255).round().to(torch.uint8)
    torch.testing.assert_close(out_image, apply_op(x8, "rotate", 10, s).float() / 255)
    box, mask_box = out["boxes"][0], _boxes_of(out["masks"])[0]
    assert torch.all(box[:2] <= mask_box[:2] + 1) and torch.all(box[2:] >= mask_box[2:] - 1)  # encloses the object
    assert not torch.equal(box.as_subclass(torch.Tensor), target["boxes"][0].as_subclass(torch.Tensor))
    color = RandAugment(2, 10, ops=("solarize", "posterize"))(image, target)[1]
    assert torch.equal(color["boxes"], target["boxes"]) and torch.equal(color["masks"], target["masks"])


def test_sanitize_drops_objects_pushed_out_of_the_image() -> None:
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[2.0, 2, 10, 10], [30, 30, 60, 60], [-20, 0, -5, 8]]),
                                     format="XYXY", canvas_size=(40, 40))
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "iscrowd": torch.zeros(3, dtype=torch.int64),
              "area": torch.tensor([64.0, 900, 120])}
    out = sanitize(target)
    assert out["labels"].tolist() == [1, 2] and out["boxes"].as_subclass(torch.Tensor).tolist() == [[2, 2, 10, 10], [30, 30, 40, 40]]
    assert out["area"].tolist() == [64.0, 900.0]


def test_detection_augmentation_keeps_targets_consistent() -> None:
    ds = ShapesDataset("train", size=8, kind="instances", image_size=32, max_objects=3, transforms=detection_train_transforms())
    for i in range(8):
        torch.manual_seed(i)
        image, t = ds[i]
        assert torch.equal(t["boxes"].as_subclass(torch.Tensor), _boxes_of(t["masks"])) if len(t["masks"]) else True
        assert len(t["labels"]) == len(t["boxes"]) == len(t["masks"]) == len(t["iscrowd"])


def test_pad_images_batches_different_sizes() -> None:
    batch, sizes = pad_images([torch.ones(3, 5, 7), torch.ones(3, 9, 4)], size_divisible=8)
    assert batch.shape == (2, 3, 16, 8) and sizes == [(5, 7), (9, 4)]
    assert batch[0, :, :5, :7].eq(1).all() and batch[0, :, 5:].eq(0).all() and batch[1, :, :, 4:].eq(0).all()


@pytest.mark.parametrize("kind", ["detection", "instances"])
def test_empty_scenes_give_empty_targets(kind: str) -> None:
    """An image without objects has zero-row targets of the right shapes (what a detector must train on)."""
    ds = ShapesDataset("val", size=1, kind=kind, image_size=16, scale=(0.01, 0.02))
    _, t = ds[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    if kind == "instances":
        assert t["masks"].shape == (0, 16, 16)
