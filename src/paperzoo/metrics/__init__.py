"""Metrics of the dense tasks on the Evaluator contract (``paperzoo.tasks.base``): COCO box/mask/keypoint AP
(pycocotools), mean IoU from a confusion matrix, OKS, PCK and PCKh."""
from .coco import COCO_PERSON_SIGMAS, CocoEvaluator
from .keypoints import PCK, PCKh, oks
from .segmentation import MeanIoU

__all__ = ["COCO_PERSON_SIGMAS", "CocoEvaluator", "MeanIoU", "PCK", "PCKh", "oks"]
