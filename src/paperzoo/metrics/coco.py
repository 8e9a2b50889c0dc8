"""COCO box, mask and keypoint AP, computed by pycocotools (the reference implementation) from in-memory records.

``CocoEvaluator`` keeps one record per image (ground truth read from the batch's targets, detections from the
predictions, masks as compressed RLE), gathers them across torchrun processes, then builds pycocotools'
ground truth ``COCO`` object in memory, loads the detections with ``loadRes`` and runs ``COCOeval`` once per
IoU type. Labels are used as category ids directly (1..K; ground truth and detections in the same coordinates).
A metric that COCO cannot measure (no ground truth in that area range) is -1, as pycocotools reports it.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, unknown
from ..tasks.base import GatherEvaluator

IOU_TYPES = ("bbox", "segm", "keypoints")
# COCO's per-keypoint OKS constants for its 17 person keypoints (nose, eyes, ears, shoulders, elbows, wrists,
# hips, knees, ankles), from the COCO keypoint evaluation page
COCO_PERSON_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                      0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
DET_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
            "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")  # COCOeval.stats order
KP_KEYS = ("kp_map", "kp_map_50", "kp_map_75", "kp_map_medium", "kp_map_large",
           "kp_mar", "kp_mar_50", "kp_mar_75", "kp_mar_medium", "kp_mar_large")
PREFIX = {"bbox": "", "segm": "mask_", "keypoints": ""}


def _np(x: Any, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().as_subclass(torch.Tensor)
        x = x.float() if x.is_floating_point() or x.dtype == torch.bool else x
        return x.numpy().astype(dtype)
    return np.asarray(x, dtype=dtype)


def _xyxy(boxes: Any) -> np.ndarray:
    from torchvision import tv_tensors

    if isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format.name != "XYXY":
        from torchvision.transforms.v2 import functional as F

        boxes = F.convert_bounding_box_format(boxes, new_format="XYXY")
    return _np(boxes).reshape(-1, 4)


def _rles(masks: Any, threshold: float) -> list[dict[str, Any]]:
    """Compressed RLEs (counts as str, JSON-safe) of (N, H, W) or (N, 1, H, W) masks; probabilities are
    thresholded at ``threshold``."""
    from pycocotools import mask as mask_utils

    m = torch.as_tensor(masks).detach().as_subclass(torch.Tensor)
    if m.ndim == 4:
        m = m[:, 0]
    m = ((m > threshold) if m.is_floating_point() else (m > 0)).cpu()  # threshold where the masks are
    rles = mask_utils.encode(np.asfortranarray(m.to(torch.uint8).numpy().transpose(1, 2, 0))) if len(m) else []
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")
    return rles


def _size(image: Any, target: dict[str, Any]) -> tuple[int, int]:
    canvas = getattr(target.get("boxes"), "canvas_size", None)
    if canvas is not None:
        return int(canvas[0]), int(canvas[1])
    if target.get("masks") is not None:
        return tuple(int(v) for v in target["masks"].shape[-2:])  # type: ignore[return-value]
    if image is None:
        raise ValueError("CocoEvaluator: without images, targets need BoundingBoxes with a canvas_size")
    return int(image.shape[-2]), int(image.shape[-1])


class CocoEvaluator(GatherEvaluator):
    """COCO AP/AR for boxes (``"bbox"``), masks (``"segm"``) and keypoints (``"keypoints"``) via pycocotools.

    ``update(predictions, (images, targets))``: ``predictions`` is one dict per image with ``"boxes"`` (XYXY),
    ``"scores"``, ``"labels"``, plus ``"masks"`` ((N, H, W) or (N, 1, H, W), probabilities or binary) for
    ``"segm"`` and ``"keypoints"`` ((N, P, 2) or (N, P, 3)) for ``"keypoints"``; targets are in the dense
    sample format. ``kpt_oks_sigmas`` (P,) sets pycocotools' ``params.kpt_oks_sigmas``; COCO's person
    sigmas are the default when P = 17. After ``compute()``, ``summary`` holds pycocotools' printed table.
    """

    def __init__(self, iou_types: str | tuple[str, ...] | list[str] = ("bbox",), kpt_oks_sigmas: Any = None,
                 mask_threshold: float = 0.5, per_class: bool = False) -> None:
        iou_types = (iou_types,) if isinstance(iou_types, str) else tuple(iou_types)
        for t in iou_types:
            if t not in IOU_TYPES:
                raise unknown("COCO iou type", t, IOU_TYPES)
        self.iou_types = iou_types
        self.kpt_oks_sigmas = None if kpt_oks_sigmas is None else np.asarray(kpt_oks_sigmas, dtype=np.float64)
        self.mask_threshold = mask_threshold
        self.per_class = per_class
        self.summary = ""
        self.coco_eval: dict[str, Any] = {}
        self._count = 0
        super().__init__()

    def _sigmas(self, num_keypoints: int) -> np.ndarray:
        if self.kpt_oks_sigmas is None:
            if num_keypoints != len(COCO_PERSON_SIGMAS):
                raise ConfigError(f"CocoEvaluator: keypoint AP for {num_keypoints} keypoints needs "
                                  f"kpt_oks_sigmas (one OKS sigma per keypoint); COCO's defaults are for its "
                                  f"{len(COCO_PERSON_SIGMAS)} person keypoints")
            return np.asarray(COCO_PERSON_SIGMAS)
        if len(self.kpt_oks_sigmas) != num_keypoints:
            raise ConfigError(f"CocoEvaluator: {len(self.kpt_oks_sigmas)} kpt_oks_sigmas for "
                              f"{num_keypoints} keypoints")
        return self.kpt_oks_sigmas

    def update(self, predictions: Any, batch: Any) -> None:
        images, targets = batch
        images = [None] * len(targets) if images is None else images
        if len(predictions) != len(targets):
            raise ValueError(f"CocoEvaluator: {len(predictions)} predictions for {len(targets)} images")
        for image, pred, target in zip(images, predictions, targets):
            self.records.append(self._record(image, pred, target))

    def _record(self, image: Any, pred: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
        h, w = _size(image, target)
        image_id = target.get("image_id")
        if image_id is None:  # no ids given: unique per process (ranks apart by 2**40)
            from ..tasks.base import distributed

            rank = torch.distributed.get_rank() if distributed() else 0
            image_id = -(rank * 2**40 + self._count + 1)
        self._count += 1
        gt_boxes = _xyxy(target["boxes"])
        n = len(gt_boxes)
        gt: dict[str, Any] = {"boxes": gt_boxes, "labels": _np(target["labels"], np.int64).reshape(-1),
                              "iscrowd": _np(target.get("iscrowd", np.zeros(n)), np.int64).reshape(-1)}
        dt: dict[str, Any] = {"boxes": _xyxy(pred["boxes"]), "scores": _np(pred["scores"]).reshape(-1),
                              "labels": _np(pred["labels"], np.int64).reshape(-1)}
        if "segm" in self.iou_types:
            for name, d in (("target", target), ("prediction", pred)):
                if d.get("masks") is None:
                    raise ConfigError(f"CocoEvaluator: iou type 'segm' needs 'masks' in every {name}")
            gt["masks"], dt["masks"] = _rles(target["masks"], 0.5), _rles(pred["masks"], self.mask_threshold)
        if "keypoints" in self.iou_types:
            for name, d in (("target", target), ("prediction", pred)):
                if d.get("keypoints") is None:
                    raise ConfigError(f"CocoEvaluator: iou type 'keypoints' needs 'keypoints' in every {name}")
            kp = _np(target["keypoints"])  # (N, P, 2)
            self._sigmas(kp.shape[1])
            gt["keypoints"] = kp[..., :2]
            gt["visibility"] = _np(target["visibility"], np.int64).reshape(kp.shape[:2])
            dt["keypoints"] = _np(pred["keypoints"])[..., :2]  # (M, P, 2|3) -> (M, P, 2)
        if target.get("area") is not None:
            gt["area"] = _np(target["area"]).reshape(-1)
        elif "masks" in gt:
            from pycocotools import mask as mask_utils

            gt["area"] = np.asarray(mask_utils.area(gt["masks"]), dtype=np.float64).reshape(-1)
        else:
            gt["area"] = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        return {"image_id": int(image_id), "height": h, "width": w, "gt": gt, "dt": dt}

    # ------------------------------------------------------------------ evaluation
    def _coco_objects(self, records: list[dict[str, Any]], iou_type: str) -> tuple[Any, Any]:
        from pycocotools.coco import COCO

        images = [{"id": r["image_id"], "height": r["height"], "width": r["width"]} for r in records]
        labels = sorted({int(v) for r in records for v in np.concatenate([r["gt"]["labels"], r["dt"]["labels"]])})
        categories = [{"id": c, "name": str(c)} for c in labels]
        gts, dts = [], []
        for r in records:
            g, d = r["gt"], r["dt"]
            gxywh = np.concatenate([g["boxes"][:, :2], g["boxes"][:, 2:] - g["boxes"][:, :2]], axis=1)
            for j in range(len(gxywh)):
                ann = {"id": len(gts) + 1, "image_id": r["image_id"], "category_id": int(g["labels"][j]),
                       "bbox": gxywh[j].tolist(), "area": float(g["area"][j]), "iscrowd": int(g["iscrowd"][j])}
                if iou_type == "segm":
                    ann["segmentation"] = g["masks"][j]
                if iou_type == "keypoints":
                    vis = g["visibility"][j]
                    ann["keypoints"] = np.concatenate([g["keypoints"][j], vis[:, None]], axis=1).ravel().tolist()
                    ann["num_keypoints"] = int((vis > 0).sum())
                gts.append(ann)
            dxywh = np.concatenate([d["boxes"][:, :2], d["boxes"][:, 2:] - d["boxes"][:, :2]], axis=1)
            for j in range(len(d["scores"])):
                ann = {"image_id": r["image_id"], "category_id": int(d["labels"][j]), "score": float(d["scores"][j])}
                if iou_type == "bbox":
                    ann["bbox"] = dxywh[j].tolist()
                elif iou_type == "segm":  # no bbox: loadRes then takes the area from the mask, as COCO defines it
                    ann["segmentation"] = d["masks"][j]
                else:  # the official results format: keypoints only (loadRes derives the box from their extent)
                    kp = d["keypoints"][j]
                    ann["keypoints"] = np.concatenate([kp, np.ones((len(kp), 1))], axis=1).ravel().tolist()
                dts.append(ann)
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "categories": categories, "annotations": gts}
        coco_gt.createIndex()
        if dts:
            coco_dt = coco_gt.loadRes(dts)
        else:  # loadRes cannot take an empty list; no detections is a valid result (AP 0)
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(images), "categories": categories, "annotations": []}
            coco_dt.createIndex()
        return coco_gt, coco_dt

    def compute(self) -> dict[str, float]:
        from pycocotools.cocoeval import COCOeval

        unique: dict[int, dict[str, Any]] = {}
        for r in self.records:  # DistributedSampler pads with repeated images: count each image once
            unique.setdefault(r["image_id"], r)
        records = list(unique.values())
        out: dict[str, float] = {}
        summary = []
        self.coco_eval = {}
        for iou_type in self.iou_types:
            keys = KP_KEYS if iou_type == "keypoints" else tuple(PREFIX[iou_type] + k for k in DET_KEYS)
            if not records:
                out.update({k: 0.0 for k in keys})
                summary.append(f"IoU metric: {iou_type}\n(no images evaluated)\n")
                continue
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                coco_gt, coco_dt = self._coco_objects(records, iou_type)
                ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
                if iou_type == "keypoints":
                    ev.params.kpt_oks_sigmas = self._sigmas(records[0]["gt"]["keypoints"].shape[1])
                ev.evaluate()
                ev.accumulate()
                table = io.StringIO()
                with contextlib.redirect_stdout(table):
                    ev.summarize()
            summary.append(f"IoU metric: {iou_type}\n{table.getvalue()}")
            out.update({k: float(v) for k, v in zip(keys, ev.stats)})
            if self.per_class:
                precision = ev.eval["precision"][:, :, :, 0, -1]  # (iou, recall, class) at area all, max dets
                for k, cat in enumerate(ev.params.catIds):
                    p = precision[:, :, k]
                    out[f"{keys[0]}_class_{cat}"] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
            self.coco_eval[iou_type] = ev
        self.summary = "".join(summary)
        return out
