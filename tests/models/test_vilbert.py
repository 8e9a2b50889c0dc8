"""ViLBERT: with co-attention off, the linguistic stream equals Hugging Face ``BertModel`` for the same (random,
perturbed) weights; the co-attention equations by hand; the released layer sizes; the pre-training losses."""
from __future__ import annotations

import pytest
import torch
from helpers import perturb_, rel_err
from transformers import BertConfig, BertModel

import paperzoo as pz
from paperzoo.models.multimodal.vilbert import box_encoding, masked_region_loss, pretraining_losses

SMALL = dict(vocab_size=50, hidden=32, layers=4, heads=4, intermediate=64, v_feature_dim=12, v_hidden=24, v_layers=2,
             v_heads=4, v_intermediate=48, bi_hidden=16, bi_heads=4, t_biattention_id=(2, 3), v_biattention_id=(0, 1),
             v_target_size=7, num_classes=5, max_len=16, dropout=0.0)


def _inputs(b: int = 2, t: int = 9, r: int = 5):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 6:] = False
    boxes = torch.tensor([[0.0, 0, 32, 32], [4, 4, 12, 20], [10, 0, 30, 8], [0, 16, 16, 32], [8, 8, 24, 24]]).expand(b, -1, -1)
    return ids, mask, torch.randn(b, r, 12, generator=g), box_encoding(boxes, (32, 32))


@pytest.mark.paper("vilbert")
def test_text_stream_without_co_attention_equals_bert() -> None:
    """co_attention=False: the word states and BERT's pooled output equal HF ``BertModel`` with the same perturbed
    weights (loaded with source="transformers"), padding masked."""
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    bert = perturb_(BertModel(cfg)).eval()
    model = pz.create_model("vilbert", **SMALL, co_attention=False).eval()
    pz.load_weights(model, bert.state_dict(), source="transformers")
    ids, mask, feats, loc = _inputs()
    with torch.no_grad():
        words, _, _, _ = model(ids, feats, loc, text_mask=mask)
        ref = bert(input_ids=ids, attention_mask=mask.long())
        assert rel_err(words[mask], ref.last_hidden_state[mask]) < 1e-5
        assert rel_err(model.text.pooler(words), ref.pooler_output) < 1e-5


@pytest.mark.paper("vilbert")
def test_co_attention_exchanges_keys_and_values() -> None:
    """One co-TRM by hand: the words' queries attend over the regions' keys/values (weights summing to 1 over the
    unmasked regions) and the regions' queries over the words'; then residual + LayerNorm and each stream's FFN."""
    model = pz.create_model("vilbert", **SMALL).eval()
    perturb_(model)
    co = model.c_layers[0]
    g = torch.Generator().manual_seed(1)
    t, v = torch.randn(2, 6, 32, generator=g), torch.randn(2, 4, 24, generator=g)
    v_mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    with torch.no_grad():
        out_t, out_v = co(t, v, None, v_mask)

        def attend(q, k, val, key_mask):
            b, n, d = q.shape
            split = lambda x: x.reshape(b, x.shape[1], 4, d // 4).transpose(1, 2)  # noqa: E731
            w = split(q) @ split(k).transpose(-1, -2) / (d // 4) ** 0.5
            if key_mask is not None:
                w = w.masked_fill(~key_mask[:, None, None], float("-inf"))
            w = w.softmax(-1)
            assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))
            return (w @ split(val)).transpose(1, 2).reshape(b, n, d), w

        a_t, w_t = attend(co.query_t(t), co.key_v(v), co.value_v(v), v_mask)
        assert float(w_t[0, ..., 3].abs().max()) == 0.0  # a masked region gets no attention
        a_v, _ = attend(co.query_v(v), co.key_t(t), co.value_t(t), None)
        t1 = co.out_t.LayerNorm(t + co.out_t.dense(a_t))
        v1 = co.out_v.LayerNorm(v + co.out_v.dense(a_v))
        t2 = co.t_output.LayerNorm(t1 + co.t_output.dense(torch.nn.functional.gelu(co.t_intermediate.dense(t1))))
        v2 = co.v_output.LayerNorm(v1 + co.v_output.dense(torch.nn.functional.gelu(co.v_intermediate.dense(v1))))
        assert rel_err(out_t, t2) < 1e-5 and rel_err(out_v, v2) < 1e-5
        # with co-attention on, the words depend on the regions; with it off, they do not
        ids, mask, feats, loc = _inputs()
        w1 = model(ids, feats, loc, text_mask=mask)[0]
        w2 = model(ids, feats + 1, loc, text_mask=mask)[0]
        assert float((w1 - w2).abs().max()) > 1e-3
        model.co_attention = False
        assert torch.equal(model(ids, feats, loc, text_mask=mask)[0], model(ids, feats + 1, loc, text_mask=mask)[0])


