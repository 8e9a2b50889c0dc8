"""Learning Transferable Visual Models From Natural Language Supervision (Radford et al., 2021, arXiv:2103.00020).

CLIP trains an image encoder and a text encoder jointly so that the embeddings of an image and of its caption
are close (section 2.3, Fig. 3's pseudo-code):

* image encoder (section 2.4): a modified ResNet (``ModifiedResNet``: a 3-conv stem, anti-aliased strided
  convolutions -- an average pool before each stride-2 convolution -- and an attention pooling layer in place of
  global average pooling) or a Vision Transformer with an extra LayerNorm before the transformer (``ln_pre``);
* text encoder: a 12-layer, 512-wide Transformer over lower-cased BPE tokens, with a causal (masked)
  self-attention mask; the activation of the highest layer at the [EOS] token, layer-normed and linearly
  projected, is the text feature (``encode_text``);
* both features are linearly projected into the joint embedding space and L2-normalised; the cosine
  similarities scaled by a learned temperature, ``exp(t)`` clipped at 100, are the logits of a symmetric
  cross-entropy over the batch (``clip_loss``);
* zero-shot transfer (section 3.1): the class names, put into prompt templates ("a photo of a {}."), are
  encoded once; the mean of the normalised embeddings over templates (prompt ensembling, section 3.1.4) is each
  class's weight vector of a linear classifier (``ZeroShotClassifier``).

The layout and parameter names are OpenAI's released ones (open_clip keeps them), with QuickGELU
``x * sigmoid(1.702 x)`` in every transformer MLP; ``act="gelu"`` gives LAION-trained (open_clip, non-quickgelu)
weights. Weights load from open_clip (``source="open_clip"``, OpenAI's keys) and from Hugging Face ``CLIPModel``
(``source="transformers"``, ViT models).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ...weights import register_converter
from .imagenet_classnames import IMAGENET_CLASSNAMES

__all__ = ["CLIP", "ModifiedResNet", "VisionTransformer", "ZeroShotClassifier", "clip_loss", "linear_probe",
           "CLIP_MEAN", "CLIP_STD", "IMAGENET_CLASSNAMES", "OPENAI_IMAGENET_TEMPLATES",
           "SIMPLE_IMAGENET_TEMPLATES"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The paper's 80 ImageNet prompt templates (its prompt-engineering notebook, the ensemble of section 3.1.4), and
# the 7 of them that the same notebook found to do about as well; the zero-shot classifier takes any list.
OPENAI_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
    "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.",
    "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.", "a origami {}.",
    "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.",
    "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.", "a embroidered {}.",
    "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.", "a good photo of a {}.",
    "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.",
    "the cartoon {}.", "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
    "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.", "itap of a {}.",
    "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.",
    "a tattoo of the {}.",
)
SIMPLE_IMAGENET_TEMPLATES = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.", "a {} in a video game.",
    "art of the {}.", "a photo of the small {}.",
)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP was trained with: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _act(act: str) -> Callable[[], nn.Module]:
    if act == "quick_gelu":
        return QuickGELU
    if act == "gelu":
        return nn.GELU
    raise ValueError(f"act must be 'quick_gelu' or 'gelu', not '{act}'")


class MultiheadAttention(nn.Module):
    """Multi-head attention with OpenAI's parameter layout (one packed ``in_proj``), computed by
    ``F.scaled_dot_product_attention``. ``query`` may be shorter than ``x`` (attention pooling)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool = False, query: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3)
        q = F.linear(x if query is None else query, wq, bq)
        k, v = F.linear(x, wk, bk), F.linear(x, wv, bv)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, q.shape[1], d))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with a 4x MLP."""

    def __init__(self, width: int, heads: int, act: str = "quick_gelu") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=_act(act)(),
                                             c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """``layers`` residual attention blocks; ``forward(..., keep=...)`` also returns the outputs of the blocks
    whose (1-based) numbers are in ``keep`` (CLIPSeg reads layers 3, 6 and 9)."""

    def __init__(self, width: int, layers: int, heads: int, act: str = "quick_gelu") -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, act) for _ in range(layers)])

    def forward(self, x: torch.Tensor, causal: bool = False, keep: Sequence[int] = (),
                stop: int | None = None) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        kept = []
        for i, block in enumerate(self.resblocks[:stop], 1):
            x = block(x, causal=causal)
            if i in keep:
                kept.append(x)
        return (x, kept) if keep else x


class VisionTransformer(nn.Module):
    """CLIP's ViT: patches by a bias-free conv, a class token, learned position embeddings, ``ln_pre``, the
    transformer, ``ln_post`` on the class token and the projection ``proj`` (width x embed_dim)."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 act: str = "quick_gelu") -> None:
        super().__init__()
        self.image_size, self.patch_size, self.output_dim = image_size, patch_size, output_dim
        self.grid = image_size // patch_size
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """The position embeddings for an ``h`` x ``w`` patch grid: bicubically resized from the trained grid
        when the input has another size (as Hugging Face's ``interpolate_pos_encoding`` does)."""
        pos = self.positional_embedding
        if (h, w) == (self.grid, self.grid):
            return pos
        grid = pos[1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, -1)])

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> the transformer's input tokens (class token first), after ``ln_pre``."""
        x = self.conv1(x)
        b, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(b, 1, d), x], dim=1)
        return self.ln_pre(x + self.position_embedding(h, w).to(x.dtype))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x[:, 0]) @ self.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.transformer(self.tokens(x)))


