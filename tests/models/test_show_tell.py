"""Show and Tell and Show, Attend and Tell against their papers' equations: the LSTM fed the image once at t = -1
(eq. 10-12, gates written out by hand), the log-likelihood objective (eq. 13), beam search against exhaustive search
on a tiny vocabulary, soft attention (eq. 4-5), the gating scalar beta, the deep output layer (eq. 7), and the
doubly stochastic regulariser (eq. 14) on a hand example."""
from __future__ import annotations

import itertools

import pytest
import torch
from helpers import rel_err

import paperzoo as pz
from paperzoo.models.multimodal.show_tell import beam_search, doubly_stochastic_penalty
from paperzoo.tasks import get_task

V = 6  # pad, 3 words, [SOS] = 4, [EOS] = 5
TINY = dict(backbone="resnet20_cifar", embed_dim=8, hidden_dim=8, vocab_size=V)


def _lstm_by_hand(lstm: torch.nn.LSTM, xs: torch.Tensor) -> torch.Tensor:
    """The LSTM of Show and Tell's eq. 4-8, written out: i, f, o gates, c_t = f * c + i * tanh(.), m_t = o * c_t."""
    w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    n = w_hh.shape[1]
    h = c = torch.zeros(xs.shape[0], n)
    out = []
    for t in range(xs.shape[1]):
        g = xs[:, t] @ w_ih.T + h @ w_hh.T + b
        i, f, cc, o = g[:, :n].sigmoid(), g[:, n:2 * n].sigmoid(), g[:, 2 * n:3 * n].tanh(), g[:, 3 * n:].sigmoid()
        c = f * c + i * cc
        h = o * c.tanh()
        out.append(h)
    return torch.stack(out, 1)


@pytest.mark.paper("show-and-tell")
def test_image_is_the_first_input_and_the_objective_is_the_log_likelihood() -> None:
    """Logits equal W_o LSTM(x_t) with x_{-1} = W_I CNN(I) and x_t = W_e S_t (the image fed once, at t = -1, hand-written
    LSTM); the captioning loss equals -1/N sum_t log p_t(S_t) over the real words."""
    model = pz.create_model("show_and_tell", **TINY).eval()
    x = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[4, 1, 2, 3, 5, 0], [4, 3, 5, 0, 0, 0]])
    with torch.no_grad():
        img = model.image_embed(model.encoder(x)[-1].mean(dim=(2, 3)))
        xs = torch.cat([img[:, None], model.embed(ids[:, :-1])], dim=1)
        expected = model.out(_lstm_by_hand(model.lstm, xs)[:, 1:])
        logits = model(x, ids)
        assert rel_err(logits, expected) < 1e-5
        task = get_task("captioning", tokenizer=None)
        loss, _ = task.loss(model, (x, ids, None))
        logp = expected.log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        real = ids[:, 1:] != 0
        assert rel_err(loss, -logp[real].sum() / real.sum()) < 1e-5


@pytest.mark.paper("show-and-tell")
@pytest.mark.parametrize("name", ["show_and_tell", "show_attend_tell"])
def test_beam_search_equals_exhaustive_search(name: str, record_property) -> None:
    """On a 4-token vocabulary and sentences of up to 3 words, beam search with 16 beams (>= every partial sentence)
    returns the sentence of highest log p(S | I) over all 4 + 16 + 64 candidates, scored independently by teacher
    forcing, and its 16 beams are the 16 best sentences; beam size 1 equals greedy arg-max decoding."""
    torch.manual_seed(3)
    model = pz.create_model(name, **TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)  # less uniform than at initialisation (for show_and_tell, greedy then differs from beam)
    x = torch.randn(3, 3, 32, 32)
    words = [1, 2, 3, 5]
    cands = [list(s) for n in (1, 2, 3) for s in itertools.product(words, repeat=n) if 5 not in s[:-1]
             and (s[-1] == 5 or n == 3)]
    with torch.no_grad():
        lp = torch.stack([model.sequence_log_prob(x, torch.tensor([c] * 3)) for c in cands], 1)  # (B, candidates)
        seqs, scores = beam_search(model, x, beam_size=16, max_len=3)
        best = lp.argmax(1)
        for b in range(3):
            want = cands[int(best[b])]
            got = [t for t in seqs[b, 0].tolist() if t != 0]
            assert got == want, (b, got, want)
            assert abs(float(scores[b, 0]) - float(lp[b, best[b]])) < 1e-4
        # all 16 final beams are the 16 best complete sentences, with their exact scores
        assert torch.allclose(scores, lp.sort(1, descending=True).values[:, :16], atol=1e-4)
        # greedy: the arg-max word at every step
        greedy = beam_search(model, x, beam_size=1, max_len=3)[0][:, 0]
        for b in range(3):
            prefix: list[int] = []
            for _ in range(3):
                options = [prefix + [w] for w in words]
                step = [float(model.sequence_log_prob(x[b:b + 1], torch.tensor([o]))) for o in options]
                prefix = options[max(range(4), key=step.__getitem__)]
                if prefix[-1] == 5:
                    break
            assert [t for t in greedy[b].tolist() if t != 0] == prefix
    record_property("greedy_differs_from_beam", int(sum(greedy[b].tolist() != seqs[b, 0].tolist() for b in range(3))))


