"""Users' COCO json files as datasets, and any dense dataset written out as one.

``CocoDataset(path)`` reads an instances, person-keypoints or captions file (``file_name`` relative to the
json's folder) and yields the sample format every dense task shares::

    image  : tv_tensors.Image, float32 CHW in [0, 1] (not normalised: detectors normalise inside)
    target : {"boxes": BoundingBoxes (N, 4) XYXY absolute pixels, "labels": int64 (N,) in 1..K,
              "masks": Mask (N, H, W) uint8            (instances whose annotations carry "segmentation"),
              "keypoints": KeyPoints (N, P, 2), "visibility": int64 (N, P) 0/1/2   (keypoint files),
              "captions": list[str]                    (caption files),
              "image_id": int, "area": float32 (N,), "iscrowd": int64 (N,)}

The file is checked once, in the constructor, so a broken annotation stops a run before it writes anything:
every problem is a ``DataError`` whose one line names the json, and the image or annotation at fault.
``export_coco(dataset, out_dir)`` writes the same format back as ``annotations.json`` plus PNG images, so the
built-in synthetic scenes can be handed to any tool that reads COCO files.

Boxes, masks and keypoints are tv_tensors, so ``torchvision.transforms.v2`` moves them together;
``data.transforms.SanitizeInstances`` is ``v2.SanitizeBoundingBoxes`` that also filters the per-instance fields of this format
(keypoints, visibility, area, iscrowd) and marks keypoints a crop pushed off the image as not labelled.
(A horizontal flip does not swap left and right keypoints: that needs the skeleton's flip pairs.)
"""
from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import ConfigError, DataError, unknown

KINDS = ("instances", "keypoints", "captions")
SPLITS = ("train", "val", "all")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read annotation file {path}: {e}".splitlines()[0]) from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty, not a COCO json")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def _decode_rles(rles: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """(N, H, W) uint8 masks of a list of (compressed) RLEs."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    with warnings.catch_warnings():  # pycocotools 2.0.x and numpy 2's __array__(copy=) deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        masks = mask_utils.decode(rles)
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


def segmentation_to_rle(segm: Any, height: int, width: int) -> dict[str, Any]:
    """One COCO segmentation (polygons, uncompressed or compressed RLE) as a compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segm, list):  # polygons: one RLE each, merged (a polygon needs 3 points to have an area)
        polys = [p for p in segm if len(p) >= 6]
        if not polys:
            return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(segm["counts"], list):  # uncompressed RLE (crowd regions)
        return mask_utils.frPyObjects(segm, *segm["size"])
    return segm


_NUMBER = {int, float}


def _is_number_list(x: Any, n: int | None = None) -> bool:
    return type(x) is list and (n is None or len(x) == n) and set(map(type, x)) <= _NUMBER  # bools are not numbers