class Bottleneck(nn.Module):
    """ResNet bottleneck with CLIP's anti-aliasing: the stride is an average pool after the 3x3 conv (and before
    the 1x1 projection of the shortcut), so every convolution has stride 1."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                                                         ("1", nn.BatchNorm2d(out))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class AttentionPool2d(nn.Module):
    """Attention pooling (section 2.4): one layer of multi-head QKV attention whose query is the global average
    of the feature map (with position embeddings added to every position and to the mean)."""

    def __init__(self, grid: int, dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.grid, self.heads = grid, heads
        self.positional_embedding = nn.Parameter(torch.randn(grid ** 2 + 1, dim) / dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        pos = self.positional_embedding
        if (h, w) != (self.grid, self.grid):
            grid = pos[1:].reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
            pos = torch.cat([pos[:1], grid.reshape(h * w, d)])
        x = x + pos.to(x.dtype)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, d)
        return self.c_proj(out)


class ModifiedResNet(nn.Module):
    """CLIP's ResNet (section 2.4): a stem of three 3x3 convs (the first with stride 2) and a 2x2 average pool,
    four stages of anti-aliased bottlenecks, and attention pooling to ``output_dim``."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int, image_size: int = 224, width: int = 64) -> None:
        super().__init__()
        self.image_size, self.output_dim = image_size, output_dim
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = [Bottleneck(inplanes, planes, 1 if i == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.attnpool = AttentionPool2d(image_size // 32, width * 32, heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(self.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIP(nn.Module):
    """Image encoder ``visual``, text transformer (``token_embedding``, ``positional_embedding``, ``transformer``,
    ``ln_final``, ``text_projection``) and the learned log inverse temperature ``logit_scale`` (init log 1/0.07).

    ``forward(images, token_ids)`` gives ``(image_features, text_features, scale)``: both L2-normalised, and
    ``scale = exp(logit_scale)`` clipped at 100 (the paper clips it "to prevent scaling the logits by more than
    100"; the clamp also stops its gradient there). ``clip_loss`` turns them into the symmetric loss.
    """

    def __init__(self, embed_dim: int, visual: nn.Module, vocab_size: int = 49408, context_length: int = 77,
                 text_width: int = 512, text_heads: int = 8, text_layers: int = 12, act: str = "quick_gelu") -> None:
        super().__init__()
        self.embed_dim, self.context_length, self.vocab_size = embed_dim, context_length, vocab_size
        self.visual = visual
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, text_width))
        self.transformer = Transformer(text_width, text_layers, text_heads, act)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.empty(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self._init_text()

    def _init_text(self) -> None:
        """OpenAI's initialisation of the text tower (normal, std 0.02 / 0.01 and width-scaled projections)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std, attn_std, fc_std = (width ** -0.5) * ((2 * layers) ** -0.5), width ** -0.5, (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def image_size(self) -> int:
        return self.visual.image_size

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Images (B, 3, H, W), normalised with CLIP's mean/std -> image features (B, embed_dim)."""
        f = self.visual(images)
        return F.normalize(f, dim=-1) if normalize else f

    def text_tokens(self, token_ids: torch.Tensor, keep: Sequence[int] = ()):
        """Token ids -> the transformer's token states (before ``ln_final``), causally masked."""
        n = token_ids.shape[1]
        if n > self.context_length:
            raise ValueError(f"token ids are {n} long; the context length is {self.context_length}")
        x = self.token_embedding(token_ids) + self.positional_embedding[:n]
        return self.transformer(x, causal=True, keep=keep)

    def encode_text(self, token_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Token ids (B, L) with [SOS] first and [EOS] the highest id (OpenAI's tokens: 49406, 49407) -> text
        features (B, embed_dim): the final layer-normed state at [EOS] (the argmax of the ids), projected."""
        x = self.ln_final(self.text_tokens(token_ids))
        f = x[torch.arange(len(x), device=x.device), token_ids.argmax(dim=-1)] @ self.text_projection
        return F.normalize(f, dim=-1) if normalize else f

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clipped at 100."""
        return self.logit_scale.exp().clamp(max=100.0)

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode_image(images, normalize=True), self.encode_text(token_ids, normalize=True), self.scale()


# ---------------------------------------------------------------------------------------------- the loss
def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' ``x`` concatenated in rank order (``torch.distributed.nn.all_gather``: the backward pass
    sends each process the gradient of its own features), and this process's rank; ``(x, 0)`` in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x)), dist.get_rank()


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor | float,
              gather: bool = True) -> torch.Tensor:
    """The symmetric InfoNCE loss of Fig. 3: logits = scale * I_e T_e^T over the global batch, then the mean of
    the cross-entropies along images (each image's caption among all captions) and along texts.

    Under ``torchrun`` (``gather=True``) every process gathers all features with their gradients and scores its
    own rows and columns against the whole batch: the N x N matrix is shared out by rows, and the averaged
    gradients equal those of one process holding the global batch. Features are expected L2-normalised.
    """
    if gather:
        all_img, rank = gather_with_grad(image_features)
        all_txt, _ = gather_with_grad(text_features)
    else:
        all_img, all_txt, rank = image_features, text_features, 0
    n = len(image_features)
    labels = torch.arange(n, device=image_features.device) + rank * n
    logits_per_image = scale * image_features @ all_txt.T  # (n, N): my images against every caption
    logits_per_text = scale * text_features @ all_img.T  # (n, N): my captions against every image
    return (F.cross_entropy(logits_per_image.float(), labels) + F.cross_entropy(logits_per_text.float(), labels)) / 2


# ---------------------------------------------------------------------------------------------- zero-shot
class ZeroShotClassifier(nn.Module):
    """Section 3.1: a linear classifier whose weights are the text embeddings of the class names.

    For each class, every template (``"a photo of a {}."``) is filled with its name, tokenised, encoded and
    L2-normalised; with several templates the embeddings are averaged and re-normalised (prompt ensembling,
    section 3.1.4, computed in embedding space so it costs nothing at test time). ``forward(images)`` gives
    ``scale * cos(image, class)`` logits (B, K). ``tokenizer(list_of_str) -> LongTensor (n, L)``.
    """

    def __init__(self, model: CLIP, class_names: Sequence[str], tokenizer: Callable[[list[str]], torch.Tensor],
                 templates: Sequence[str] = ("a photo of a {}.",)) -> None:
        super().__init__()
        if not class_names:
            raise ValueError("a zero-shot classifier needs at least one class name")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("every prompt template needs a '{}' where the class name goes")
        self.model, self.class_names, self.templates = model, list(class_names), list(templates)
        self.register_buffer("weight", self.class_embeddings(tokenizer), persistent=False)

    @torch.no_grad()
    def class_embeddings(self, tokenizer: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        device = self.model.logit_scale.device
        texts = [t.format(c) for c in self.class_names for t in self.templates]
        f = self.model.encode_text(tokenizer(texts).to(device), normalize=True)
        f = f.reshape(len(self.class_names), len(self.templates), -1).mean(dim=1)
        return F.normalize(f, dim=-1)  # (K, E)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = self.model.encode_image(images, normalize=True)
        return self.model.scale() * f @ self.weight.to(f.dtype).T


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 C: float = 10.0) -> torch.Tensor:
    """The linear-probe evaluation (section 3.2, appendix A.3): L2-regularised logistic regression (L-BFGS,
    scikit-learn's) on frozen image features; returns the predicted labels of ``test_features``. The paper sweeps the
    inverse regularisation ``C`` on a validation split."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():  # one shot per class: "more unique classes than half the samples"
        warnings.simplefilter("ignore", UserWarning)
        clf = LogisticRegression(C=C, max_iter=1000).fit(train_features.float().cpu().numpy(), train_labels.cpu().numpy())
    return torch.as_tensor(clf.predict(test_features.float().cpu().numpy()))


# ---------------------------------------------------------------------------------------------- variants
def _clip(vision: str, *, embed_dim: int = 512, image_size: int = 224, width: int = 768, layers=12, patch_size: int = 32,
          text_width: int = 512, text_heads: int = 8, text_layers: int = 12, vocab_size: int = 49408,
          context_length: int = 77, act: str = "quick_gelu", num_classes: int | None = None, heads: int | None = None) -> CLIP:
    """``num_classes`` is accepted for the registry's uniform signature; CLIP's classes come from text prompts."""
    if vision == "vit":
        visual: nn.Module = VisionTransformer(image_size, patch_size, width, layers, heads or width // 64, embed_dim, act)
    else:
        visual = ModifiedResNet(layers, embed_dim, heads or width * 32 // 64, image_size, width)
    return CLIP(embed_dim, visual, vocab_size, context_length, text_width, text_heads, text_layers, act)


_META = dict(paper="clip", task="contrastive", mean=CLIP_MEAN, std=CLIP_STD, num_classes=0)
_NOTE = "paper_params_m: the released model's parameter count (image + text towers, OpenAI's checkpoint)."


@register_model(**_META, paper_params_m=102.0, reference={"open_clip": "RN50-quickgelu"}, notes=_NOTE)
def clip_rn50(**kwargs) -> CLIP:
    """CLIP RN50: ResNet-50 (3, 4, 6, 3) with attention pooling, embed dim 1024, text 512 wide."""
    return _clip("resnet", **{"embed_dim": 1024, "layers": (3, 4, 6, 3), "width": 64, **kwargs})


@register_model(**_META, paper_params_m=119.7, reference={"open_clip": "RN101-quickgelu"}, notes=_NOTE)
def clip_rn101(**kwargs) -> CLIP:
    """CLIP RN101: ResNet-101 (3, 4, 23, 3), embed dim 512."""
    return _clip("resnet", **{"embed_dim": 512, "layers": (3, 4, 23, 3), "width": 64, **kwargs})


@register_model(**_META, paper_params_m=151.3, notes=_NOTE,
                reference={"open_clip": "ViT-B-32-quickgelu", "transformers": "openai/clip-vit-base-patch32"})
def clip_vit_b32(**kwargs) -> CLIP:
    """CLIP ViT-B/32: 12 x 768, patch 32 at 224 px, embed dim 512."""
    return _clip("vit", **{"embed_dim": 512, "width": 768, "layers": 12, "patch_size": 32, **kwargs})


@register_model(**_META, paper_params_m=149.6, notes=_NOTE,
                reference={"open_clip": "ViT-B-16-quickgelu", "transformers": "openai/clip-vit-base-patch16"})
def clip_vit_b16(**kwargs) -> CLIP:
    """CLIP ViT-B/16: 12 x 768, patch 16 at 224 px, embed dim 512."""
    return _clip("vit", **{"embed_dim": 512, "width": 768, "layers": 12, "patch_size": 16, **kwargs})


@register_model(**_META, paper_params_m=427.6, notes=_NOTE,
                reference={"open_clip": "ViT-L-14-quickgelu", "transformers": "openai/clip-vit-large-patch14"})
def clip_vit_l14(**kwargs) -> CLIP:
    """CLIP ViT-L/14: 24 x 1024, patch 14 at 224 px, embed dim 768, text 768 wide with 12 heads."""
    return _clip("vit", **{"embed_dim": 768, "width": 1024, "layers": 24, "patch_size": 14, "text_width": 768, "text_heads": 12,
                                **kwargs})


# ---------------------------------------------------------------------------------------------- converters
@register_converter("clip", "open_clip")
def _from_open_clip(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """open_clip keeps OpenAI's names; its causal mask buffer and (SigLIP-style) logit bias are not weights."""
    return {k: v for k, v in state_dict.items() if k not in ("attn_mask", "logit_bias")}


def _hf_layers(state: dict[str, torch.Tensor], src: str, dst: str, layers: int, out: dict[str, torch.Tensor]) -> None:
    for i in range(layers):
        s, d = f"{src}.encoder.layers.{i}", f"{dst}.resblocks.{i}"
        a = f"{s}.self_attn"
        out[f"{d}.attn.in_proj_weight"] = torch.cat([state.pop(f"{a}.{p}_proj.weight") for p in "qkv"])
        out[f"{d}.attn.in_proj_bias"] = torch.cat([state.pop(f"{a}.{p}_proj.bias") for p in "qkv"])
        for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for p in ("weight", "bias"):
                out[f"{d}.{ours}.{p}"] = state.pop(f"{s}.{theirs}.{p}")


def hf_clip_vision(state: dict[str, torch.Tensor], src: str, dst: str, layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face CLIP vision tower keys (``src`` = ``vision_model``) -> ours under ``dst`` (``visual``); the
    projection is left to the caller. Consumes the keys it maps from ``state``."""
    out: dict[str, torch.Tensor] = {}
    e = f"{src}.embeddings"
    out[f"{dst}.class_embedding"] = state.pop(f"{e}.class_embedding")
    out[f"{dst}.conv1.weight"] = state.pop(f"{e}.patch_embedding.weight")
    out[f"{dst}.positional_embedding"] = state.pop(f"{e}.position_embedding.weight")
    state.pop(f"{e}.position_ids", None)
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{dst}.{ours}.{p}"] = state.pop(f"{src}.{theirs}.{p}")
    _hf_layers(state, src, f"{dst}.transformer", layers, out)
    return out


def hf_clip_text(state: dict[str, torch.Tensor], src: str, layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face CLIP text tower keys (``src`` = ``text_model``) -> ours (top level of ``CLIP``)."""
    out: dict[str, torch.Tensor] = {}
    e = f"{src}.embeddings"
    out["token_embedding.weight"] = state.pop(f"{e}.token_embedding.weight")
    out["positional_embedding"] = state.pop(f"{e}.position_embedding.weight")
    state.pop(f"{e}.position_ids", None)
    for p in ("weight", "bias"):
        out[f"ln_final.{p}"] = state.pop(f"{src}.final_layer_norm.{p}")
    _hf_layers(state, src, "transformer", layers, out)
    return out


@register_converter("clip", "transformers")
def _from_transformers(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Hugging Face ``CLIPModel``: q/k/v projections are packed into ``in_proj``, the bias-free projection
    Linears become OpenAI's (width x embed) matrices (their transpose). ViT image towers only."""
    from ...errors import WeightsError

    if not isinstance(model.visual, VisionTransformer):
        raise WeightsError("Hugging Face CLIPModel has ViT image towers only; load ResNet CLIP weights with source='open_clip'")
    state = dict(state_dict)
    out = hf_clip_vision(state, "vision_model", "visual", model.visual.transformer.layers)
    out.update(hf_clip_text(state, "text_model", model.transformer.layers))
    out["visual.proj"] = state.pop("visual_projection.weight").T
    out["text_projection"] = state.pop("text_projection.weight").T
    out["logit_scale"] = state.pop("logit_scale")
    out.update(state)  # anything left is reported by load_weights as unmatched
    return out
