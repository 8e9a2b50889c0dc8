"""The scene-VQA task on the one engine (ViLBERT through the `paperzoo train` path), and its region inputs."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.tasks import get_task
from paperzoo.tasks.vqa import region_inputs

TINY = dict(vocab_size=64, hidden=16, layers=2, heads=2, intermediate=32, v_feature_dim=192, v_hidden=16, v_layers=1,
            v_heads=2, v_intermediate=32, bi_hidden=16, bi_heads=2, t_biattention_id="[1]", v_biattention_id="[0]",
            max_len=16)


def test_vilbert_trains_through_the_cli_path(tmp_path) -> None:
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    cfg = apply_overrides(TrainConfig(model="vilbert", epochs=1, batch_size=4, optimizer="adamw"),
                          ["data.size=8", "data.val_size=4", *[f"model_args.{k}={v}" for k, v in TINY.items()]])
    cfg.out = str(tmp_path)
    row = build_and_train(cfg, quiet=True).history[-1]
    assert 0 <= row["val_acc"] <= 1


def test_region_inputs_whole_image_first_and_padding_masked() -> None:
    images = torch.rand(2, 3, 16, 16)
    boxes = [torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([[0.0, 0, 8, 8], [8, 8, 16, 16]])]
    feats, locs, mask = region_inputs(images, boxes)
    assert feats.shape == (2, 3, 192) and mask.tolist() == [[True, True, False], [True, True, True]]
    assert torch.allclose(locs[0, 0], torch.tensor([0.0, 0, 1, 1, 1])) and torch.allclose(locs[1, 2], torch.tensor([0.5, 0.5, 1, 1, 0.25]))
    expected = (images[1, :, 8:, 8:].mean((1, 2)) - 0.5) / 0.25  # pixels normalised before pooling
    assert torch.allclose(feats[1, 2].reshape(3, 8, 8).mean((1, 2)), expected, atol=0.2)


def test_vqa_needs_scenes() -> None:
    ds = ShapesDataset("val", size=2, image_size=16, kind="captioning")
    with pytest.raises(pz.PaperzooError, match="scene samples"):
        get_task("vqa").collate([ds[0], ds[1]])
