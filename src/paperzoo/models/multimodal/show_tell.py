"""Show and Tell (Vinyals et al., 2015, arXiv:1411.4555) and Show, Attend and Tell (Xu et al., 2015, arXiv:1502.03044).

**Show and Tell** (section 3): maximise log p(S | I) = sum_t log p(S_t | I, S_0..S_{t-1}) with an LSTM language
model that sees the image once: x_{-1} = CNN(I) (the CNN's pooled features through a linear map into the word
space), x_t = W_e S_t for t = 0..N-1 (S_0 the start word), p_{t+1} = softmax(W_o LSTM(x_t)) (eq. 10-12). The
loss is the negative log-likelihood of the correct word at every step (eq. 13). Sentences are generated greedily or
by beam search (section 4.3.1; the paper's beam size: 20, and 3 in its later evaluation).

**Show, Attend and Tell** (section 3): the CNN's last convolutional map gives L annotation vectors a_i (D each).
At every step a soft attention (eq. 4-5, "deterministic soft attention", section 4.2) weighs them by
alpha_ti = softmax_i(f_att(a_i, h_{t-1})), the context is z_t = beta_t * sum_i alpha_ti a_i with the gating scalar
beta_t = sigmoid(f_beta(h_{t-1})) (section 4.2.1), and the LSTM takes [E y_{t-1}, z_t]. Its initial state is an MLP
of the mean annotation (section 3.1.2); the output is the deep output layer
p(y_t) = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t)) (eq. 7). Training adds the doubly stochastic penalty
lambda * sum_i (1 - sum_t alpha_ti)^2 (eq. 14), which asks every location to be attended about once over the
sentence. ``hard=True`` samples the location instead (stochastic "hard" attention, section 4.1): alpha becomes a
one-hot draw from the attention distribution in training, and the arg-max location in evaluation. No gradient flows
through a sample, so the attention is trained by eq. 12's score-function (REINFORCE) term: the captioning task adds
-lambda_r (log p(y | s) - b) sum_t log p(s_t) with a moving-average baseline b, and an entropy bonus lambda_e H[s]; the
model keeps the sampled locations' log-probabilities and entropies of its last forward pass for it
(``sample_log_prob``, ``sample_entropy``).

Both decoders share ``beam_search`` (batched over images and beams, no loop over the batch).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...registry import create_model, register_model

__all__ = ["ShowAndTell", "ShowAttendTell", "beam_search", "doubly_stochastic_penalty"]


def _encoder(backbone: str, pretrained_backbone, backbone_args: dict | None) -> nn.Module:
    """The backbone's feature maps (``features_only``); the decoders read the last (deepest) one."""
    return create_model(backbone, pretrained=pretrained_backbone, features_only=True, **(backbone_args or {}))


class _Captioner(nn.Module):
    """What both decoders share: an encoder, word embeddings, the special token ids, and decoding."""

    pad_id = 0

    def __init__(self, vocab_size: int, sot_id: int | None, eot_id: int | None) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.sot_id = vocab_size - 2 if sot_id is None else sot_id  # the scene tokenizer's ids: [SOS], [EOS] last
        self.eot_id = vocab_size - 1 if eot_id is None else eot_id

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)[-1]

    def allowed(self) -> torch.Tensor:
        """Tokens a generated sentence may contain: all but padding and the start word."""
        keep = torch.ones(self.vocab_size, dtype=torch.bool)
        keep[[self.pad_id, self.sot_id]] = False
        return keep

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_len: int = 20, beam_size: int = 1) -> list[list[int]]:
        """Token ids of the best sentence per image (without [SOS]/[EOS]): greedy (``beam_size=1``) or beam search."""
        seqs, _ = beam_search(self, images, beam_size, max_len)
        out = []
        for s in seqs[:, 0].tolist():
            out.append(s[: s.index(self.eot_id)] if self.eot_id in s else s)
        return out

    def sequence_log_prob(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """log p(S | I) of given sentences ``tokens`` (B, n) (without [SOS]), by teacher forcing: the sum over steps of
        the log-probabilities of each word among the allowed ones."""
        ids = torch.cat([torch.full_like(tokens[:, :1], self.sot_id), tokens], dim=1)
        logits = self(images, ids)[0] if isinstance(self, ShowAttendTell) else self(images, ids)
        logits = logits.masked_fill(~self.allowed().to(logits.device), float("-inf"))
        return logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1).sum(1)


