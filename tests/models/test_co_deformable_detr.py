"""Co-Deformable-DETR (arXiv 2211.12860 on Deformable DETR): without auxiliary heads (or with lambda_1 = lambda_2 = 0)
the losses are a plain ``DeformableDETR``'s with the same weights; the main queries decode the same beside the positive
query groups (the group mask; a planted all-True mask breaks it) and the groups cannot see each other; the positive
queries' reference points are the centres of the ATSS head's positive anchors (recomputed here from the split encoder
pyramid) and of the R-CNN head's foreground RoIs; a group's L_dec by hand (sigmoid focal, L1, GIoU against the objects
its boxes were assigned to, no matching); eq. 6's lambda_1 / lambda_2 scale the aux / positive-query terms;
two training steps through ``paperzoo train``'s path; the full model's parameter count from its parts."""
from __future__ import annotations

import json

import pytest
import torch

import paperzoo as pz
from paperzoo.models.detection import co_deformable_detr
from paperzoo.models.detection.co_deformable_detr import CoDeformableDETR
from paperzoo.models.detection.co_detr import ATSSHead, RCNNAuxHead, atss_assign
from paperzoo.models.detection.deformable_detr import DeformableDETR
from paperzoo.registry import create_model

SMALL = dict(num_queries=6, d_model=32, heads=4, enc_layers=1, dec_layers=1, ffn=32, dropout=0.0, min_size=64,
             max_size=64, enc_points=2, dec_points=2)
AUX = {"aux_heads", "rcnn_heads", "query_pos_proj", "query_content_proj"}


def _body():
    return create_model("resnet18", features_only=True, out_indices=(2, 3, 4), channels=(8, 16, 32, 64), stem_width=8)


def _pair(small=SMALL, **co):
    """A plain DeformableDETR and a CoDeformableDETR holding the same weights for every shared tensor."""
    torch.manual_seed(0)
    plain = DeformableDETR(_body(), 3, **small)
    torch.manual_seed(1)
    model = CoDeformableDETR(_body(), 3, **small, **co)
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=not model.num_aux)
    assert not unexpected and all(k.split(".")[0] in AUX for k in missing)
    return plain.train(), model.train()


def _data():
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 48, generator=g)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 40.0], [30.0, 28.0, 60.0, 62.0]]),
                "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[0.0, 10.0, 30.0, 50.0]]), "labels": torch.tensor([1])}]
    return images, targets


def _spy_decode(model, monkeypatch):
    """Record every call of ``model.decode`` (its inputs and output)."""
    calls, original = [], model.decode

    def spy(t, query_pos, reference, enc, self_mask=None):
        out = original(t, query_pos, reference, enc, self_mask)
        calls.append({"t": t, "pos": query_pos, "reference": reference, "enc": enc, "mask": self_mask, "hs": out})
        return out
    monkeypatch.setattr(model, "decode", spy)
    return calls


def _spy_groups(model, monkeypatch):
    """Record the positive-query groups each call of ``model.hybrid_branch`` builds."""
    calls, original = [], model.hybrid_branch

    def spy(*args):
        aux_terms, groups = original(*args)
        calls.append(groups)
        return aux_terms, groups
    monkeypatch.setattr(model, "hybrid_branch", spy)
    return calls


@pytest.mark.paper("co-detr")
def test_without_aux_heads_or_lambdas_the_losses_are_deformable_detrs(record_property) -> None:
    """aux_heads = rcnn_heads = 0: Deformable DETR's weights load strictly, outputs and loss terms are identical. With
    both heads on but lambda_1 = lambda_2 = 0 every extra term is zero and the total is Deformable DETR's."""
    images, targets = _data()
    plain, off = _pair(aux_heads=0, rcnn_heads=0)
    with torch.no_grad():
        a, b = plain.eval()(images), off.eval()(images)
        assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])
        la, lb = plain.train()(images, targets), off.train()(images, targets)
        assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)
        _, zero = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0, lambda1=0.0, lambda2=0.0)
        torch.manual_seed(4)
        lz = zero(images, targets)
    extra = [k for k in lz if k not in la]
    assert {"aux0_loss_cls", "aux1_loss_objectness", "pos0_loss_ce", "pos1_loss_giou"} <= set(extra)
    assert all(float(lz[k]) == 0.0 for k in extra)
    err = abs(float(sum(lz.values())) - float(sum(la.values())))
    record_property("total_abs_diff_lambdas_zero", err)
    assert err < 1e-5


