"""The one ``detect`` every detector shares: evaluation, drawing and ``paperzoo predict`` call it."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .grid import image_sizes


class Detector:
    """Mixin for ``nn.Module`` detectors: ``detect(images)`` runs :meth:`_detections` in eval mode without
    gradients and restores the previous mode. The default ``_detections`` is
    ``postprocess(self(images), image_sizes(images))`` (the set-prediction detectors); the others override it."""

    @torch.no_grad()
    def detect(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        """Detections of each image: ``{"boxes", "scores", "labels"}`` with boxes XYXY in that image's pixels."""
        was = self.training
        self.eval()
        try:
            return self._detections(images)
        finally:
            self.train(was)

    def _detections(self, images: Sequence[Tensor] | Tensor) -> list[dict[str, Tensor]]:
        return self.postprocess(self(images), image_sizes(images))
