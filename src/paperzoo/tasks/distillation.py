"""DeiT's distillation objectives (Touvron et al., 2020, section 4) as a task for the one Trainer.

Given student logits Z_s, teacher logits Z_t, labels y, softmax psi and a weight alpha (1/2 in the paper):

* hard-label distillation: L = (1 - alpha) CE(psi(Z_s), y) + alpha CE(psi(Z_s), y_t) with y_t = argmax_c Z_t(c),
  the teacher's decision;
* soft distillation (eq. 2 of the paper's section 4): L = (1 - alpha) CE(psi(Z_s), y)
  + alpha tau^2 KL(psi(Z_t / tau) || psi(Z_s / tau)), the KL averaged over the batch.

With a distillation token (``DistilledVisionTransformer``) the first term reads the class-token head and the
second the distillation-token head ("distillation through attention"); at evaluation the model returns the
average of the two heads, which is what ``ClassificationTask.evaluate`` scores. A student with a single output
(a plain DeiT or any CNN) uses it in both terms — the paper's "usual distillation" through the class token.
The teacher can be any registered model; it runs in eval mode without gradients on the same (possibly mixed)
images as the student.

``paperzoo train --model deit_tiny_distilled_patch16_224 distill.teacher=resnet20_cifar
distill.teacher_weights=PATH`` builds this task (``build_distillation_task``). The distillation papers of
section I (KD, ESKD, OFD) add their tasks beside it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, unknown
from .base import register_task
from .classification import ClassificationTask

KINDS = ("hard", "soft")


@register_task("deit-distillation")
class DeiTDistillationTask(ClassificationTask):
    """Loss = (1 - alpha) CE(class head, y) + alpha * distillation term from ``teacher`` (see module doc)."""

    def __init__(self, teacher: nn.Module, kind: str = "hard", alpha: float = 0.5, tau: float = 1.0,
                 label_smoothing: float = 0.0) -> None:  # noqa: D107
        super().__init__(label_smoothing)
        if kind not in KINDS:
            raise unknown("distillation type", kind, KINDS)
        if not 0.0 <= alpha <= 1.0 or tau <= 0:
            raise ConfigError(f"distillation needs 0 <= alpha <= 1 and tau > 0, got alpha={alpha}, tau={tau}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.kind, self.alpha, self.tau = kind, alpha, tau

    def student_outputs(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class-head logits, distillation-head logits); the same tensor twice for a one-head student."""
        from ..weights import _inner

        student, _ = _inner(model)
        if hasattr(student, "set_distilled_training") and not student.distilled_training:
            student.set_distilled_training(True)
        out = model(images)
        return out if isinstance(out, tuple) else (out, out)

    def objective(self, cls_logits: torch.Tensor, dist_logits: torch.Tensor, teacher_logits: torch.Tensor,
                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss, label term, distillation term) for given logits."""
        base = F.cross_entropy(cls_logits.float(), targets, label_smoothing=self.label_smoothing)
        if self.kind == "hard":
            distill = F.cross_entropy(dist_logits.float(), teacher_logits.argmax(1))
        else:
            tau = self.tau
            distill = F.kl_div(F.log_softmax(dist_logits.float() / tau, 1), F.log_softmax(teacher_logits.float() / tau, 1),
                               reduction="batchmean", log_target=True) * tau * tau
        return (1 - self.alpha) * base + self.alpha * distill, base, distill

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> DeiTDistillationTask:
        return build_distillation_task(cfg, getattr(data, "num_classes", None), getattr(data, "in_chans", 3))

    def setup(self, trainer) -> None:
        self.teacher.to(trainer.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        cls_logits, dist_logits = self.student_outputs(model, images)
        with torch.no_grad():
            teacher_logits = self.teacher.to(images.device)(images)
        total, base, distill = self.objective(cls_logits, dist_logits, teacher_logits, targets)
        hard = targets.argmax(1) if targets.ndim == 2 else targets
        fused = (cls_logits + dist_logits).detach() / 2
        return total, {"acc": (fused.argmax(1) == hard).float().mean(), "label_loss": base.detach(),
                       "distill_loss": distill.detach()}


def build_distillation_task(cfg: Any, num_classes: int | None, in_chans: int) -> DeiTDistillationTask:
    """The task ``cfg.distill`` asks for: the teacher is built as a registered model and loaded strictly from
    ``distill.teacher_weights`` (``SOURCE::PATH`` names a source)."""
    from ..registry import create_model
    from ..weights import load_weights

    d = cfg.distill
    if d.teacher is None:
        raise ConfigError("DeiT distillation needs distill.teacher (a registered model name) and distill.teacher_weights")
    if not d.teacher_weights:
        raise ConfigError("distill.teacher needs distill.teacher_weights: the trained teacher's checkpoint")
    source, _, location = d.teacher_weights.rpartition("::")
    teacher = create_model(d.teacher, num_classes=num_classes, in_chans=in_chans)
    load_weights(teacher, location, source=source or "paperzoo")
    return DeiTDistillationTask(teacher, d.type, d.alpha, d.tau, cfg.label_smoothing)