@pytest.mark.paper("show-attend-tell")
def test_soft_attention_gate_and_deep_output() -> None:
    """One decoding step by hand: alpha = softmax_i(w^T tanh(W_a a_i + W_h h)) sums to 1 over the L locations,
    z = sigmoid(f_beta(h)) * sum_i alpha_i a_i, the LSTM takes [E y, z], and p(y) = softmax(L_o(E y + L_h h_t + L_z z))."""
    model = pz.create_model("show_attend_tell", **TINY, attn_dim=5).eval()
    x = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[4, 1, 2], [4, 3, 5]])
    with torch.no_grad():
        logits, alphas = model(x, ids)
        assert torch.allclose(alphas.sum(-1), torch.ones(2, 2), atol=1e-6) and (alphas >= 0).all()
        a = model.encoder(x)[-1].flatten(2).transpose(1, 2)  # (B, L, D): L = 8 x 8 locations
        h0, c0 = torch.tanh(model.init_h(a.mean(1))), torch.tanh(model.init_c(a.mean(1)))
        e = torch.tanh(a @ model.att_a.weight.T + model.att_a.bias + (h0 @ model.att_h.weight.T + model.att_h.bias)[:, None])
        alpha = (e @ model.att_w.weight.T + model.att_w.bias).squeeze(-1).softmax(1)
        assert rel_err(alphas[:, 0], alpha) < 1e-5
        beta = torch.sigmoid(h0 @ model.f_beta.weight.T + model.f_beta.bias)
        z = beta * (alpha[..., None] * a).sum(1)
        y = model.embed(ids[:, 0])
        h1, _ = model.cell(torch.cat([y, z], 1), (h0, c0))
        expected = model.L_o(y + model.L_h(h1) + model.L_z(z))
        assert rel_err(logits[:, 0], expected) < 1e-5


@pytest.mark.paper("show-attend-tell")
def test_doubly_stochastic_penalty_on_a_hand_example(record_property) -> None:
    """eq. 14 on a hand example: two steps over two locations with alphas (0.5, 0.5) then (1, 0): the sums over time
    are 1.5 and 0.5, so the penalty is (1 - 1.5)^2 + (1 - 0.5)^2 = 0.5; a padded third step does not count; the
    captioning loss adds it with lambda = 1."""
    alphas = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]])
    value = doubly_stochastic_penalty(alphas, mask=torch.tensor([[True, True, False]]))
    record_property("penalty", float(value))
    assert abs(float(value) - 0.5) < 1e-7
    assert abs(float(doubly_stochastic_penalty(alphas)) - ((1 - 1.5) ** 2 + (1 - 1.5) ** 2)) < 1e-7
    model = pz.create_model("show_attend_tell", **TINY).eval()
    x, ids = torch.randn(2, 3, 32, 32), torch.tensor([[4, 1, 2, 5], [4, 3, 5, 0]])
    with torch.no_grad():
        loss, logs = get_task("captioning").loss(model, (x, ids, None))
        logits, al = model(x, ids)
        assert rel_err(loss, logs["nll"] + doubly_stochastic_penalty(al, ids[:, 1:] != 0)) < 1e-6


def test_hard_attention_is_trained_by_the_score_function() -> None:
    """No gradient flows through a sampled location; eq. 12's REINFORCE term gives the attention MLP one."""
    model = pz.create_model("show_attend_tell", **TINY, hard=True).train()
    x, ids = torch.randn(2, 3, 32, 32), torch.tensor([[4, 1, 2, 5], [4, 3, 5, 0]])
    task = get_task("captioning", tokenizer=None)
    task.baseline, task.entropy = -100.0, 0.0  # a baseline far from log p(y | s); no entropy bonus
    task.reinforce = 0.0
    task.loss(model, (x, ids, None))[0].backward()
    assert model.att_w.weight.grad is None or float(model.att_w.weight.grad.abs().sum()) == 0  # nothing through a sample
    model.zero_grad()
    task.reinforce = 1.0
    loss, logs = task.loss(model, (x, ids, None))
    loss.backward()
    assert model.att_w.weight.grad is not None and float(model.att_w.weight.grad.abs().sum()) > 0
    assert logs["baseline"] != -100.0


def test_hard_attention_picks_one_location() -> None:
    model = pz.create_model("show_attend_tell", **TINY, hard=True)
    x, ids = torch.randn(2, 3, 32, 32), torch.tensor([[4, 1, 2], [4, 3, 5]])
    for mode in (True, False):
        model.train(mode)
        _, alphas = model(x, ids)
        assert torch.equal(alphas.sum(-1), torch.ones(2, 2)) and torch.equal((alphas > 0).sum(-1), torch.ones(2, 2, dtype=torch.long))


def test_captioning_scores_come_from_pycocoevalcap() -> None:
    from pycocoevalcap.bleu.bleu import Bleu

    from paperzoo.tasks.captioning import caption_scores

    hyps, refs = ["a red star on the left", "a blue circle"], [["a red star in the top left"], ["a blue circle"]]
    scores = caption_scores(hyps, refs)
    bleu, _ = Bleu(4).compute_score({0: refs[0], 1: refs[1]}, {0: [hyps[0]], 1: [hyps[1]]}, verbose=0)
    assert scores["bleu4"] == bleu[3] and scores["bleu1"] == bleu[0] and scores["cider"] > 0
    assert caption_scores(refs[0] + refs[1], refs)["bleu4"] > 0.99