@pytest.mark.paper("co-detr")
def test_main_queries_do_not_see_the_positive_query_groups(record_property, monkeypatch) -> None:
    """With both heads and their query groups decoded together, the main queries' decoder outputs equal those of the
    main queries decoded alone (and Deformable DETR's terms equal a plain model's); a group's outputs do not change when
    another group's queries are replaced. A planted all-True self-attention mask breaks all three checks."""
    images, targets = _data()
    plain, model = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0)
    calls, groups = _spy_decode(model, monkeypatch), _spy_groups(model, monkeypatch)
    with torch.no_grad():
        base = plain(images, targets)
        torch.manual_seed(4)
        losses = model(images, targets)
        c = calls[-1]
        q = SMALL["num_queries"]
        alone = model.decode(c["t"][:, :q], c["pos"][:, :q], c["reference"][:, :q], c["enc"])
        sizes = [q] + [g["valid"].shape[1] for g in groups[-1]]
        m0 = sizes[1]
        t2 = c["t"].clone()
        t2[:, q + m0:] = torch.randn_like(t2[:, q + m0:])  # another R-CNN group
        other = model.decode(t2, c["pos"], c["reference"], c["enc"], c["mask"])
    assert len(sizes) == 3 and min(sizes) > 0
    err_main = float((c["hs"][:, :, :q] - alone).abs().max())
    err_terms = max(float((base[k] - losses[k]).abs()) for k in base)
    err_group = float((other[:, :, q:q + m0] - c["hs"][:, :, q:q + m0]).abs().max())
    record_property("main_queries_max_abs_diff", err_main)
    record_property("deformable_terms_max_abs_diff", err_terms)
    record_property("atss_group_max_abs_diff_when_rcnn_group_changes", err_group)
    assert max(err_main, err_terms, err_group) < 1e-5
    # planted bug: no group mask (every query sees every other)
    monkeypatch.setattr(co_deformable_detr, "group_attention_mask",
                        lambda sizes, valid=None: torch.ones(len(valid), sum(sizes), sum(sizes), dtype=torch.bool))
    with torch.no_grad():
        torch.manual_seed(4)
        planted = model(images, targets)
        p = calls[-1]
        alone_p = model.decode(p["t"][:, :q], p["pos"][:, :q], p["reference"][:, :q], p["enc"])
        t2 = p["t"].clone()
        t2[:, q + m0:] = torch.randn_like(t2[:, q + m0:])
        other_p = model.decode(t2, p["pos"], p["reference"], p["enc"], p["mask"])
    bug_main = float((p["hs"][:, :, :q] - alone_p).abs().max())
    bug_terms = max(float((base[k] - planted[k]).abs()) for k in base)
    bug_group = float((other_p[:, :, q:q + m0] - p["hs"][:, :, q:q + m0]).abs().max())
    record_property("planted_no_mask_main_max_abs_diff", bug_main)
    record_property("planted_no_mask_group_max_abs_diff", bug_group)
    assert bug_main > 1e-3 and bug_terms > 1e-4 and bug_group > 1e-3, (bug_main, bug_terms, bug_group)


@pytest.mark.paper("co-detr")
def test_positive_queries_reference_points_are_the_positive_boxes_centres(record_property, monkeypatch) -> None:
    """The reference points given to the decoder: the main queries' own (sigmoid(Linear(query pos))), then, for the
    ATSS head, the centres of its positive anchors (recomputed here: square anchors of side 2 x stride on the split
    encoder levels 8x8 / 4x4 / 2x2 / 1x1 of a 64 px batch, ATSS-assigned) over each image's (w, h), in anchor order;
    for the R-CNN head, the centres of the foreground RoIs it returned."""
    images, targets = _data()
    _, model = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0)
    calls = _spy_decode(model, monkeypatch)
    rcnn_out, rcnn_forward = [], model.rcnn_heads[0].forward
    monkeypatch.setattr(model.rcnn_heads[0], "forward", lambda *a: rcnn_out.append(rcnn_forward(*a)) or rcnn_out[-1])
    with torch.no_grad():
        torch.manual_seed(4)
        model(images, targets)
    c = calls[-1]
    q = SMALL["num_queries"]
    assert [tuple(s) for s in c["enc"]["shapes"]] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    anchors, sizes = [], []
    for n, s in ((8, 8), (4, 16), (2, 32), (1, 64)):
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        centre = torch.stack(((xs.flatten() + 0.5) * s, (ys.flatten() + 0.5) * s), -1).float()
        anchors.append(torch.cat((centre - s, centre + s), -1))
        sizes.append(n * n)
    anchors = torch.cat(anchors)
    wh = torch.tensor([[64.0, 64.0], [48.0, 64.0]])
    gt = torch.zeros(2, 2, 4)
    gt[0], gt[1, 0] = targets[0]["boxes"], targets[1]["boxes"][0]
    assigned, _ = atss_assign(anchors, sizes, gt, torch.tensor([[True, True], [True, False]]), topk=9)
    counts = (assigned >= 0).sum(1)
    m0 = int(counts.max())
    with torch.no_grad():
        _, _, main_ref = model.queries(2)
    torch.testing.assert_close(c["reference"][:, :q], main_ref)
    worst = 0.0
    for i in range(2):
        pos = (assigned[i] >= 0).nonzero().flatten()
        expected = (anchors[pos, :2] + anchors[pos, 2:]) / 2 / wh[i]
        got = c["reference"][i, q:q + len(pos)]
        worst = max(worst, float((got - expected).abs().max()))
        _, rcnn = rcnn_out[-1]
        boxes = rcnn["boxes"][i][rcnn["valid"][i]]
        got_rcnn = c["reference"][i, q + m0:][rcnn["valid"][i]]
        worst = max(worst, float((got_rcnn - (boxes[:, :2] + boxes[:, 2:]) / 2 / wh[i]).abs().max()))
    record_property("atss_positives_per_image", counts.tolist())
    record_property("reference_max_abs_err", worst)
    assert int(counts.min()) >= 1 and c["reference"].shape[1] == q + m0 + rcnn_out[-1][1]["valid"].shape[1]
    assert worst < 1e-6


