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
distill.teacher_weights=PATH`` builds this task (``build_distillation_task``).

The distillation papers of section I live beside it:

* **KD** (Hinton, Vinyals & Dean, 2015; ``kd_loss``, task ``kd``): the student matches the teacher's class
  probabilities softened by a temperature T, q_i = exp(z_i / T) / sum_j exp(z_j / T). The soft term's gradients
  scale as 1/T^2 (section 2, eq. 2-4), so it is multiplied by T^2 to keep its weight against the hard-label
  term when T changes: L = alpha T^2 KL(q^T_teacher || q^T_student) + (1 - alpha) CE(z_student, y). (The paper
  writes the soft term as a cross-entropy with the soft targets; KL differs from it by the teacher's entropy,
  a constant, so the gradients are the same.) In the high-temperature limit, with zero-mean logits, the
  soft term's gradient T^2 dC/dz_i = T (q_i - p_i) tends to (z_i - v_i) / N: matching logits (eq. 4).
  ``paperzoo train --model resnet20_cifar --task kd --teacher NAME --teacher-weights PATH``.
* **ESKD** (Cho & Hariharan, 2019; ``early_stopped_teacher``, task ``eskd``): a fully trained, larger teacher is
  not always a better teacher for a small student -- the student cannot follow its sharp, overconfident
  solution. Early-stopped KD distils from the teacher's checkpoint at an early epoch of its training instead of its
  final weights, with the same KD loss (the paper's section 5). ``--task eskd --teacher NAME --teacher-weights
  TEACHER_RUN_DIR distill.teacher_epoch=E`` loads the epoch-E checkpoint of that run (train the teacher with
  ``keep_checkpoints`` large enough to keep it).
* **OFD** (Heo et al., 2019; ``OverhaulDistiller``, task ``ofd``): feature distillation at the end of each stage,
  *before* the ReLU (section 3.2-3.4). The teacher's pre-ReLU feature T goes through a margin ReLU
  sigma_m(T) = max(T, m) whose per-channel margin is the mean of its negative responses, m = E[x | x < 0], in
  closed form from the BatchNorm before the ReLU (x ~ N(beta, gamma^2): m = beta - |gamma| phi(beta/|gamma|) /
  Phi(-beta/|gamma|), or -3|gamma| when Phi(-beta/|gamma|) <= 0.001, ``bn_margin``); the student's feature S goes
  through a connector (1x1 conv + BN, ``connector``); the partial L2 distance (eq. 3, ``partial_l2``) skips the
  positions where the target is negative and the student is already below it, d_p = sum_i [S_i > T_i or T_i > 0]
  (T_i - S_i)^2. Stage i of n is weighted 1 / 2^(n - i - 1); the task adds the sum / batch / 1000 to the
  cross-entropy (the official CIFAR setting, ``weight``).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, WeightsError, unknown
from ._heads import HeadsTraining
from .base import register_task
from .classification import ClassificationTask

KINDS = ("hard", "soft")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor | None = None,
            temperature: float = 4.0, alpha: float = 0.9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hinton et al.'s loss: (total, soft term, hard term) with total = alpha T^2 KL(softmax(v/T) || softmax(z/T))
    + (1 - alpha) CE(z, y), the KL averaged over the batch; z the student's logits, v the teacher's. Without
    ``targets`` (transfer-set images without labels) the total is the T^2-scaled soft term alone.

    Conventions differ between libraries: torchdistill's ``KDLoss(alpha=a)`` weights the *hard* term by a
    and the soft term by 1 - a (and returns the unscaled KL when a is 0); here ``alpha`` weights the soft term,
    as in DeiT's task."""
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd_loss needs temperature > 0 and 0 <= alpha <= 1, got T={temperature}, alpha={alpha}")
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits.float() / t, 1), F.log_softmax(teacher_logits.float() / t, 1),
                    reduction="batchmean", log_target=True) * (t * t)
    if targets is None:
        return soft, soft, soft.new_zeros(())
    hard = F.cross_entropy(student_logits.float(), targets)
    return alpha * soft + (1 - alpha) * hard, soft, hard


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


