"""CocoDataset reads users' COCO json files into the dense sample format; export_coco writes it back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors
from torchvision.transforms import v2

from paperzoo.data.coco import CocoDataset, export_coco
from paperzoo.data.transforms import SanitizeInstances
from paperzoo.errors import DataError

H, W = 24, 32


def _png(path: Path, seed: int, h: int = H, w: int = W) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def _crowd_rle() -> dict:
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    m[2:6, 20:30] = 1
    rle = mask_utils.encode(m)
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written from its definition: run lengths of the column-major pixels,
    starting with a run of zeros."""
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return {"size": list(m.shape), "counts": ([0] if flat[0] else []) + runs}


def _instances(tmp: Path) -> dict:
    """Two images (the second with no objects), category ids 3 and 7 (labels 1 and 2), a polygon square and a
    crowd RLE."""
    _png(tmp / "img" / "a.png", 0)
    _png(tmp / "img" / "b.png", 1)
    return {
        "images": [{"id": 10, "file_name": "img/a.png", "height": H, "width": W},
                   {"id": 11, "file_name": "img/b.png", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 6, 8, 10], "area": 80.0, "iscrowd": 0,
             "segmentation": [[4, 6, 12, 6, 12, 16, 4, 16]]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [20, 2, 10, 4], "area": 40.0, "iscrowd": 1,
             "segmentation": _crowd_rle()},
        ],
    }


def _write(tmp: Path, data: dict, name: str = "annotations.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(data))
    return path


def test_instances_file(tmp_path):
    ds = CocoDataset(_write(tmp_path, _instances(tmp_path)))
    assert ds.kind == "instances" and len(ds) == 2 and ds.image_ids == [10, 11]
    assert ds.categories == ["__background__", "cat", "dog"] and ds.num_classes == 3
    assert ds.category_ids == {1: 3, 2: 7} and ds.in_chans == 3 and ds.image_size == (H, W)
    image, t = ds[0]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and image.shape == (3, H, W)
    pixels = np.array(Image.open(tmp_path / "img" / "a.png"))
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    assert isinstance(t["boxes"], tv_tensors.BoundingBoxes) and t["boxes"].format.name == "XYXY"
    assert tuple(t["boxes"].canvas_size) == (H, W)
    assert t["boxes"].tolist() == [[4, 6, 12, 16], [20, 2, 30, 6]]
    assert t["labels"].tolist() == [2, 1] and t["labels"].dtype == torch.int64
    assert t["iscrowd"].tolist() == [0, 1] and t["area"].tolist() == [80.0, 40.0] and t["image_id"] == 10
    m = t["masks"]
    assert isinstance(m, tv_tensors.Mask) and m.shape == (2, H, W) and m.dtype == torch.uint8
    expected_crowd = torch.zeros(H, W, dtype=torch.uint8)
    expected_crowd[2:6, 20:30] = 1
    assert torch.equal(m[1], expected_crowd)
    ys, xs = torch.nonzero(m[0], as_tuple=True)  # the polygon square covers pixels 4..11 x 6..15 (COCO's raster)
    assert (int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())) == (4, 11, 6, 15)
    assert int(m[0].sum()) == 80
    # COCO's crowd annotations carry uncompressed RLE (counts as a list)
    data = _instances(tmp_path)
    data["annotations"][1]["segmentation"] = _uncompressed_rle(expected_crowd.numpy())
    assert torch.equal(CocoDataset(_write(tmp_path, data, "u.json"))[0][1]["masks"][1], expected_crowd)
    _, empty = ds[1]  # an image without objects: N = 0 tensors of the right shapes
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["masks"].shape == (0, H, W)
    assert empty["area"].shape == (0,) and empty["iscrowd"].shape == (0,)


def _keypoints(tmp: Path) -> dict:
    _png(tmp / "p.png", 2)
    return {
        "images": [{"id": 1, "file_name": "p.png", "height": H, "width": W}],
        "categories": [{"id": 1, "name": "person", "keypoints": ["head", "left", "right"],
                        "skeleton": [[1, 2], [1, 3]]}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20], "area": 300.0, "iscrowd": 0,
             "num_keypoints": 2, "keypoints": [10, 4, 2, 5, 15, 1, 0, 0, 0],
             "segmentation": [[2, 2, 22, 2, 22, 22, 2, 22]]},
        ],
    }