@pytest.mark.paper("co-detr")
def test_positive_query_terms_by_hand(record_property, monkeypatch) -> None:
    """L_dec of the ATSS group, recomputed from the decoder's output: each real positive query against the object its
    anchor was assigned to (no matching): sigmoid focal loss alpha (1 - p)^2 (-log p) on its class and
    (1 - alpha) p^2 (-log(1 - p)) on the others, L1 and 1 - GIoU on cxcywh boxes, each summed over the real queries
    and divided by their number, then x lambda_2 (2) x Deformable DETR's weight (2 / 5 / 2)."""
    from torchvision.ops import box_convert, generalized_box_iou

    images, targets = _data()
    _, model = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0)
    calls, groups = _spy_decode(model, monkeypatch), _spy_groups(model, monkeypatch)
    with torch.no_grad():
        torch.manual_seed(4)
        losses = model(images, targets)
        c, g = calls[-1], groups[-1][0]
        q, m0 = SMALL["num_queries"], g["valid"].shape[1]
        out = model.heads(c["hs"][:, :, q:q + m0], c["reference"][:, q:q + m0])
    wh = [(64.0, 64.0), (48.0, 64.0)]
    focal = l1 = giou = 0.0
    count = 0
    for i in range(2):
        for j in g["valid"][i].nonzero().flatten().tolist():
            obj = int(g["target"][i, j])
            w, h = wh[i]
            tgt = box_convert(targets[i]["boxes"][obj] / torch.tensor([w, h, w, h]), "xyxy", "cxcywh")
            p = out["pred_logits"][i, j].sigmoid()
            y = torch.nn.functional.one_hot(targets[i]["labels"][obj], 3).bool()
            focal += float(torch.where(y, 0.25 * (1 - p) ** 2 * -p.log(), 0.75 * p ** 2 * -(1 - p).log()).sum())
            box = out["pred_boxes"][i, j]
            l1 += float((box - tgt).abs().sum())
            giou += 1 - float(generalized_box_iou(box_convert(box[None], "cxcywh", "xyxy"),
                                                  box_convert(tgt[None], "cxcywh", "xyxy"))[0, 0])
            count += 1
    hand = {"pos0_loss_ce": 2 * 2 * focal / count, "pos0_loss_bbox": 2 * 5 * l1 / count,
            "pos0_loss_giou": 2 * 2 * giou / count}
    errs = {k: abs(float(losses[k]) - v) / v for k, v in hand.items()}
    record_property("positive_queries", count)
    record_property("rel_err_vs_hand", errs)
    assert count >= 2 and max(errs.values()) < 1e-5, errs


