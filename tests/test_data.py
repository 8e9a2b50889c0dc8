"""Built-in data: the synthetic scene generator, digits, and user image folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paperzoo.data import DigitsDataset, ImageFolderDataset, ShapesDataset, get_dataset, make_config, render_scene
from paperzoo.data.shapes import CLASSES, MAX_KEYPOINTS
from paperzoo.errors import ConfigError, DataError, UnknownNameError


def test_scene_is_deterministic_and_seeds_differ() -> None:
    cfg = make_config("hard", min_objects=2, max_objects=4)
    a, b, c = render_scene(cfg, 7), render_scene(cfg, 7), render_scene(cfg, 8)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert not np.array_equal(a.image, c.image)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), preset=st.sampled_from(["easy", "medium", "hard"]), n=st.integers(1, 4))
def test_annotations_agree_with_each_other(seed: int, preset: str, n: int) -> None:
    s = render_scene(make_config(preset, min_objects=1, max_objects=n, image_size=48), seed)
    k = len(s.labels)
    assert s.image.shape == (48, 48, 3) and s.image.dtype == np.uint8
    assert s.masks.shape == (k, 48, 48) and s.boxes.shape == (k, 4) and s.keypoints.shape == (k, MAX_KEYPOINTS, 3)
    assert 1 <= k <= n
    assert 0 <= s.alpha.min() and s.alpha.max() <= 1
    for i in range(k):
        ys, xs = np.nonzero(s.masks[i])
        assert len(xs) > 0, "every object keeps a visible part"
        assert tuple(s.boxes[i]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert (s.alpha[s.masks[i]] > 0.5).all(), "visible object pixels are foreground in the matte"
        assert CLASSES[s.labels[i]] in s.caption
        n_kp = int((s.keypoints[i, :, 2] > 0).sum())
        assert n_kp >= 3
    assert not (s.masks.sum(0) > 1).any(), "visible masks do not overlap"
    areas = s.masks.reshape(k, -1).sum(1)
    assert s.label == s.labels[int(np.argmax(areas))]


def test_difficulty_knobs_change_the_images() -> None:
    easy = render_scene(make_config("easy"), 3).image.astype(float)
    hard = render_scene(make_config("easy", noise=0.2), 3).image.astype(float)
    assert np.abs(easy - hard).mean() > 10
    flat = render_scene(make_config("easy", image_size=32), 1)
    corners = flat.image[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == corners[0]).all(), "easy: flat background"


def _hidden_corner_fraction(occlusion: float) -> float:
    vis = []
    for seed in range(20):
        s = render_scene(make_config("easy", min_objects=3, max_objects=3, occlusion=occlusion, scale=(0.4, 0.6)), seed)
        kp = s.keypoints[..., 2]
        vis.append(kp[kp > 0])
    v = np.concatenate(vis)
    return float((v == 1).mean())


def test_occlusion_knob() -> None:
    assert _hidden_corner_fraction(0.0) < 0.05  # objects kept apart: corners visible
    assert _hidden_corner_fraction(0.6) > _hidden_corner_fraction(0.0) + 0.05


def test_bad_knobs_are_clear() -> None:
    with pytest.raises(UnknownNameError, match="unknown shapes option 'noize'"):
        make_config("medium", noize=0.1)
    with pytest.raises(UnknownNameError, match="unknown shapes preset"):
        make_config("extreme")
    with pytest.raises(ConfigError):
        make_config("medium", min_objects=3, max_objects=2)
    with pytest.raises(UnknownNameError, match="unknown shape class 'hexagonn'"):
        make_config("medium", classes=("circle", "hexagonn"))


def test_shapes_dataset_interface() -> None:
    ds = ShapesDataset("train", size=20, image_size=32)
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert ds.num_classes == len(ds.classes) == 8 and ds.in_chans == 3 and ds.image_size == (32, 32)
    assert torch.equal(ds[3][0], ShapesDataset("train", size=20, image_size=32, cache=False)[3][0])
    assert not torch.equal(ds[3][0], ShapesDataset("val", size=20, image_size=32)[3][0])
    det = ShapesDataset("val", size=4, kind="detection", max_objects=3)
    x, t = det[0]
    assert set(t) == {"boxes", "labels", "image_id", "area", "iscrowd"} and t["boxes"].dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1 and det.num_classes == 9  # background included
    assert int(t["labels"].min()) >= 1
    _, full = ShapesDataset("val", size=4, kind="scene")[1]
    assert isinstance(full["caption"], str) and full["alpha"].shape == (1, 64, 64)
    assert {"masks", "keypoints", "visibility", "mask"} <= set(full)
    with pytest.raises(IndexError):
        ds.scene(20)


def test_digits() -> None:
    parts = {s: DigitsDataset(s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 1797
    x, y = parts["train"][0]
    assert x.shape == (1, 32, 32) and 0 <= y < 10
    assert abs(float(parts["train"].images.mean())) < 1e-4
    native = DigitsDataset("test", image_size=8)
    assert native[0][0].shape == (1, 8, 8)


def _write_folder(root: Path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")


def test_image_folder(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    train, val = ImageFolderDataset(tmp_path, "train", image_size=16), ImageFolderDataset(tmp_path, "val", image_size=16)
    assert len(train) + len(val) == 12 and train.classes == ["cat", "dog"]
    x, y = train[0]
    assert x.shape == (3, 16, 16) and y in (0, 1)
    assert isinstance(get_dataset(str(tmp_path), "train", image_size=16), ImageFolderDataset)


def test_corrupt_image_is_named_or_skipped(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train")
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"\x89PNG broken")
    ds = ImageFolderDataset(tmp_path, "train", image_size=16)
    bad = next(i for i, (p, _) in enumerate(ds.folder.samples) if p.endswith("cat/0.png"))
    with pytest.raises(DataError, match=r"cannot read image .*cat/0\.png"):
        ds[bad]
    skipping = ImageFolderDataset(tmp_path, "train", image_size=16, on_error="skip")
    with pytest.warns(UserWarning, match="cat/0.png"):
        x, _ = skipping[bad]
    assert x.shape == (3, 16, 16)


def test_dataset_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean shapes"):
        get_dataset("shape")
    with pytest.raises(DataError, match="image folder not found"):
        get_dataset("/no/such/folder")
