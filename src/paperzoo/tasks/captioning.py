"""Image captioning (Show and Tell, Show, Attend and Tell): the negative log-likelihood of the reference caption
word by word (teacher forcing), sentences generated greedily or by beam search, BLEU-1..4 and CIDEr as the metrics.

A batch is ``(images, token_ids, captions)``. The model's ``forward(images, token_ids)`` gives logits (B, L-1, V) for
``token_ids[:, 1:]`` -- or ``(logits, alphas)`` for an attention model, whose doubly stochastic penalty
``lambda * sum_i (1 - sum_t alpha_ti)^2`` is then added (``attention_penalty``, the paper's lambda = 1). Metrics come
from pycocoevalcap's ``Bleu`` and ``Cider`` scorers on pre-tokenised, lower-cased text (no Java tokenizer needed).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import GatherEvaluator, Task, register_task


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4 and CIDEr(-D as pycocoevalcap computes it) of ``hypotheses`` against their reference lists."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    res = {i: [h if h.strip() else "<empty>"] for i, h in enumerate(hypotheses)}
    gts = {i: list(r) for i, r in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    return {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "cider": float(cider)}


class CaptionEvaluator(GatherEvaluator):
    """Collects (generated caption, reference captions) and scores them with BLEU-1..4 and CIDEr."""

    def update(self, predictions: list[str], batch: Any) -> None:
        refs = batch[2]
        self.records += [(p, [r] if isinstance(r, str) else list(r)) for p, r in zip(predictions, refs)]

    def compute(self) -> dict[str, float]:
        if not self.records:
            return {}
        hyps, refs = zip(*self.records)
        return caption_scores(hyps, refs)


def normalise(text: str) -> str:
    """Lower case, punctuation split off, single spaces: the pre-tokenised form the scorers compare."""
    return " ".join(text.lower().replace(",", " , ").replace(".", " . ").split())


@register_task("captioning")
class CaptioningTask(Task):
    """Maximum-likelihood captioning (see the module docstring)."""

    data = "captioning"
    data_defaults: dict[str, Any] = {"image_size": 64, "min_objects": 1, "max_objects": 2}
    recipe: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}

    def __init__(self, tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None, beam_size: int = 3,
                 max_len: int = 24, attention_penalty: float = 1.0, reinforce: float = 1.0, entropy: float = 0.01) -> None:
        if tokenizer is None:
            from ..models.multimodal.tokenizer import scene_tokenizer

            tokenizer = scene_tokenizer()
        self.tokenizer, self.beam_size, self.max_len, self.attention_penalty = tokenizer, beam_size, max_len, attention_penalty
        self.reinforce, self.entropy, self.baseline = reinforce, entropy, 0.0  # hard attention's eq. 12 terms

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        images = torch.stack([s[0].as_subclass(torch.Tensor) for s in samples])
        captions = [s[1].get("caption") if isinstance(s[1], dict) else s[1] for s in samples]
        if not all(isinstance(c, str) for c in captions):
            raise DataError("the captioning task needs one caption string per image: use --data shapes or a COCO captions json")
        return images, self.tokenizer(captions), [normalise(c) for c in captions]

    def nll(self, logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """-log p(S | I) per word (eq. 13 of Show and Tell), averaged over the real words of the batch."""
        pad = getattr(self.tokenizer, "pad_id", 0)
        return F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten(), ignore_index=pad)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.multimodal.show_tell import doubly_stochastic_penalty

        images, ids, _ = batch
        out = model(images, ids)
        if isinstance(out, tuple):  # an attention model: add the doubly stochastic regulariser
            logits, alphas = out
            nll = self.nll(logits, ids)
            real = ids[:, 1:] != getattr(self.tokenizer, "pad_id", 0)
            penalty = doubly_stochastic_penalty(alphas, real)
            loss = nll + self.attention_penalty * penalty
            logs = {"nll": nll.detach(), "attention_penalty": penalty.detach()}
            inner = getattr(model, "module", model)
            if getattr(inner, "hard", False) and inner.training:  # eq. 12: score function with a moving-average baseline
                ll = -(F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none") * real).sum(1)
                advantage = (ll - self.baseline).detach()
                score = (inner.sample_log_prob * real).sum(1)
                entropy = (inner.sample_entropy * real).sum(1).mean()
                loss = loss - self.reinforce * (advantage * score).mean() / real.sum(1).float().mean() - self.entropy * entropy
                self.baseline = 0.9 * self.baseline + 0.1 * float(ll.mean())
                logs["baseline"] = self.baseline
            return loss, logs
        return self.nll(out, ids), {}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: Any) -> list[str]:
        inner = getattr(model, "module", model)
        ids = inner.generate(batch[0], max_len=self.max_len, beam_size=self.beam_size)
        return [normalise(self.tokenizer.decode(s)) for s in ids]

    def evaluator(self) -> CaptionEvaluator:
        return CaptionEvaluator()
