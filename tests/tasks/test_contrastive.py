"""The contrastive (CLIP) task on the one engine: `paperzoo train` path in-process for a few steps, retrieval
metrics, and a clear error for data without captions."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.tasks import get_task

TINY = dict(layers=1, text_layers=1, width=64, text_width=64, text_heads=2, vocab_size=64, patch_size=8, image_size=32,
            embed_dim=32)


def test_clip_trains_through_the_cli_path(tmp_path) -> None:
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    cfg = apply_overrides(TrainConfig(model="clip_vit_b32", epochs=1, batch_size=8, optimizer="adamw", lr=1e-3),
                          ["data.size=16", "data.val_size=8", *[f"model_args.{k}={v}" for k, v in TINY.items()]])
    cfg.out = str(tmp_path)
    trainer = build_and_train(cfg, quiet=True)
    row = trainer.history[-1]
    assert 0 <= row["val_i2t_r1"] <= 1 and torch.isfinite(torch.tensor(row["train_loss"]))


def test_contrastive_task_needs_captions() -> None:
    task = get_task("contrastive")
    ds = ShapesDataset("val", size=2, image_size=16, kind="segmentation")
    with pytest.raises(pz.PaperzooError, match="captions"):
        task.collate([ds[0], ds[1]])


def test_retrieval_counts_identical_captions_as_correct() -> None:
    ev = get_task("contrastive").evaluator()
    img = torch.eye(3)
    txt = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])  # image 0 retrieves caption 1, which has the same text
    ev.update((img, txt), (None, None, ["a red star", "a red star", "a blue circle"]))
    assert ev.compute() == {"i2t_r1": 1.0, "t2i_r1": 1.0}
