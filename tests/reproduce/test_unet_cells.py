"""The U-Net reproduction's scenes: the foreground and instance maps must be the union of the scene's masks (uint8
masks once indexed rows 0 and 1 instead, and the miniature learned two stripes)."""
import torch

from paperzoo.reproduce import unet
from paperzoo.reproduce._kit import Data


def test_cells_foreground_is_the_union_of_the_masks():
    scenes, _ = Data(kind="instances", image_size=32, train_size=3, test_size=1, preset="easy",
                     knobs={"min_objects": 2, "max_objects": 3}).splits()
    cells = unet.Cells(scenes, w0=10.0, sigma=2.0)
    for i in range(len(scenes)):
        _, target = scenes[i]
        masks = target["masks"].as_subclass(torch.Tensor).bool()
        _, fg, weights, inst = cells[i]
        assert torch.equal(fg.bool(), masks.any(0))
        assert set(inst.unique().tolist()) <= set(range(len(masks) + 1))
        assert torch.equal(inst > 0, masks.any(0))
        assert weights.shape == fg.shape