class ShowAndTell(_Captioner):
    """CNN encoder + LSTM decoder with the image as the input at t = -1 (see the module docstring)."""

    def __init__(self, vocab_size: int, backbone: str = "resnet50", embed_dim: int = 512, hidden_dim: int = 512,
                 dropout: float = 0.0, pretrained_backbone=None, backbone_args: dict | None = None,
                 sot_id: int | None = None, eot_id: int | None = None) -> None:
        super().__init__(vocab_size, sot_id, eot_id)
        self.encoder = _encoder(backbone, pretrained_backbone, backbone_args)
        self.image_embed = nn.Linear(self.encoder.out_channels[-1], embed_dim)  # x_{-1} = W_I CNN(I)
        self.embed = nn.Embedding(vocab_size, embed_dim)  # W_e
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)  # W_o

    def image_input(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_embed(self.features(images).mean(dim=(2, 3)))

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``token_ids`` (B, L) = [SOS] w_1 ... w_n [EOS] pad...; returns logits (B, L-1, V) whose
        step t predicts token_ids[:, t + 1]."""
        x = torch.cat([self.image_input(images)[:, None], self.embed(token_ids[:, :-1])], dim=1)
        h, _ = self.lstm(self.drop(x))
        return self.out(self.drop(h[:, 1:]))  # the output at t = -1 predicts nothing

    # -- step-wise decoding (beam search)
    def start(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _, (h, c) = self.lstm(self.image_input(images)[:, None])
        return h, c

    def step(self, state: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, c = state
        out, (h, c) = self.lstm(self.embed(tokens)[:, None], (h, c))
        return self.out(out[:, 0]), (h, c)

    @staticmethod
    def reorder(state: tuple[torch.Tensor, ...], index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(s.index_select(1, index) for s in state)  # nn.LSTM's states are (layers, N, H)


class ShowAttendTell(_Captioner):
    """CNN annotation grid + LSTM with soft (or hard) attention, gating scalar beta and the deep output layer."""

    def __init__(self, vocab_size: int, backbone: str = "resnet50", embed_dim: int = 512, hidden_dim: int = 512,
                 attn_dim: int = 512, dropout: float = 0.0, hard: bool = False, pretrained_backbone=None,
                 backbone_args: dict | None = None, sot_id: int | None = None, eot_id: int | None = None) -> None:
        super().__init__(vocab_size, sot_id, eot_id)
        self.hard = hard
        self._picks: list = []
        self.encoder = _encoder(backbone, pretrained_backbone, backbone_args)
        d = self.encoder.out_channels[-1]
        self.embed = nn.Embedding(vocab_size, embed_dim)  # E
        self.init_h, self.init_c = nn.Linear(d, hidden_dim), nn.Linear(d, hidden_dim)  # f_init,h / f_init,c
        self.att_a, self.att_h = nn.Linear(d, attn_dim), nn.Linear(hidden_dim, attn_dim)  # f_att: an MLP on a_i, h
        self.att_w = nn.Linear(attn_dim, 1)
        self.f_beta = nn.Linear(hidden_dim, 1)  # the gating scalar
        self.cell = nn.LSTMCell(embed_dim + d, hidden_dim)
        self.L_h, self.L_z = nn.Linear(hidden_dim, embed_dim), nn.Linear(d, embed_dim)  # deep output, eq. 7
        self.L_o = nn.Linear(embed_dim, vocab_size)
        self.drop = nn.Dropout(dropout)

    def annotations(self, images: torch.Tensor) -> torch.Tensor:
        """The L = H x W annotation vectors a_i (B, L, D) of the last conv map."""
        return self.features(images).flatten(2).transpose(1, 2)

    def attend(self, a: torch.Tensor, a_proj: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha (B, L) and the gated context z = beta * sum_i alpha_i a_i (B, D)."""
        e = self.att_w(torch.tanh(a_proj + self.att_h(h)[:, None])).squeeze(-1)  # f_att, eq. 4
        alpha = e.softmax(dim=1)  # eq. 5
        if self.hard:  # stochastic hard attention: one location, sampled in training, the most likely one at test
            pick = torch.multinomial(alpha, 1) if self.training else alpha.argmax(1, keepdim=True)
            self._picks.append((alpha.clamp_min(1e-12).log().gather(1, pick).squeeze(1),
                                -(alpha * alpha.clamp_min(1e-12).log()).sum(1)))
            alpha = torch.zeros_like(alpha).scatter_(1, pick, 1.0)
        beta = torch.sigmoid(self.f_beta(h))  # section 4.2.1
        return alpha, beta * torch.bmm(alpha[:, None], a).squeeze(1)

    def start(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = self.annotations(images)
        mean = a.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), a, self.att_a(a)

    def _step(self, state: tuple[torch.Tensor, ...], tokens: torch.Tensor):
        h, c, a, a_proj = state
        y = self.embed(tokens)
        alpha, z = self.attend(a, a_proj, h)
        h, c = self.cell(torch.cat([y, z], dim=1), (h, c))
        logits = self.L_o(self.drop(y + self.L_h(self.drop(h)) + self.L_z(z)))  # deep output layer, eq. 7
        return logits, alpha, (h, c, a, a_proj)

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, L-1, V) (step t predicts token_ids[:, t + 1]) and the attention weights
        alpha (B, L-1, H*W) of every step."""
        state = self.start(images)
        logits, alphas = [], []
        self._picks = []
        for t in range(token_ids.shape[1] - 1):
            out, alpha, state = self._step(state, token_ids[:, t])
            logits.append(out)
            alphas.append(alpha)
        if self.hard:  # (B, T) each: log p(s_t) of the sampled locations and the attention's entropy
            self.sample_log_prob = torch.stack([p for p, _ in self._picks], 1)
            self.sample_entropy = torch.stack([h for _, h in self._picks], 1)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    def step(self, state, tokens):
        logits, _, state = self._step(state, tokens)
        return logits, state

    @staticmethod
    def reorder(state, index):
        return tuple(s.index_select(0, index) for s in state)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor, tokens: Sequence[Sequence[int]] | torch.Tensor) -> torch.Tensor:
        """The attention (B, n, H, W) while reading given sentences ``tokens`` (without [SOS]) word by word."""
        tokens = torch.as_tensor(tokens, device=images.device)
        ids = torch.cat([torch.full_like(tokens[:, :1], self.sot_id), tokens], dim=1)
        grid = self.features(images[:1]).shape[-2:]
        _, alpha = self(images, ids)
        return alpha.reshape(*alpha.shape[:2], *grid)


def doubly_stochastic_penalty(alphas: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """eq. 14's regulariser sum_i (1 - sum_t alpha_ti)^2 per sentence, averaged over the batch. ``alphas`` (B, T, L);
    ``mask`` (B, T) marks the real (non-padding) steps."""
    if mask is not None:
        alphas = alphas * mask[..., None].to(alphas.dtype)
    return ((1 - alphas.sum(dim=1)) ** 2).sum(dim=1).mean()


@torch.no_grad()
def beam_search(model: _Captioner, images: torch.Tensor, beam_size: int = 3, max_len: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search over sentences w_1..w_n (n <= ``max_len``) ending at [EOS] (or cut at ``max_len``), scored by
    sum_t log p(w_t | I, w_<t) (no length normalisation). Batched: B images x K beams are one batch of B*K.
    Returns the sequences (B, K, max_len) (padded after [EOS]) and their scores (B, K), best first; K = 1 is greedy.
    """
    b, k, dev = len(images), beam_size, images.device
    keep = model.allowed().to(dev)
    state = model.start(images)
    expand = torch.arange(b, device=dev).repeat_interleave(k)
    state = model.reorder(state, expand)
    tokens = torch.full((b * k,), model.sot_id, dtype=torch.long, device=dev)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # every beam starts as the same empty sentence: keep one copy
    seqs = torch.full((b, k, max_len), model.pad_id, dtype=torch.long, device=dev)
    done = torch.zeros(b, k, dtype=torch.bool, device=dev)
    v = model.vocab_size
    for t in range(max_len):
        logits, state = model.step(state, tokens)
        logp = logits.float().masked_fill(~keep, float("-inf")).log_softmax(-1).reshape(b, k, v)
        # a finished sentence continues only with padding, at no cost
        stay = torch.full((v,), float("-inf"), device=dev)
        stay[model.pad_id] = 0.0
        logp = torch.where(done[..., None], stay, logp)
        cand = (scores[..., None] + logp).reshape(b, k * v)
        scores, idx = cand.topk(k, dim=1)
        parent, word = idx // v, idx % v
        seqs = seqs.gather(1, parent[..., None].expand(-1, -1, max_len)).clone()
        seqs[:, :, t] = word
        done = done.gather(1, parent) | (word == model.eot_id)
        flat = (parent + torch.arange(b, device=dev)[:, None] * k).reshape(-1)
        state = model.reorder(state, flat)
        tokens = word.reshape(-1)
        if bool(done.all()):
            break
    return seqs, scores


