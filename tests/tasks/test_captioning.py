"""The captioning task on the one engine: the `paperzoo train` path in-process for a few steps (BLEU/CIDEr from
beam-search captions), and a clear error for data without captions."""
from __future__ import annotations

import pytest

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.tasks import get_task


@pytest.mark.parametrize("model", ["show_and_tell", "show_attend_tell"])
def test_captioner_trains_through_the_cli_path(model: str, tmp_path) -> None:
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    cfg = apply_overrides(TrainConfig(model=model, epochs=1, batch_size=4),
                          ["data.size=8", "data.val_size=4", "data.image_size=32", "model_args.backbone=resnet20_cifar",
                           "model_args.embed_dim=16", "model_args.hidden_dim=16"])
    cfg.out = str(tmp_path)
    row = build_and_train(cfg, quiet=True).history[-1]
    assert {"val_bleu4", "val_cider"} <= set(row) and 0 <= row["val_bleu1"] <= 1


def test_captioning_needs_captions() -> None:
    ds = ShapesDataset("val", size=2, image_size=16, kind="segmentation")
    with pytest.raises(pz.PaperzooError, match="caption"):
        get_task("captioning").collate([ds[0], ds[1]])