def build_teacher(cfg: Any, num_classes: int | None, in_chans: int, task: str) -> nn.Module:
    """The teacher ``cfg.distill`` names, built as a registered model and loaded strictly from
    ``distill.teacher_weights`` (``SOURCE::PATH`` names a source); in eval mode, without gradients."""
    from ..registry import create_model
    from ..weights import load_weights

    d = cfg.distill
    if not d.teacher or not d.teacher_weights:
        raise ConfigError(f"the {task} task needs a trained teacher: --teacher NAME --teacher-weights PATH "
                          "(or distill.teacher=NAME distill.teacher_weights=PATH)")
    source, _, location = d.teacher_weights.rpartition("::")
    run_dir = None
    if task == "eskd":
        if d.teacher_epoch is None:
            raise ConfigError("the eskd task needs distill.teacher_epoch: the epoch of the teacher's run to distil from")
        run_dir, source, location = Path(location), "paperzoo", str(early_stopped_teacher(location, d.teacher_epoch))
    teacher = create_model(d.teacher, num_classes=num_classes, in_chans=in_chans, **teacher_model_args(location, run_dir))
    load_weights(teacher, location, source=source or "paperzoo")
    return teacher.eval().requires_grad_(False)


def teacher_model_args(weights: str, run_dir: Path | None = None) -> dict[str, Any]:
    """The model arguments the teacher was trained with (``model_args`` of ``paperzoo train``): from its run's
    ``config.yaml`` or the metadata of a ``model.safetensors`` that ``paperzoo train`` wrote; else none."""
    import json

    import yaml

    if run_dir is not None and (run_dir / "config.yaml").exists():
        return dict((yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("model_args") or {})
    if str(weights).endswith(".safetensors") and Path(weights).exists():
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
        return dict(json.loads(meta.get("model_args", "{}")))
    return {}


def epoch_checkpoints(run_dir: str | Path) -> dict[int, Path]:
    """The epoch-end checkpoints of a training run directory (``RUN/checkpoints/step-N``), by epoch."""
    from ..train.checkpoint import list_checkpoints

    root = Path(run_dir)
    root = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    found: dict[int, Path] = {}
    for path in list_checkpoints(root):
        try:
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except (OSError, RuntimeError):
            continue
        if state.get("batch_in_epoch", 1) == 0:
            found[int(state["epoch"])] = path
    return found


def early_stopped_teacher(run_dir: str | Path, epoch: int) -> Path:
    """ESKD's teacher: the weights (``model.safetensors``) of the checkpoint written at the end of ``epoch`` in the
    teacher's run directory; a missing epoch is a one-line error that lists the epochs kept."""
    found = epoch_checkpoints(run_dir)
    if epoch not in found:
        kept = ", ".join(map(str, sorted(found))) or "none"
        raise WeightsError(f"no checkpoint of epoch {epoch} in {run_dir} (epochs kept: {kept}; train the teacher with "
                           "keep_checkpoints large enough)")
    return found[epoch] / "model.safetensors"


class TeacherTask(ClassificationTask):
    """A classification task with a frozen teacher run on the same images (eval mode, no gradients); the
    student is scored as a classifier (``ClassificationTask``'s predict and accuracy)."""

    def __init__(self, teacher: nn.Module) -> None:  # noqa: D107
        super().__init__(0.0)
        self.teacher = teacher.eval().requires_grad_(False)

    def setup(self, trainer) -> None:
        self.teacher.to(trainer.device)

    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()
        return self.teacher.to(images.device)(images)


@register_task("kd")
class KDTask(TeacherTask):
    """Knowledge distillation (Hinton et al., 2015): soft targets at temperature T with T^2 scaling, mixed
    with the hard-label loss (``kd_loss``)."""

    recipe = {"distill.tau": 4.0, "distill.alpha": 0.9}

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.9) -> None:  # noqa: D107
        super().__init__(teacher)
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), None, temperature, alpha)  # validates T and alpha
        self.temperature, self.alpha = temperature, alpha

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> KDTask:
        teacher = build_teacher(cfg, getattr(data, "num_classes", None), getattr(data, "in_chans", 3), "kd")
        return cls(teacher, cfg.distill.tau, cfg.distill.alpha)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        logits = model(images)
        total, soft, hard = kd_loss(logits, self.teacher_logits(images), targets, self.temperature, self.alpha)
        return total, {"acc": (logits.argmax(1) == targets).float().mean(), "soft_loss": soft.detach(),
                       "hard_loss": hard.detach()}


