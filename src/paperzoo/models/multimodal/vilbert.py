"""ViLBERT: Pretraining Task-Agnostic Visiolinguistic Representations for Vision-and-Language Tasks (Lu et al., 2019,
arXiv:1908.02265).

Two Transformer streams, one over words and one over image regions, exchange information only through
co-attentional layers (section 3.1, Fig. 1-2):

* the linguistic stream is BERT-base (12 layers, 768 wide); its embeddings, layers and pooler keep BERT's names, so
  Hugging Face ``BertModel`` weights load into ``text`` (``source="transformers"``);
* the visual stream embeds each region's detector feature plus a 5-d location (x1, y1, x2, y2 normalised by the
  image size, and the fraction of the image it covers) by two linear maps, summed (section 3.2); the first region
  is the whole image (the IMG token); it runs its own Transformer layers (1024 wide, 8 heads);
* a co-attentional layer (co-TRM, Fig. 2b) computes each stream's queries from its own states and takes keys and
  values from the other stream: the words attend to the regions and the regions to the words, then each stream has
  its residual, LayerNorm and feed-forward block. Co-TRMs sit after text layers ``t_biattention_id`` and visual
  layers ``v_biattention_id`` (the released configuration: after each of the 6 visual layers and after text layers
  6-11).

Pre-training (section 3.2): masked multimodal modelling -- predict masked words (BERT's MLM head) and, for masked
regions, the detector's class distribution (KL divergence) -- and multimodal alignment: does this caption describe
this image, from h_IMG * h_CLS (element-wise product of the two pooled outputs). A VQA head is an MLP on the same
product (section 4). ``co_attention=False`` turns every co-TRM off, leaving two independent streams.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ...weights import register_converter

__all__ = ["ViLBERT", "CoAttention", "box_encoding", "masked_region_loss", "pretraining_losses"]


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, n, d // n).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Scaled dot-product attention of q (B, Tq, D) over k, v (B, Tk, D); ``key_mask`` (B, Tk) True = attend."""
    mask = None if key_mask is None else key_mask[:, None, None, :].bool()
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads), attn_mask=mask)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return _attend(self.query(x), self.key(x), self.value(x), self.heads, mask)