# ------------------------------------------------------------------------------------------------ variants
def _scene_vocab() -> int:
    from .tokenizer import scene_tokenizer

    return scene_tokenizer().vocab_size


_META = dict(task="captioning", input_size=(3, 224, 224), num_classes=0)


@register_model(paper="show-and-tell", **_META,
                notes="ResNet-50 encoder in place of the paper's GoogLeNet (BN-Inception); embedding and LSTM 512 wide as in "
                      "the paper; vocab_size defaults to the synthetic scenes' word vocabulary.")
def show_and_tell(vocab_size: int | None = None, num_classes: int | None = None, backbone: str = "resnet50",
                  embed_dim: int = 512, hidden_dim: int = 512, **kwargs) -> ShowAndTell:
    """Show and Tell: CNN features at t = -1, an LSTM of 512 units, word embeddings of 512. ``num_classes`` is
    accepted for the registry's uniform signature (the vocabulary is ``vocab_size``)."""
    return ShowAndTell(vocab_size or _scene_vocab(), backbone, embed_dim, hidden_dim, **kwargs)


@register_model(paper="show-attend-tell", **_META,
                notes="ResNet-50's last conv map (7x7x2048 at 224 px) as the annotation grid, in place of VGG-19's 14x14x512.")
def show_attend_tell(vocab_size: int | None = None, num_classes: int | None = None, backbone: str = "resnet50",
                     embed_dim: int = 512, hidden_dim: int = 512, attn_dim: int = 512, **kwargs) -> ShowAttendTell:
    """Show, Attend and Tell with deterministic soft attention (``hard=True``: stochastic hard attention)."""
    return ShowAttendTell(vocab_size or _scene_vocab(), backbone, embed_dim, hidden_dim, attn_dim, **kwargs)