class CocoDataset(Dataset):
    """A COCO json (instances, person keypoints or captions) in paperzoo's dense sample format.

    ``kind`` is inferred when not given: ``"keypoints"`` if the categories carry ``"keypoints"``,
    ``"captions"`` if the annotations carry ``"caption"`` and no ``"bbox"``, else ``"instances"`` (masks
    included when the annotations carry ``"segmentation"``). Categories are sorted by id and numbered
    1..K (``category_ids[label]`` gives the COCO id back; 0 is the background). ``split`` "train"/"val" is a
    fixed seeded split of the images (``val_fraction`` of them in "val"), "all" every image.
    ``transforms(image, target) -> (image, target)`` is applied last (a ``torchvision.transforms.v2`` pipeline).
    ``check_images=False`` skips opening every image's header in the constructor.
    """

    def __init__(
        self,
        annotations: str | Path,
        kind: str | None = None,
        split: str = "all",
        val_fraction: float = 0.1,
        seed: int = 0,
        transforms: Any = None,
        masks: bool | None = None,
        check_images: bool = True,
    ) -> None:
        self.path = Path(annotations)
        self.root = self.path.parent
        if kind is not None and kind not in KINDS:
            raise unknown("COCO kind", kind, KINDS)
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
        data = _load_json(self.path)
        if not isinstance(data, dict):
            raise DataError(f"{self.path}: a COCO json is an object with 'images' and 'annotations', "
                            f"got a {type(data).__name__}")
        for key in ("images", "annotations"):
            if key not in data:
                raise DataError(f"{self.path}: missing top-level key '{key}'")
            if not isinstance(data[key], list):
                raise DataError(f"{self.path}: '{key}' must be a list, got {type(data[key]).__name__}")
        anns: list[dict[str, Any]] = data["annotations"]
        cats: list[dict[str, Any]] = data.get("categories", [])
        if not isinstance(cats, list):
            raise DataError(f"{self.path}: 'categories' must be a list, got {type(cats).__name__}")
        self.kind = kind or self._infer_kind(cats, anns)
        if self.kind != "captions" and "categories" not in data:
            raise DataError(f"{self.path}: missing top-level key 'categories' (needed for {self.kind})")
        self.transforms = transforms
        self.in_chans = 3
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

        self._read_images(data["images"], check_images)
        self._read_categories(cats)
        if self.kind == "captions":
            self._read_captions(anns)
            self.with_masks = False
        else:
            self._read_instances(anns)
            with_segm = sum("segmentation" in a for a in anns)
            if masks is None:
                masks = self.kind == "instances" and with_segm > 0
            self.with_masks = bool(masks)
            if self.with_masks and with_segm < len(anns):
                missing = next(a["id"] for a in anns if "segmentation" not in a)
                raise DataError(f"{self.path}: annotation {missing} has no 'segmentation' (masks need one on "
                                f"every annotation; pass masks=False to read boxes only)")

        order = np.arange(len(self._images))
        if split != "all" and len(order) > 0:
            perm = np.random.default_rng(seed).permutation(len(order))
            n_val = int(round(val_fraction * len(order)))
            if val_fraction > 0 and len(order) >= 2:
                n_val = min(max(n_val, 1), len(order) - 1)
            order = np.sort(perm[:n_val] if split == "val" else perm[n_val:])
        self.split = split
        self._indices = order.tolist()
        self.image_ids = [self._images[i]["id"] for i in self._indices]
        sizes = {(self._images[i]["height"], self._images[i]["width"]) for i in self._indices}
        size = sizes.pop() if len(sizes) == 1 else (None, None)
        self.image_size: tuple[int, int] | None = size if None not in size else None  # None: sizes vary

    # ------------------------------------------------------------------ reading and checking
    def _infer_kind(self, cats: list[Any], anns: list[Any]) -> str:
        if any(isinstance(c, dict) and c.get("keypoints") for c in cats):
            return "keypoints"
        if anns and all(isinstance(a, dict) for a in anns) and any("caption" in a for a in anns) \
                and not any("bbox" in a for a in anns):
            return "captions"
        return "instances"

    def _check_unique(self, items: list[dict[str, Any]], what: str) -> None:
        counts = Counter(it["id"] for it in items)
        dup = next((i for i, n in counts.items() if n > 1), None)
        if dup is not None:
            raise DataError(f"{self.path}: duplicate {what} id {dup} ({counts[dup]} entries)")

    def _read_images(self, images: list[Any], check: bool) -> None:
        from PIL import Image, UnidentifiedImageError

        for k, im in enumerate(images):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise DataError(f"{self.path}: images[{k}] needs 'id' and 'file_name'")
        self._check_unique(images, "image")
        self._images = []
        for im in images:
            file = self.root / im["file_name"]
            where = f"{self.path}: image {im['file_name']} (id {im['id']})"
            h, w = im.get("height"), im.get("width")
            if check:
                if not file.is_file():
                    raise DataError(f"{where}: file not found at {file}")
                if file.stat().st_size == 0:
                    raise DataError(f"{where}: the file is empty")
                try:  # reads the header only; decoding waits for __getitem__
                    with Image.open(file) as img:
                        size = img.size
                except (OSError, UnidentifiedImageError, ValueError) as e:
                    raise DataError(f"{where}: not an image ({e})".splitlines()[0]) from None
                if (w is not None and w != size[0]) or (h is not None and h != size[1]):
                    raise DataError(f"{where}: the json says {w}x{h} but the file is {size[0]}x{size[1]}")
                w, h = size
            self._images.append({"id": im["id"], "file": file, "file_name": im["file_name"],
                                 "height": h, "width": w})
        self._image_index = {im["id"]: k for k, im in enumerate(self._images)}

    def _read_categories(self, cats: list[Any]) -> None:
        for k, c in enumerate(cats):
            if not isinstance(c, dict) or "id" not in c:
                raise DataError(f"{self.path}: categories[{k}] needs an 'id'")
        self._check_unique(cats, "category")
        cats = sorted(cats, key=lambda c: c["id"])
        self.categories = ["__background__"] + [str(c.get("name", c["id"])) for c in cats]
        self.classes = self.categories
        self.num_classes = len(self.categories)
        self.category_ids = {label: c["id"] for label, c in enumerate(cats, start=1)}
        self._label_of = {c["id"]: label for label, c in enumerate(cats, start=1)}
        self.keypoint_names: list[str] = []
        self.skeleton: list[tuple[int, int]] = []
        self._kp_cats: set[Any] = set()
        if self.kind != "keypoints":
            return
        with_kp = [c for c in cats if c.get("keypoints")]
        if not with_kp:
            raise DataError(f"{self.path}: kind 'keypoints' but no category carries 'keypoints'")
        first = with_kp[0]
        for c in with_kp[1:]:
            if len(c["keypoints"]) != len(first["keypoints"]):
                raise DataError(f"{self.path}: category {c['id']} has {len(c['keypoints'])} keypoints, "
                                f"category {first['id']} has {len(first['keypoints'])}")
        self.keypoint_names = [str(n) for n in first["keypoints"]]
        p = len(self.keypoint_names)
        for pair in first.get("skeleton", []):
            if not _is_number_list(pair, 2) or not all(1 <= int(v) <= p for v in pair):
                raise DataError(f"{self.path}: category {first['id']}: skeleton entry {pair} is not a pair of "
                                f"keypoint numbers in 1..{p}")
            self.skeleton.append((int(pair[0]) - 1, int(pair[1]) - 1))
        self._kp_cats = {c["id"] for c in with_kp}

    def _ann_prefix(self, ann: dict[str, Any]) -> str:
        return f"{self.path}: annotation {ann['id']}"

    def _read_common(self, anns: list[Any]) -> None:
        for k, a in enumerate(anns):
            if not isinstance(a, dict) or "id" not in a or "image_id" not in a:
                raise DataError(f"{self.path}: annotations[{k}] needs 'id' and 'image_id'")
        self._check_unique(anns, "annotation")
        for a in anns:
            if a["image_id"] not in self._image_index:
                raise DataError(f"{self._ann_prefix(a)}: image id {a['image_id']} is not in 'images'")

    def _read_captions(self, anns: list[Any]) -> None:
        self._read_common(anns)
        self._captions: list[list[str]] = [[] for _ in self._images]
        for a in anns:
            if not isinstance(a.get("caption"), str):
                raise DataError(f"{self._ann_prefix(a)}: 'caption' must be a string")
            self._captions[self._image_index[a["image_id"]]].append(a["caption"])

    def _read_instances(self, anns: list[Any]) -> None:
        self._read_common(anns)
        p = len(self.keypoint_names)
        for a in anns:
            where = self._ann_prefix(a)
            if a.get("category_id") not in self._label_of:
                raise DataError(f"{where}: category id {a.get('category_id')} is not in 'categories'")
            box = a.get("bbox")
            if not _is_number_list(box, 4):
                raise DataError(f"{where}: 'bbox' must be [x, y, width, height], got {box!r}")
            if box[2] <= 0 or box[3] <= 0:
                raise DataError(f"{where}: box {box} has a non-positive width or height")
            segm = a.get("segmentation")
            if segm is not None and not (
                (isinstance(segm, list) and all(_is_number_list(poly) for poly in segm))
                or (isinstance(segm, dict) and "counts" in segm and _is_number_list(segm.get("size"), 2))
            ):
                raise DataError(f"{where}: 'segmentation' must be polygons or an RLE with 'counts' and 'size'")
            if self.kind == "keypoints" and a["category_id"] in self._kp_cats:
                if not _is_number_list(a.get("keypoints"), 3 * p):
                    raise DataError(f"{where}: 'keypoints' must be {3 * p} numbers (x, y, v for each of {p})")
                if not set(a["keypoints"][2::3]) <= {0, 1, 2}:
                    raise DataError(f"{where}: keypoint visibility must be 0, 1 or 2")
        self._anns: list[list[dict[str, Any]]] = [[] for _ in self._images]
        for a in anns:
            self._anns[self._image_index[a["image_id"]]].append(a)

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self._indices)

    def load_image(self, index: int) -> tv_tensors.Image:
        """The decoded image of sample ``index`` as float32 CHW in [0, 1]."""
        from PIL import Image, UnidentifiedImageError

        im = self._images[self._indices[index]]
        try:
            with Image.open(im["file"]) as img:
                arr = np.asarray(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"{self.path}: cannot decode image {im['file_name']} (id {im['id']}): "
                            f"{e}".splitlines()[0]) from None
        return tv_tensors.Image(torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255))

    def target(self, index: int, height: int | None = None, width: int | None = None) -> dict[str, Any]:
        """The annotations of sample ``index`` in the dense target format (image size from the json)."""
        k = self._indices[index]
        im = self._images[k]
        h = height if height is not None else im["height"]
        w = width if width is not None else im["width"]
        if self.kind == "captions":
            return {"captions": list(self._captions[k]), "image_id": im["id"]}
        anns = self._anns[k]
        n = len(anns)
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(n, 4)
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).float()
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([self._label_of[a["category_id"]] for a in anns], dtype=torch.int64),
        }
        if self.with_masks:
            rles = [segmentation_to_rle(a["segmentation"], h, w) for a in anns]
            target["masks"] = tv_tensors.Mask(torch.from_numpy(_decode_rles(rles, h, w)))
        if self.kind == "keypoints":
            p = len(self.keypoint_names)
            kps = torch.tensor([a.get("keypoints") or [0] * 3 * p for a in anns],
                               dtype=torch.float64).reshape(n, p, 3)
            target["keypoints"] = tv_tensors.KeyPoints(kps[..., :2].float(), canvas_size=(h, w))
            target["visibility"] = kps[..., 2].long()
        target["image_id"] = im["id"]
        target["area"] = torch.tensor([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns],
                                      dtype=torch.float32)
        target["iscrowd"] = torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64)
        return target

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image = self.load_image(index)
        target = self.target(index, *image.shape[-2:])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (f"CocoDataset({str(self.path)!r}, kind={self.kind!r}, split={self.split!r}, "
                f"images={len(self)}, num_classes={self.num_classes})")