@pytest.mark.paper("co-detr")
def test_lambda1_scales_aux_terms_and_lambda2_the_positive_query_terms() -> None:
    """Eq. 6 on the model: the same weights with (lambda_1, lambda_2) = (1, 2) and (3, 5): every ``aux*`` term (both
    heads' L_enc) x 3, every ``pos*`` term (both groups, every decoder layer) x 2.5, Deformable DETR's unchanged."""
    images, targets = _data()
    small = {**SMALL, "dec_layers": 2}
    _, a = _pair(small, aux_heads=1, rcnn_heads=1, anchor_scale=2.0)
    _, b = _pair(small, aux_heads=1, rcnn_heads=1, anchor_scale=2.0, lambda1=3.0, lambda2=5.0)
    with torch.no_grad():
        torch.manual_seed(5)
        la = a(images, targets)
        torch.manual_seed(5)
        lb = b(images, targets)
    assert la.keys() == lb.keys()
    assert {"pos0_loss_ce_0", "pos1_loss_bbox_0", "pos0_loss_giou", "aux1_loss_classifier", "loss_ce_0"} <= set(la)
    for k in la:
        factor = 3.0 if k.startswith("aux") else 2.5 if k.startswith("pos") else 1.0
        assert float(lb[k]) == pytest.approx(factor * float(la[k]), rel=1e-5, abs=1e-7), k
    assert float(la["pos0_loss_ce"]) > 0 and float(la["aux0_loss_cls"]) > 0


def test_two_training_steps_through_the_train_path(tmp_path) -> None:
    """``paperzoo train --model co_deformable_detr_resnet50 --data shapes`` in process, tiny (64 px, d_model 32, one
    layer each, 6 queries): two steps with every term of both heads and both query groups logged and finite, COCO AP
    from ``detect``, and ``detect``'s format (Deformable DETR's top-100 over query x class, in the image's pixels)."""
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    tiny = dict(d_model=32, heads=4, enc_layers=1, dec_layers=1, ffn=32, num_queries=6, min_size=64, max_size=64,
                anchor_scale=2.0)
    cfg = apply_overrides(TrainConfig(model="co_deformable_detr_resnet50", epochs=1, batch_size=2, device="cpu"),
                          ["data.size=4", "data.val_size=2", "data.image_size=64", "log_every=1",
                           *[f"model_args.{k}={v}" for k, v in tiny.items()]])
    cfg.data.name = "shapes"
    cfg.out = str(tmp_path)
    trainer = build_and_train(cfg, quiet=True)
    assert trainer.step == 2
    row = trainer.history[-1]
    assert "val_map" in row and 0 <= row["val_map"] <= 1
    import json

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r.get("kind") == "step"]
    keys = ("loss_ce", "loss_bbox", "loss_giou", "aux0_loss_cls", "aux0_loss_giou", "aux1_loss_objectness",
            "aux1_loss_classifier", "pos0_loss_ce", "pos0_loss_bbox", "pos1_loss_ce", "pos1_loss_giou")
    assert len(steps) == 2 and all(k in s and torch.isfinite(torch.tensor(float(s[k]))) for s in steps for k in keys), \
        sorted(steps[0])
    model = trainer.model
    assert isinstance(model, CoDeformableDETR) and model.num_aux == 2
    model.eval()
    dets = model.detect([torch.rand(3, 64, 64), torch.rand(3, 48, 64)])
    assert len(dets) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in dets)
    assert len(dets[0]["scores"]) == min(100, 6 * model.num_classes) and dets[0]["boxes"].shape[1] == 4
    cy = (dets[1]["boxes"][:, 1] + dets[1]["boxes"][:, 3]) / 2  # box centres lie in the (48 px high) image
    assert ((cy >= -1e-3) & (cy <= 48 + 1e-3)).all() and (dets[0]["scores"][:-1] >= dets[0]["scores"][1:]).all()


def test_parameter_count_is_deformable_detr_plus_the_training_parts(record_property) -> None:
    """Full size on the meta device: co_deformable_detr_resnet50 = deformable_detr_resnet50 + one ATSS head + one R-CNN
    head on 4 levels + two pairs of 256 x 256 query projections (each part built on its own); K = 2, lambda 1 / 2."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        co = pz.create_model("co_deformable_detr_resnet50")
        base = pz.create_model("deformable_detr_resnet50")
        parts = [ATSSHead(256, 91, 1), RCNNAuxHead(256, 91, 4, 8.0)]
    projections = 4 * (256 * 256 + 256)
    n, expected = count(co), count(base) + sum(count(p) for p in parts) + projections
    record_property("params", n)
    record_property("params_deformable_detr", count(base))
    assert n == expected, (n, expected)
    assert len(co.aux_heads) == len(co.rcnn_heads) == 1 and co.num_aux == 2 and len(co.query_pos_proj) == 2
    assert co.lambda1 == 1.0 and co.lambda2 == 2.0 and co.meta.paper == "co-detr"
    assert not any(k.split(".")[0] in AUX for k in base.state_dict())
    with pytest.raises(pz.errors.ConfigError):
        CoDeformableDETR(_body(), 3, rcnn_heads=-1, **SMALL)
