"""The subset the vision-and-language reproductions hold combinations out with: its samples and scenes agree."""
from __future__ import annotations

from paperzoo.data import ShapesDataset
from paperzoo.reproduce.clip import Only


def test_subset_scene_follows_its_indices() -> None:
    ds = ShapesDataset("val", size=6, image_size=16, kind="captioning", max_objects=2)
    sub = Only(ds, [4, 1])
    assert sub[0][1]["caption"] == ds.scene(4).caption == sub.scene(0).caption
    assert len(sub) == 2 and sub.classes == ds.classes