# ---------------------------------------------------------------------- export
def _infer_export_kind(target: Any) -> str:
    if isinstance(target, dict) and "keypoints" in target:
        return "keypoints"
    if isinstance(target, dict) and "captions" in target and "boxes" not in target:
        return "captions"
    if isinstance(target, dict) and "boxes" in target:
        return "instances"
    raise DataError(f"export_coco needs targets in the dense format (a dict with 'boxes', 'keypoints' or "
                    f"'captions'), got {type(target).__name__}")


def _category_names(dataset: Any, num_labels: int) -> list[str]:
    names = getattr(dataset, "categories", None) or getattr(dataset, "classes", None)
    if names and names[0] == "__background__":
        names = names[1:]
    names = list(names or [])
    return [names[k] if k < len(names) else str(k + 1) for k in range(num_labels)]


def export_coco(dataset: Any, out_dir: str | Path, kind: str | None = None, image_dir: str = "images") -> Path:
    """Write a dataset yielding the dense sample format as ``out_dir/annotations.json`` plus PNG images.

    Boxes are written as ``[x, y, w, h]``, masks (when the targets carry them) as compressed RLE, keypoints
    as ``[x, y, v] * P`` (x = y = 0 where v = 0, as COCO has it) with ``num_keypoints``, captions one
    annotation each. Label ``k`` becomes category id ``k``; names come from ``dataset.categories`` or
    ``dataset.classes``. Images must be unnormalised, in [0, 1] (float) or uint8. Returns the json's path.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    if kind is not None and kind not in KINDS:
        raise unknown("COCO kind", kind, KINDS)
    out = Path(out_dir)
    (out / image_dir).mkdir(parents=True, exist_ok=True)
    images, annotations, seen = [], [], set()
    max_label, num_kp = 0, 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        if kind is None:
            kind = _infer_export_kind(target)
        x = torch.as_tensor(image).detach().cpu()
        if x.dtype != torch.uint8:
            if x.numel() and (float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6):
                raise DataError(f"export_coco: sample {index} has pixel values in [{float(x.min()):.3g}, "
                                f"{float(x.max()):.3g}]; it needs unnormalised images in [0, 1]")
            x = x.float().mul(255).round().clamp(0, 255).to(torch.uint8)
        if x.ndim == 2:
            x = x[None]
        h, w = x.shape[-2:]
        image_id = int(target.get("image_id", index)) if isinstance(target, dict) else index
        if image_id in seen:
            raise DataError(f"export_coco: sample {index} repeats image id {image_id}")
        seen.add(image_id)
        file_name = f"{image_dir}/{image_id:08d}.png"
        arr = x.permute(1, 2, 0).numpy()
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(out / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": int(h), "width": int(w)})
        if kind == "captions":
            for caption in target["captions"]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": str(caption)})
            continue
        boxes = torch.as_tensor(target["boxes"]).detach().cpu().double().reshape(-1, 4)
        labels = torch.as_tensor(target["labels"]).reshape(-1).tolist()
        n = len(labels)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        rles = None
        if target.get("masks") is not None:
            m = torch.as_tensor(target["masks"]).detach().cpu().to(torch.uint8).numpy()
            rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0))) if n else []
        area = target.get("area")
        area = torch.as_tensor(area).reshape(-1).tolist() if area is not None else (
            [float(a) for a in mask_utils.area(rles)] if rles is not None else [b[2] * b[3] for b in xywh])
        crowd = torch.as_tensor(target["iscrowd"]).reshape(-1).tolist() if "iscrowd" in target else [0] * n
        if kind == "keypoints":
            kps = torch.as_tensor(target["keypoints"]).detach().cpu().double()
            vis = torch.as_tensor(target["visibility"]).detach().cpu().reshape(kps.shape[:2]).long()
            num_kp = kps.shape[1]
            kps = torch.where((vis > 0)[..., None], kps, 0.0)
            kp_rows = torch.cat([kps, vis[..., None].double()], dim=-1).reshape(n, 3 * num_kp).tolist()
        for j in range(n):
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": image_id,
                                   "category_id": int(labels[j]), "bbox": xywh[j],
                                   "area": float(area[j]), "iscrowd": int(crowd[j])}
            if rles is not None:
                ann["segmentation"] = {"size": [int(v) for v in rles[j]["size"]],
                                       "counts": rles[j]["counts"].decode("ascii")}
            if kind == "keypoints":
                ann["keypoints"] = [int(v) if v == int(v) else v for v in kp_rows[j]]
                ann["num_keypoints"] = int((vis[j] > 0).sum())
            annotations.append(ann)
            max_label = max(max_label, int(labels[j]))
    data: dict[str, Any] = {"info": {"description": f"exported by paperzoo from {type(dataset).__name__}"},
                            "images": images, "annotations": annotations}
    if kind != "captions":
        known = getattr(dataset, "categories", None) or getattr(dataset, "classes", None) or []
        n_cats = max(max_label, len(known) - int(bool(known) and known[0] == "__background__"))
        names = _category_names(dataset, n_cats)
        cats = [{"id": k, "name": names[k - 1], "supercategory": "object"} for k in range(1, n_cats + 1)]
        if kind == "keypoints":
            kp_names = list(getattr(dataset, "keypoint_names", None) or [f"kp{p}" for p in range(num_kp)])
            skeleton = [[int(a) + 1, int(b) + 1] for a, b in getattr(dataset, "skeleton", None) or []]
            for c in cats:
                c["keypoints"], c["skeleton"] = kp_names, skeleton
        data["categories"] = cats
    path = out / "annotations.json"
    path.write_text(json.dumps(data))
    return path
