"""``paperzoo predict`` for the vision-and-language models: zero-shot labels (CLIP, ``--labels "a,b,c"``), a mask for
a text prompt (CLIPSeg, ``--prompt "..."``) and a generated caption (the captioners), each drawn into a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...errors import PaperzooError


def tokenizer_for(model: torch.nn.Module):
    """CLIP's BPE for models with CLIP's 49,408-token vocabulary (OpenAI / open_clip / HF weights), else the synthetic
    scenes' word vocabulary the miniatures train with."""
    from .tokenizer import ClipTokenizer, scene_tokenizer

    clip = getattr(model, "clip", model)
    vocab = getattr(clip, "vocab_size", None)
    if vocab == 49408:
        return ClipTokenizer.from_bpe(context_length=clip.context_length)
    tok = scene_tokenizer(context_length=min(32, getattr(clip, "context_length", 32)))
    if vocab is not None and vocab < tok.vocab_size:
        raise PaperzooError(f"the model's vocabulary ({vocab} tokens) is smaller than the scene vocabulary ({tok.vocab_size})")
    return tok


@torch.no_grad()
def predict_multimodal(net: torch.nn.Module, task: str, x: torch.Tensor, resized: torch.Tensor, picture: torch.Tensor,
                       out: Path, result: dict[str, Any], labels: list[str] | None = None,
                       prompt: str | None = None) -> dict[str, Any]:
    from torchvision.io import write_png
    from torchvision.utils import draw_segmentation_masks

    tok = tokenizer_for(net)
    if task == "contrastive":
        from ...run import _draw_classification
        from .clip import SIMPLE_IMAGENET_TEMPLATES, ZeroShotClassifier

        if not labels:
            raise PaperzooError('zero-shot classification needs class names: --labels "a,b,c"')
        templates = SIMPLE_IMAGENET_TEMPLATES if net.vocab_size == 49408 else ("a {}",)
        probs = ZeroShotClassifier(net, labels, tok, templates)(x).softmax(1)[0]
        top = probs.topk(min(5, len(labels)))
        names = [labels[int(i)] for i in top.indices]
        _draw_classification(picture, names, top.values.tolist(), out)
        result["top"] = [{"label": n, "probability": round(float(p), 4)} for n, p in zip(names, top.values)]
        return result
    if task == "prompted-segmentation":
        if not prompt:
            raise PaperzooError('CLIPSeg needs a text prompt: --prompt "a red star"')
        mask = net(x, tok([prompt]))[0] > 0
        write_png(draw_segmentation_masks(resized[:3], mask, alpha=0.6, colors="red"), str(out))
        result.update(prompt=prompt, mask_fraction=float(mask.float().mean()))
        return result
    ids = net.generate(x, beam_size=3)[0]
    caption = tok.decode(ids)
    from ...run import _draw_classification

    _draw_classification(picture, [caption], [1.0], out)
    result["caption"] = caption
    return result
