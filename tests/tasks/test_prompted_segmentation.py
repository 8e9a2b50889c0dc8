"""CLIPSeg's prompted-segmentation task on the one engine: the `paperzoo train` path in-process for a few steps
(text and visual prompts), the IoU metric on a hand case, and a clear error for data without instances."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.tasks import get_task

TINY = dict(layers=2, extract_layers="[0,1]", width=32, heads=2, image_size=32, vocab_size=64, text_width=32,
            text_heads=2, text_layers=1, embed_dim=16, reduce_dim=8, mlp_dim=16)


def test_clipseg_trains_through_the_cli_path(tmp_path) -> None:
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    cfg = apply_overrides(TrainConfig(model="clipseg_rd64_refined", epochs=1, batch_size=4, optimizer="adamw"),
                          ["data.size=8", "data.val_size=4", "data.image_size=32", *[f"model_args.{k}={v}" for k, v in TINY.items()]])
    cfg.out = str(tmp_path)
    row = build_and_train(cfg, quiet=True).history[-1]
    assert 0 <= row["val_iou"] <= 1 and 0 <= row["val_pixel_acc"] <= 1


def test_visual_prompts_come_from_another_image_of_the_same_object() -> None:
    ds = ShapesDataset("train", size=16, image_size=32, kind="scene", max_objects=3)
    task = get_task("prompted-segmentation", image_prompts=1.0)
    images, ids, masks, support, use_image, phrases = task.collate([ds[i] for i in range(16)])
    assert masks.shape == (16, 32, 32) and ids.shape[0] == 16
    for i in torch.nonzero(use_image).flatten().tolist():  # a partner holds the same phrase, so its prompt is not ours
        assert not torch.equal(support[i], images[i])


def test_iou_metric_on_a_hand_case() -> None:
    ev = get_task("prompted-segmentation").evaluator()
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1  # 4 pixels
    logits = -torch.ones(1, 4, 4)
    logits[0, :2, :4] = 1  # 8 pixels predicted, 4 of them right
    ev.update(logits, (None, None, target))
    assert ev.compute() == {"iou": 0.5, "pixel_acc": 0.75}


def test_prompted_segmentation_needs_scenes() -> None:
    ds = ShapesDataset("val", size=2, image_size=16, kind="captioning")
    with pytest.raises(pz.PaperzooError, match="scene samples"):
        get_task("prompted-segmentation").collate([ds[0], ds[1]])