def test_keypoints_file(tmp_path):
    ds = CocoDataset(_write(tmp_path, _keypoints(tmp_path)))
    assert ds.kind == "keypoints" and ds.keypoint_names == ["head", "left", "right"]
    assert ds.skeleton == [(0, 1), (0, 2)]
    _, t = ds[0]
    assert isinstance(t["keypoints"], tv_tensors.KeyPoints) and t["keypoints"].shape == (1, 3, 2)
    assert tuple(t["keypoints"].canvas_size) == (H, W) and t["keypoints"].dtype == torch.float32
    assert t["keypoints"].tolist() == [[[10, 4], [5, 15], [0, 0]]]
    assert t["visibility"].tolist() == [[2, 1, 0]] and t["visibility"].dtype == torch.int64
    assert "masks" not in t
    assert CocoDataset(tmp_path / "annotations.json", masks=True)[0][1]["masks"].shape == (1, H, W)
    # the same file read as instances: boxes and masks, no keypoints
    inst = CocoDataset(tmp_path / "annotations.json", kind="instances")
    assert "keypoints" not in inst[0][1] and inst[0][1]["masks"].shape == (1, H, W)


def test_captions_file(tmp_path):
    _png(tmp_path / "c.png", 3)
    data = {"images": [{"id": 4, "file_name": "c.png", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 4, "caption": "a cat"}, {"id": 2, "image_id": 4, "caption": "a pet"}]}
    ds = CocoDataset(_write(tmp_path, data))
    assert ds.kind == "captions"
    _, t = ds[0]
    assert t == {"captions": ["a cat", "a pet"], "image_id": 4}


def test_split_is_seeded_and_disjoint(tmp_path):
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    for k in range(20):
        _png(tmp_path / f"{k}.png", k, 8, 8)
        data["images"].append({"id": 100 + k, "file_name": f"{k}.png", "height": 8, "width": 8})
    path = _write(tmp_path, data)
    train, val = CocoDataset(path, split="train", val_fraction=0.25), CocoDataset(path, split="val", val_fraction=0.25)
    assert len(val) == 5 and len(train) == 15
    assert sorted(train.image_ids + val.image_ids) == list(range(100, 120))
    assert CocoDataset(path, split="val", val_fraction=0.25).image_ids == val.image_ids  # fixed
    assert CocoDataset(path, split="val", val_fraction=0.25, seed=1).image_ids != val.image_ids
    assert len(CocoDataset(path, split="all")) == 20


# ---------------------------------------------------------------------- bad input: one line naming the culprit
def _bad(tmp: Path, case: str) -> tuple[Path, str]:
    data = _instances(tmp)
    anns, images = data["annotations"], data["images"]
    if case == "missing json":
        return tmp / "nope.json", "nope.json"
    if case == "truncated json":
        path = tmp / "annotations.json"
        path.write_text(json.dumps(data)[:57])
        return path, "line 1, column 58"
    if case == "not json":
        path = tmp / "annotations.json"
        path.write_text('{"images": [],\n  "annotations": [,]}')
        return path, "line 2, column 19"
    if case == "missing key":
        del data["annotations"]
        return _write(tmp, data), "'annotations'"
    if case == "missing categories":
        del data["categories"]
        return _write(tmp, data), "'categories'"
    if case == "missing image":
        images[1]["file_name"] = "img/gone.png"
        return _write(tmp, data), "img/gone.png (id 11)"
    if case == "empty image":
        (tmp / "img" / "b.png").write_bytes(b"")
        return _write(tmp, data), "img/b.png (id 11)"
    if case == "not an image":
        (tmp / "img" / "b.png").write_text("hello, I am text")
        return _write(tmp, data), "img/b.png (id 11)"
    if case == "wrong image size":
        images[1]["width"] = W + 1
        return _write(tmp, data), "img/b.png (id 11)"
    if case == "zero-width box":
        anns[1]["bbox"] = [20, 2, 0, 4]
        return _write(tmp, data), "annotation 2"
    if case == "negative height":
        anns[0]["bbox"] = [4, 6, 8, -1]
        return _write(tmp, data), "annotation 1"
    if case == "unknown category":
        anns[1]["category_id"] = 99
        return _write(tmp, data), "annotation 2: category id 99"
    if case == "unknown image id":
        anns[0]["image_id"] = 12
        return _write(tmp, data), "annotation 1: image id 12"
    if case == "duplicate image id":
        images[1]["id"] = 10
        return _write(tmp, data), "duplicate image id 10"
    if case == "duplicate annotation id":
        anns[1]["id"] = 1
        return _write(tmp, data), "duplicate annotation id 1"
    if case == "bad segmentation":
        anns[0]["segmentation"] = "square"
        return _write(tmp, data), "annotation 1"
    raise AssertionError(case)