@register_task("eskd")
class ESKDTask(KDTask):
    """Early-stopped knowledge distillation (Cho & Hariharan, 2019): the KD loss from a teacher checkpoint of an
    early epoch (``early_stopped_teacher``)."""

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> ESKDTask:
        teacher = build_teacher(cfg, getattr(data, "num_classes", None), getattr(data, "in_chans", 3), "eskd")
        return cls(teacher, cfg.distill.tau, cfg.distill.alpha)


# ------------------------------------------------------------------------------------------- OFD
def bn_margin(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per channel m = E[x | x < 0] for x ~ N(bias, weight^2) (the BN output before a ReLU), -3|weight| where
    P(x < 0) <= 0.001 (the official repository's rule)."""
    s, m = weight.detach().double().abs().clamp_min(1e-12), bias.detach().double()
    cdf = torch.special.ndtr(-m / s)
    pdf = torch.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi)
    margin = m - s * pdf / cdf.clamp_min(1e-300)
    return torch.where(cdf > 1e-3, margin, -3 * s).float()


def partial_l2(source: torch.Tensor, target: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with the margin ReLU: sum over positions of (sigma_m(T) - S)^2 except where sigma_m(T) <= 0 and
    S <= sigma_m(T) (summed, not averaged)."""
    target = torch.max(target, margin)
    keep = (source > target) | (target > 0)
    return ((source - target) ** 2 * keep).sum()


def connector(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """The student-side transform: 1x1 conv (no bias) + BatchNorm, conv ~ N(0, 2 / (k^2 c_out)), BN at (1, 0)."""
    conv = nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / teacher_channels))
    return nn.Sequential(conv, nn.BatchNorm2d(teacher_channels))


def prerelu_positions(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d]]:
    """OFD's distillation positions in a ResNet: the last ReLU of the last block of each stage (its input is the
    stage's pre-ReLU output) and the BatchNorm before it (the margin's statistics)."""
    from ..weights import _inner

    net = _inner(model)[0]
    stages = [getattr(net, f"layer{i}") for i in range(1, 5) if hasattr(net, f"layer{i}")]
    out = []
    for stage in stages:
        block = stage[-1]
        for act, bn in (("act3", "bn3"), ("act2", "bn2")):
            if isinstance(getattr(block, act, None), nn.ReLU) and isinstance(getattr(block, bn, None), nn.BatchNorm2d):
                out.append((getattr(block, act), getattr(block, bn)))
                break
        else:
            raise ConfigError(f"OFD: no pre-ReLU position found in the last block of a stage of {type(net).__name__}")
    if not out:
        raise ConfigError(f"OFD needs a ResNet-style network (layer1, layer2, ... stages), not {type(net).__name__}")
    return out


class _PreReLU:
    """Forward pre-hooks that keep a copy of each position's input (the ReLUs are in place) while capturing."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.feats: list[torch.Tensor] | None = None
        self.handles = [m.register_forward_pre_hook(self._hook(i)) for i, m in enumerate(modules)]
        self.n = len(modules)

    def _hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if self.feats is not None:
                self.feats[i] = inputs[0].clone()
        return hook

    def run(self, net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.feats = [None] * self.n
        try:
            out = net(x)
            feats = self.feats
        finally:
            self.feats = None
        return out, feats


class OverhaulDistiller(nn.Module):
    """Heo et al.'s distiller for a student and a (frozen) teacher ResNet: ``forward(x) -> (student logits,
    distillation loss)``, the loss the sum over the stage ends of partial_l2(connector(S), sigma_m(T)) / 2^(n-i-1).
    ``connectors`` are the trainable part beside the student; the margins are buffers computed once."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__()
        s_pos, t_pos = prerelu_positions(student), prerelu_positions(teacher)
        if len(s_pos) != len(t_pos):
            raise ConfigError(f"OFD: the student has {len(s_pos)} stages and the teacher {len(t_pos)}")
        self.connectors = nn.ModuleList(connector(sb.num_features, tb.num_features) for (_, sb), (_, tb) in zip(s_pos, t_pos))
        for i, (_, tb) in enumerate(t_pos):
            self.register_buffer(f"margin{i}", bn_margin(tb.weight, tb.bias).view(1, -1, 1, 1))
        self._student_hooks = _PreReLU([a for a, _ in s_pos])
        self._teacher_hooks = _PreReLU([a for a, _ in t_pos])
        self.teacher = [teacher]  # not a submodule: its weights are not the distiller's

    def margins(self) -> list[torch.Tensor]:
        return [getattr(self, f"margin{i}") for i in range(len(self.connectors))]

    def loss(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        n = len(student_feats)
        return sum(partial_l2(c(s.float()), t.float().detach(), m) / 2 ** (n - i - 1)
                   for i, (c, s, t, m) in enumerate(zip(self.connectors, student_feats, teacher_feats, self.margins())))

    def forward(self, student: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(student logits, teacher logits, distillation loss) on images ``x``."""
        teacher = self.teacher[0]
        with torch.no_grad():
            t_out, t_feats = self._teacher_hooks.run(teacher.eval(), x)
        s_out, s_feats = self._student_hooks.run(student, x)
        return s_out, t_out, self.loss(s_feats, t_feats)


@register_task("ofd")
class OFDTask(HeadsTraining, TeacherTask):
    """Overhaul of feature distillation (Heo et al., 2019): CE + pre-ReLU partial-L2 distillation through a margin ReLU
    and connectors, optionally plus KD on the logits (``kd_alpha`` > 0)."""

    def __init__(self, teacher: nn.Module, weight: float = 1e-3, kd_alpha: float = 0.0, temperature: float = 4.0) -> None:  # noqa: D107
        super().__init__(teacher)
        if weight < 0 or not 0.0 <= kd_alpha <= 1.0:
            raise ConfigError(f"OFD needs weight >= 0 and 0 <= kd_alpha <= 1, got {weight}, {kd_alpha}")
        self.weight, self.kd_alpha, self.temperature = weight, kd_alpha, temperature
        self.heads = nn.ModuleDict()
        self.distiller: OverhaulDistiller | None = None

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> OFDTask:
        return cls(build_teacher(cfg, getattr(data, "num_classes", None), getattr(data, "in_chans", 3), "ofd"))

    def build(self, trainer: Any) -> None:
        self.teacher.to(trainer.device)
        self.distiller = OverhaulDistiller(trainer.model, self.teacher).to(trainer.device)
        self.heads["distiller"] = self.distiller

    def setup(self, trainer: Any) -> None:
        HeadsTraining.setup(self, trainer)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        if self.distiller is None:  # used outside a Trainer
            self.distiller = OverhaulDistiller(model, self.teacher).to(images.device)
            self.heads["distiller"] = self.distiller
        logits, t_logits, distill = self.distiller(model, images)
        ce = F.cross_entropy(logits.float(), targets)
        if self.kd_alpha > 0:
            ce = kd_loss(logits, t_logits, targets, self.temperature, self.kd_alpha)[0]
        feature = distill / len(images) * self.weight
        return ce + feature, {"acc": (logits.argmax(1) == targets).float().mean(), "feature_loss": feature.detach(),
                              "label_loss": ce.detach()}