@pytest.mark.paper("vilbert")
def test_released_layer_sizes(record_property) -> None:
    """The paper's sizes: BERT-base text stream (12 x 768, 12 heads), visual stream 1024 wide with 8 heads over 2048-d
    region features, 6 co-TRMs of width 1024 after text layers 6-11 (HF BertModel's bert-base tensors fit the text
    stream exactly)."""
    with torch.device("meta"):
        model = pz.create_model("vilbert")
        bert = BertModel(BertConfig())
    assert len(model.text.encoder.layer) == 12 and len(model.v_layers) == 6 and len(model.c_layers) == 6
    assert model.v_embed.weight.shape == (1024, 2048) and model.v_loc.weight.shape == (1024, 5)
    assert model.c_layers[0].query_t.weight.shape == (1024, 768) and model.c_layers[0].heads == 8
    assert model.v_layers[0].attention.self.heads == 8 and model.text.encoder.layer[0].attention.self.heads == 12
    ours = {k[len("text."):]: v.shape for k, v in model.state_dict().items() if k.startswith("text.")}
    assert ours == {k: v.shape for k, v in bert.state_dict().items() if not k.endswith("_ids")}
    record_property("params_m", sum(p.numel() for p in model.parameters()) / 1e6)


def test_box_encoding_and_region_loss_by_hand() -> None:
    loc = box_encoding(torch.tensor([[8.0, 0, 24, 16]]), (32, 64))
    assert torch.allclose(loc, torch.tensor([[0.125, 0.0, 0.375, 0.5, 0.125]]))
    target = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    logits = torch.zeros(1, 2, 2)  # uniform prediction: KL = log 2 - H(target)
    loss = masked_region_loss(logits, target, torch.tensor([[True, False]]))
    assert abs(float(loss) - 0.0) < 1e-6  # the masked region's target is uniform too
    loss = masked_region_loss(logits, target, torch.tensor([[False, True]]))
    assert abs(float(loss) - float(torch.log(torch.tensor(2.0)))) < 1e-6


def test_pretraining_losses_by_hand() -> None:
    """Masked words: cross-entropy against the tied-embedding MLM logits at the masked positions of aligned pairs only;
    alignment: cross-entropy of the 2-way head on h_CLS * h_IMG."""
    model = pz.create_model("vilbert", **SMALL).eval()
    ids, mask, feats, loc = _inputs()
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 3] = 7, 9
    targets = torch.softmax(torch.randn(2, 5, 7), -1)
    masked = torch.zeros(2, 5, dtype=torch.bool)
    masked[:, 1] = True
    aligned = torch.tensor([1, 0])
    with torch.no_grad():
        losses = pretraining_losses(model, ids, feats, loc, labels, targets, masked, aligned, mask)
        words, regions, h_cls, h_img = model(ids, feats, loc, mask)
        logits = model.mlm_transform(words) @ model.text.embeddings.word_embeddings.weight.T + model.mlm_bias
        assert rel_err(losses["mlm"], -logits[0, 2].log_softmax(-1)[7]) < 1e-5  # the unaligned pair's word is ignored
        align = torch.nn.functional.cross_entropy(model.alignment_head(h_cls * h_img), aligned)
        assert rel_err(losses["alignment"], align) < 1e-6
        assert rel_err(losses["masked_region"], masked_region_loss(model.region_logits(regions)[:1], targets[:1], masked[:1])) < 1e-6