BAD_CASES = ["missing json", "truncated json", "not json", "missing key", "missing categories", "missing image",
             "empty image", "not an image", "wrong image size", "zero-width box", "negative height",
             "unknown category", "unknown image id", "duplicate image id", "duplicate annotation id",
             "bad segmentation"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_raises_data_error_naming_the_culprit(tmp_path, case):
    path, culprit = _bad(tmp_path, case)
    with pytest.raises(DataError) as info:
        CocoDataset(path)
    msg = str(info.value)
    assert culprit in msg and "\n" not in msg
    if case != "missing json":
        assert "annotations.json" in msg


def test_bad_keypoints_raise(tmp_path):
    data = _keypoints(tmp_path)
    data["annotations"][0]["keypoints"] = [10, 4, 2]
    with pytest.raises(DataError, match="annotation 5: 'keypoints' must be 9 numbers"):
        CocoDataset(_write(tmp_path, data))
    data = _keypoints(tmp_path)
    data["categories"][0]["skeleton"] = [[0, 1]]
    with pytest.raises(DataError, match=r"skeleton entry \[0, 1\]"):
        CocoDataset(_write(tmp_path, data))


def test_decode_failure_at_getitem_names_the_file(tmp_path):
    data = _instances(tmp_path)
    png = tmp_path / "img" / "a.png"
    png.write_bytes(png.read_bytes()[:120])  # a valid header, then the pixel data is cut short
    ds = CocoDataset(_write(tmp_path, data))  # the header check passes: construction does not decode
    with pytest.raises(DataError, match=r"cannot decode image img/a\.png \(id 10\)"):
        ds[0]


# ---------------------------------------------------------------------- transforms v2 move everything together
def _scene() -> tuple[tv_tensors.Image, dict]:
    """Three rectangles; each instance's keypoints are its corner pixels, so each must stay on its mask."""
    h, w = 48, 64
    rects = [(4, 6, 20, 30), (30, 10, 60, 22), (40, 30, 56, 46)]  # x0, y0, x1, y1 (exclusive)
    masks = torch.zeros(len(rects), h, w, dtype=torch.uint8)
    kps, image = [], torch.rand(3, h, w)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        masks[k, y0:y1, x0:x1] = 1
        kps.append([[x0, y0], [x1 - 1, y0], [x0, y1 - 1], [x1 - 1, y1 - 1]])
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(rects, dtype=torch.float32), format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor([1, 2, 3]),
        "masks": tv_tensors.Mask(masks),
        "keypoints": tv_tensors.KeyPoints(torch.tensor(kps, dtype=torch.float32), canvas_size=(h, w)),
        "visibility": torch.tensor([[2, 2, 1, 2], [2, 0, 2, 2], [1, 2, 2, 2]]),
        "image_id": 7,
        "area": torch.tensor([float((x1 - x0) * (y1 - y0)) for x0, y0, x1, y1 in rects]),
        "iscrowd": torch.tensor([0, 1, 0]),
    }
    return tv_tensors.Image(image), target