class _Output(nn.Module):
    """dense -> dropout -> LayerNorm(residual + .) (BERT's post-norm residual)."""

    def __init__(self, d_in: int, d_out: int, dropout: float, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class _AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        setattr(self, "self", SelfAttention(dim, heads))  # BERT's key: attention.self.query
        self.output = _Output(dim, dim, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(getattr(self, "self")(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class TransformerLayer(nn.Module):
    """BERT's post-norm layer: self-attention, then a GELU feed-forward block, each with residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = _AttentionBlock(dim, heads, dropout)
        self.intermediate = _Intermediate(dim, hidden)
        self.output = _Output(hidden, dim, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class CoAttention(nn.Module):
    """The co-attentional Transformer layer (Fig. 2b): Q_W from the words with K_V, V_V from the regions, and Q_V from
    the regions with K_W, V_W from the words, in a shared width ``bi_dim``; then per stream residual + LayerNorm and
    the stream's feed-forward block."""

    def __init__(self, t_dim: int, v_dim: int, bi_dim: int, heads: int, t_hidden: int, v_hidden: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.query_t, self.key_t, self.value_t = nn.Linear(t_dim, bi_dim), nn.Linear(t_dim, bi_dim), nn.Linear(t_dim, bi_dim)
        self.query_v, self.key_v, self.value_v = nn.Linear(v_dim, bi_dim), nn.Linear(v_dim, bi_dim), nn.Linear(v_dim, bi_dim)
        self.out_t, self.out_v = _Output(bi_dim, t_dim, dropout), _Output(bi_dim, v_dim, dropout)
        self.t_intermediate, self.t_output = _Intermediate(t_dim, t_hidden), _Output(t_hidden, t_dim, dropout)
        self.v_intermediate, self.v_output = _Intermediate(v_dim, v_hidden), _Output(v_hidden, v_dim, dropout)

    def forward(self, t: torch.Tensor, v: torch.Tensor, t_mask: torch.Tensor | None = None,
                v_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        words_see_regions = _attend(self.query_t(t), self.key_v(v), self.value_v(v), self.heads, v_mask)
        regions_see_words = _attend(self.query_v(v), self.key_t(t), self.value_t(t), self.heads, t_mask)
        t = self.out_t(words_see_regions, t)
        v = self.out_v(regions_see_words, v)
        return self.t_output(self.t_intermediate(t), t), self.v_output(self.v_intermediate(v), v)


class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, dim: int, max_len: int = 512, types: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, dim)
        self.token_type_embeddings = nn.Embedding(types, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        types = torch.zeros_like(ids) if token_type_ids is None else token_type_ids
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings(types)
        return self.dropout(self.LayerNorm(x))


class _Encoder(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)


class _Pooler(nn.Module):
    def __init__(self, d_in: int, d_out: int, act: str) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x[:, 0])
        return torch.tanh(y) if self.act == "tanh" else F.relu(y)


class TextStream(nn.Module):
    """BERT with BERT's module names (``embeddings``, ``encoder.layer.N``, ``pooler``)."""

    def __init__(self, vocab: int, dim: int, layers: int, heads: int, hidden: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, dim, max_len, dropout=dropout)
        self.encoder = _Encoder([TransformerLayer(dim, heads, hidden, dropout) for _ in range(layers)])
        self.pooler = _Pooler(dim, dim, "tanh")


def box_encoding(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """The 5-d region location of section 3.2: (x1/W, y1/H, x2/W, y2/H, area / (W H)) of (..., 4) xyxy boxes."""
    h, w = image_size
    scale = boxes.new_tensor([w, h, w, h])
    b = boxes / scale
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return torch.cat([b, area[..., None]], dim=-1)


class ViLBERT(nn.Module):
    """Two streams with co-attention (see the module docstring).

    ``forward(token_ids, region_features, region_locations, text_mask=None, region_mask=None)`` returns the word
    states (B, T, 768), the region states (B, R, 1024) and the pooled h_CLS, h_IMG (B, bi_dim) each. Heads:
    ``mlm_logits``, ``region_logits`` (masked multimodal modelling), ``alignment_logits``, ``vqa_logits``.
    """

    def __init__(self, vocab_size: int = 30522, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                 v_feature_dim: int = 2048, v_hidden: int = 1024, v_layers: int = 6, v_heads: int = 8,
                 v_intermediate: int = 1024, bi_hidden: int = 1024, bi_heads: int = 8,
                 t_biattention_id: Sequence[int] = (6, 7, 8, 9, 10, 11), v_biattention_id: Sequence[int] = (0, 1, 2, 3, 4, 5),
                 v_target_size: int = 1601, num_answers: int = 3129, max_len: int = 512, dropout: float = 0.1,
                 co_attention: bool = True) -> None:
        super().__init__()
        if len(t_biattention_id) != len(v_biattention_id):
            raise ValueError("t_biattention_id and v_biattention_id must pair up co-attention layers")
        self.t_bi, self.v_bi, self.co_attention = tuple(t_biattention_id), tuple(v_biattention_id), co_attention
        self.text = TextStream(vocab_size, hidden, layers, heads, intermediate, max_len, dropout)
        self.v_embed = nn.Linear(v_feature_dim, v_hidden)  # region feature
        self.v_loc = nn.Linear(5, v_hidden)  # 5-d location
        self.v_norm = nn.LayerNorm(v_hidden, eps=1e-12)
        self.v_drop = nn.Dropout(dropout)
        self.v_layers = nn.ModuleList([TransformerLayer(v_hidden, v_heads, v_intermediate, dropout) for _ in range(v_layers)])
        self.c_layers = nn.ModuleList([CoAttention(hidden, v_hidden, bi_hidden, bi_heads, intermediate, v_intermediate, dropout)
                                       for _ in self.t_bi])
        self.t_pool = _Pooler(hidden, bi_hidden, "relu")  # ViLBERT's poolers into the shared width
        self.v_pool = _Pooler(v_hidden, bi_hidden, "relu")
        # heads
        self.mlm_transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))  # decoder tied to the word embeddings
        self.region_head = nn.Sequential(nn.Linear(v_hidden, v_hidden), nn.GELU(), nn.LayerNorm(v_hidden, eps=1e-12),
                                         nn.Linear(v_hidden, v_target_size))
        self.alignment_head = nn.Linear(bi_hidden, 2)
        self.vqa_head = nn.Sequential(nn.Linear(bi_hidden, 2 * bi_hidden), nn.GELU(), nn.LayerNorm(2 * bi_hidden, eps=1e-12),
                                      nn.Linear(2 * bi_hidden, num_answers)) if num_answers else None
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, token_ids: torch.Tensor, region_features: torch.Tensor, region_locations: torch.Tensor,
                text_mask: torch.Tensor | None = None, region_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None):
        t = self.text.embeddings(token_ids, token_type_ids)
        v = self.v_drop(self.v_norm(self.v_embed(region_features) + self.v_loc(region_locations)))
        t_layers, t_start, v_start = self.text.encoder.layer, 0, 0
        for c, (t_end, v_end) in enumerate(zip(self.t_bi, self.v_bi)):
            for layer in t_layers[t_start:t_end]:
                t = layer(t, text_mask)
            for layer in self.v_layers[v_start:v_end]:
                v = layer(v, region_mask)
            if self.co_attention:
                t, v = self.c_layers[c](t, v, text_mask, region_mask)
            t_start, v_start = t_end, v_end
        for layer in t_layers[t_start:]:
            t = layer(t, text_mask)
        for layer in self.v_layers[v_start:]:
            v = layer(v, region_mask)
        return t, v, self.t_pool(t), self.v_pool(v)

    def mlm_logits(self, words: torch.Tensor) -> torch.Tensor:
        return self.mlm_transform(words) @ self.text.embeddings.word_embeddings.weight.T + self.mlm_bias

    def region_logits(self, regions: torch.Tensor) -> torch.Tensor:
        return self.region_head(regions)

    def alignment_logits(self, h_cls: torch.Tensor, h_img: torch.Tensor) -> torch.Tensor:
        return self.alignment_head(h_cls * h_img)

    def vqa_logits(self, h_cls: torch.Tensor, h_img: torch.Tensor) -> torch.Tensor:
        return self.vqa_head(h_cls * h_img)


def masked_region_loss(logits: torch.Tensor, target_dist: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """KL(target || predicted) between the detector's class distribution and the prediction, over masked regions."""
    logp = logits.float().log_softmax(-1)
    kl = (target_dist * (target_dist.clamp_min(1e-12).log() - logp)).sum(-1)
    m = masked.float()
    return (kl * m).sum() / m.sum().clamp_min(1)


def pretraining_losses(model: ViLBERT, token_ids: torch.Tensor, region_features: torch.Tensor,
                       region_locations: torch.Tensor, mlm_labels: torch.Tensor, region_targets: torch.Tensor,
                       region_masked: torch.Tensor, aligned: torch.Tensor, text_mask: torch.Tensor | None = None,
                       region_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Section 3.2's two proxy tasks on one batch whose inputs are already masked (words replaced by [MASK], masked
    regions' features zeroed, as in the paper; 15% of each):

    * masked multimodal modelling: cross-entropy of the masked words (``mlm_labels``, -100 elsewhere) and
      KL(detector distribution || prediction) for the masked regions (``region_targets`` (B, R, C), ``region_masked``);
    * multimodal alignment: is the caption the image's own (``aligned`` 1) or another's (0), from h_IMG * h_CLS.
    Masked modelling is meant for aligned pairs only; its terms are averaged over those (``aligned == 1``)."""
    words, regions, h_cls, h_img = model(token_ids, region_features, region_locations, text_mask, region_mask)
    pos = aligned.bool()
    labels = mlm_labels.masked_fill(~pos[:, None], -100)
    mlm = F.cross_entropy(model.mlm_logits(words).float().flatten(0, 1), labels.flatten(), ignore_index=-100)
    region = masked_region_loss(model.region_logits(regions), region_targets, region_masked & pos[:, None])
    align = F.cross_entropy(model.alignment_logits(h_cls, h_img).float(), aligned.long())
    return {"mlm": mlm, "masked_region": region, "alignment": align}


@register_model(paper="vilbert", task="vqa", input_size=(3, 224, 224), num_classes=3129,
                reference={"transformers": "bert-base-uncased"},
                notes="Inputs are region features (2048-d, e.g. from a Faster R-CNN) and their boxes, not pixels.")
def vilbert(num_classes: int | None = None, **kwargs) -> ViLBERT:
    """ViLBERT's released configuration: BERT-base text stream, 6-layer 1024-wide visual stream, 6 co-TRMs of width
    1024 with 8 heads; ``num_classes`` is the VQA answer vocabulary (3,129)."""
    return ViLBERT(num_answers=3129 if num_classes is None else num_classes, **kwargs)


@register_converter("vilbert", "transformers")
def _from_transformers(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Hugging Face ``BertModel`` keys (``embeddings.*``, ``encoder.layer.N.*``, ``pooler.*``, optionally prefixed
    ``bert.``) -> the linguistic stream ``text.*``. Every other tensor of the model is left as it is."""
    out = {}
    for k, v in state_dict.items():
        k = k[len("bert."):] if k.startswith("bert.") else k
        if k.endswith("position_ids") or k.endswith("token_type_ids"):
            continue
        out[f"text.{k}"] = v
    own = model.state_dict()
    out.update({k: v for k, v in own.items() if not k.startswith("text.")})
    return out