def _check_together(image, t, tol: float = 1.0) -> None:
    n = len(t["boxes"])
    assert t["labels"].shape == (n,) and t["masks"].shape[0] == n and t["keypoints"].shape[:2] == (n, 4)
    assert t["visibility"].shape == (n, 4) and t["area"].shape == (n,) and t["iscrowd"].shape == (n,)
    h, w = image.shape[-2:]
    assert tuple(t["boxes"].canvas_size) == (h, w) == tuple(t["keypoints"].canvas_size) == tuple(t["masks"].shape[-2:])
    for k in range(n):
        ys, xs = torch.nonzero(t["masks"][k], as_tuple=True)
        extent = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        assert torch.allclose(t["boxes"][k].as_subclass(torch.Tensor), extent, atol=tol), (k, t["boxes"][k], extent)
        box = t["boxes"][k]
        for p, v in zip(t["keypoints"][k], t["visibility"][k]):
            if v > 0:
                assert box[0] - tol <= p[0] <= box[2] + tol and box[1] - tol <= p[1] <= box[3] + tol


def test_flip_moves_boxes_masks_keypoints_together():
    image, target = _scene()
    out_image, out = v2.RandomHorizontalFlip(p=1)(image, target)
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out["masks"], target["masks"].flip(-1))
    b = target["boxes"]
    assert torch.equal(out["boxes"].as_subclass(torch.Tensor), torch.stack([64 - b[:, 2], b[:, 1], 64 - b[:, 0], b[:, 3]], 1))
    kp = out["keypoints"].long()
    for k in range(3):  # every flipped corner pixel is still a pixel of its own flipped mask
        assert out["masks"][k][kp[k, :, 1], kp[k, :, 0]].all()
    assert torch.equal(out["visibility"], target["visibility"]) and out["image_id"] == 7
    _check_together(out_image, out, tol=0.0)


def test_resize_moves_boxes_masks_keypoints_together():
    image, target = _scene()
    out_image, out = v2.Resize((96, 80))(image, target)
    assert out_image.shape[-2:] == (96, 80)
    scale = torch.tensor([80 / 64, 96 / 48, 80 / 64, 96 / 48])
    assert torch.allclose(out["boxes"].as_subclass(torch.Tensor), target["boxes"] * scale)
    assert torch.allclose(out["keypoints"].as_subclass(torch.Tensor), target["keypoints"] * scale[:2])
    _check_together(out_image, out, tol=1.0)


def test_crop_and_sanitize_keep_instances_aligned():
    image, target = _scene()
    # deterministic: a 24x24 centre crop (top 12, left 20) loses the first rectangle entirely
    out_image, out = v2.Compose([v2.CenterCrop(24), SanitizeInstances()])(image, target)
    assert out["labels"].tolist() == [2, 3] and out["iscrowd"].tolist() == [1, 0]
    assert out["area"].tolist() == target["area"][1:].tolist()
    assert torch.equal(out["keypoints"].as_subclass(torch.Tensor), target["keypoints"][1:] - torch.tensor([20.0, 12.0]))
    assert isinstance(out["keypoints"], tv_tensors.KeyPoints) and isinstance(out["masks"], tv_tensors.Mask)
    inside = ((out["keypoints"] >= 0) & (out["keypoints"] < 24)).all(-1)
    assert torch.equal(out["visibility"], torch.where(inside, target["visibility"][1:], 0))  # cropped off: 0
    assert (out["visibility"] == 0).any()
    ys, xs = torch.nonzero(out["masks"][0], as_tuple=True)
    assert (int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1) == (10, 24, 0, 10)
    assert out["boxes"][0].tolist() == [10, 0, 24, 10]
    # RandomIoUCrop + SanitizeInstances: whatever survives stays consistent across every field
    crop = v2.Compose([v2.RandomIoUCrop(), SanitizeInstances()])
    kept = set()
    for seed in range(12):
        torch.manual_seed(seed)
        ci, c = crop(*_scene())
        _check_together(ci, c, tol=1.0)
        for k, lab in enumerate(c["labels"].tolist()):
            assert c["iscrowd"][k] == target["iscrowd"][lab - 1]
            assert c["area"][k] == target["area"][lab - 1]
        kept.add(len(c["labels"]))
    assert len(kept) > 1  # some crops did drop instances


# ---------------------------------------------------------------------- export_coco round trip
class _Dense(torch.utils.data.Dataset):
    categories = ["__background__", "ring", "bar"]

    def __init__(self, with_keypoints: bool = False) -> None:
        self.samples = []
        g = torch.Generator().manual_seed(0)
        for i, n in enumerate([2, 0, 3]):
            h, w = 20 + 4 * i, 28
            image = torch.randint(0, 256, (3, h, w), generator=g).float() / 255  # quantised: PNG is lossless
            yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            masks, boxes = [], []
            for k in range(n):
                cx, cy, r = 6 + 7 * k, 8 + k, 3 + k
                masks.append((((xx - cx) ** 2 + (yy - cy) ** 2) <= r * r).to(torch.uint8))  # a drawn disk
                boxes.append([cx - r, cy - r, cx + r + 1, cy + r + 1.5])
            t = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                                                   format="XYXY", canvas_size=(h, w)),
                 "labels": torch.tensor([1 + k % 2 for k in range(n)], dtype=torch.int64),
                 "masks": tv_tensors.Mask(torch.stack(masks) if n else torch.zeros(0, h, w, dtype=torch.uint8)),
                 "image_id": 40 + i,
                 "area": torch.tensor([float(m.sum()) for m in masks], dtype=torch.float32),
                 "iscrowd": torch.tensor([0] * n, dtype=torch.int64)}
            if with_keypoints:
                kp = torch.randint(0, 20, (n, 2, 2), generator=g).float() + 0.5
                vis = torch.tensor([[2, 0], [1, 2], [0, 0]][:n], dtype=torch.int64).reshape(n, 2)
                t["keypoints"] = tv_tensors.KeyPoints(torch.where(vis[..., None] > 0, kp, 0.0), canvas_size=(h, w))
                t["visibility"] = vis
            self.samples.append((tv_tensors.Image(image), t))

    keypoint_names = ["tip", "tail"]
    skeleton = [(0, 1)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def _assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b), (set(a), set(b))
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor):
            assert type(x) is type(y) and x.dtype == y.dtype and x.shape == y.shape, key
            assert torch.allclose(x.float(), y.float(), atol=1e-5), key
            if hasattr(x, "canvas_size"):
                assert tuple(x.canvas_size) == tuple(y.canvas_size), key
        else:
            assert x == y, key


@pytest.mark.parametrize("kind", ["instances", "keypoints"])
def test_export_round_trip(tmp_path, kind):
    src = _Dense(with_keypoints=kind == "keypoints")
    path = export_coco(src, tmp_path / "out")
    assert path == tmp_path / "out" / "annotations.json"
    back = CocoDataset(path, masks=True)
    assert back.kind == kind and back.categories == src.categories and len(back) == len(src)
    if kind == "keypoints":
        assert back.keypoint_names == src.keypoint_names and back.skeleton == src.skeleton
    for i in range(len(src)):
        (img_a, ta), (img_b, tb) = src[i], back[i]
        assert torch.equal(img_a, img_b)
        _assert_same(ta, tb)
    raw = json.loads(path.read_text())
    assert raw["annotations"][0]["bbox"][2:] == [7.0, 7.5]  # COCO's xywh


def test_export_captions_and_rejects_normalised_images(tmp_path):
    class Caps(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8, dtype=torch.uint8) + i, {"captions": [f"scene {i}", "shapes"], "image_id": i}

    back = CocoDataset(export_coco(Caps(), tmp_path / "caps"))
    assert back.kind == "captions" and back[1][1] == {"captions": ["scene 1", "shapes"], "image_id": 1}
    assert torch.allclose(back[1][0], torch.full((3, 8, 8), 1 / 255))

    class Normalised(Caps):
        def __getitem__(self, i):
            return torch.full((3, 8, 8), -1.5), {"captions": ["x"], "image_id": i}

    with pytest.raises(DataError, match=r"sample 0 .*unnormalised images in \[0, 1\]"):
        export_coco(Normalised(), tmp_path / "bad")
