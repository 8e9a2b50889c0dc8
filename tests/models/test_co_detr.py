"""Co-DETR (arXiv 2211.12860): the ATSS one-to-many assignment against a brute-force loop; the Faster R-CNN-style
head's positive RoIs as queries (IoU, targets, RoIAlign content against torchvision); the customized positive
queries on a constructed case (which anchors become queries, their boxes and matched objects); the group attention
mask (main queries are unaffected by the positive queries: same outputs with and without them, and with other
positive queries); eq. 6's weighting (lambda_1, lambda_2) on hand values; with ``aux_heads=0`` the model is our DETR
(same weights, same outputs and losses), and with the heads on DETR's own terms are still DETR's; one training step
on 64 px images with a narrow backbone."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.models.detection.co_detr import (
    CoDETR,
    atss_assign,
    co_total,
    group_attention_mask,
    positive_queries,
)
from paperzoo.models.detection.detr import DETR
from paperzoo.registry import create_model

SMALL = dict(num_queries=8, d_model=32, heads=4, enc_layers=1, dec_layers=2, ffn=64, dropout=0.0, min_size=64, max_size=64)


def _body():
    return create_model("resnet18", features_only=True, out_indices=(3,), channels=(8, 16, 32, 64), stem_width=8)


def _pair(**co):
    torch.manual_seed(0)
    detr = DETR(_body(), 3, **SMALL)
    torch.manual_seed(1)
    model = CoDETR(_body(), 3, **SMALL, **co)
    missing, unexpected = model.load_state_dict(detr.state_dict(), strict=not model.num_aux)
    assert not unexpected and all(k.split(".")[0] in {"downsample", "aux_heads", "rcnn_heads", "query_pos_proj", "query_content_proj"}
                                  for k in missing)
    return detr, model


def _data():
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 48, generator=g)]
    targets = [{"boxes": torch.tensor([[5.0, 5.0, 40.0, 40.0], [30.0, 28.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[0.0, 10.0, 30.0, 50.0]]), "labels": torch.tensor([1])}]
    return images, targets


def _iou(a, b):
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    inter = float((rb - lt).clamp(min=0).prod())
    return inter / (float((a[2:] - a[:2]).prod()) + float((b[2:] - b[:2]).prod()) - inter)


@pytest.mark.paper("co-detr")
def test_atss_assignment_against_brute_force(record_property) -> None:
    """Per object: the topk anchors per level closest in centre, positives at IoU >= mean + std and centre inside;
    an anchor claimed twice goes to the higher IoU. Several positives per object (one-to-many)."""
    g = torch.Generator().manual_seed(0)
    anchors = []
    for s, n in ((8, 6), (16, 3)):
        c = (torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="xy"), -1).reshape(-1, 2) + 0.5) * s
        anchors.append(torch.cat((c - 2 * s, c + 2 * s), -1))
    sizes = [36, 9]
    anchors = torch.cat(anchors)
    xy = torch.rand(2, 3, 2, generator=g) * 30
    gt = torch.cat((xy, xy + 8 + torch.rand(2, 3, 2, generator=g) * 18), -1)
    gt_valid = torch.tensor([[True, True, True], [True, True, False]])
    assigned, _ = atss_assign(anchors, sizes, gt, gt_valid, topk=4)
    expected = torch.full_like(assigned, -1)
    for i in range(2):
        best = [-1.0] * len(anchors)
        for j in range(3):
            if not gt_valid[i, j]:
                continue
            gc = (gt[i, j, :2] + gt[i, j, 2:]) / 2
            cand, start = [], 0
            for size in sizes:
                d = [float(((anchors[start + a, :2] + anchors[start + a, 2:]) / 2 - gc).norm()) for a in range(size)]
                cand += [start + a for a in sorted(range(size), key=d.__getitem__)[:4]]
                start += size
            ious = torch.tensor([_iou(gt[i, j], anchors[a]) for a in cand])
            thr = float(ious.mean() + ious.std())
            for a, v in zip(cand, ious.tolist()):
                c = (anchors[a, :2] + anchors[a, 2:]) / 2
                inside = bool((c > gt[i, j, :2]).all() and (c < gt[i, j, 2:]).all())
                if v >= thr and inside and v > best[a]:
                    best[a], expected[i, a] = v, j
    assert torch.equal(assigned, expected)
    counts = torch.stack([(assigned == j).sum(1) for j in range(3)], 1)
    record_property("positives_per_object", counts.tolist())
    assert counts.max() > 1  # one-to-many


@pytest.mark.paper("co-detr")
def test_positive_queries_constructed_case() -> None:
    """The positive anchors (in anchor order) become queries, their boxes as normalised (cx, cy, w, h), each with the
    object its anchor was assigned to; the batch is padded to the largest count."""
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 30.0, 20.0], [0.0, 20.0, 40.0, 40.0], [20.0, 20.0, 40.0, 40.0]])
    assigned = torch.tensor([[-1, 1, -1, 0], [2, -1, -1, -1]])
    wh = torch.tensor([[40.0, 40.0], [20.0, 40.0]])
    q = positive_queries(assigned, anchors, wh)
    assert q["anchor"][0].tolist() == [1, 3] and q["anchor"][1, 0] == 0
    assert q["valid"].tolist() == [[True, True], [True, False]]
    assert q["target"].tolist() == [[1, 0], [2, -1]]
    torch.testing.assert_close(q["boxes"][0], torch.tensor([[0.5, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5]]))
    torch.testing.assert_close(q["boxes"][1, 0], torch.tensor([0.25, 0.125, 0.5, 0.25]))


@pytest.mark.paper("co-detr")
def test_group_mask_keeps_groups_apart(record_property) -> None:
    """Main queries decoded together with a group of positive queries under the mask give the same outputs as the
    main queries alone, whatever the positive queries are; without the mask they would not."""
    _, model = _pair(aux_heads=1)
    model.eval()
    images, _ = _data()
    with torch.no_grad():
        x, valid = model.batch(images)
        enc = model.encode(x, valid)
        main = model.query_embed.weight[None].expand(2, -1, -1)
        alone = model.decode(torch.zeros_like(main), main, enc)
        outs = []
        for seed in (0, 1):
            g = torch.Generator().manual_seed(seed)
            extra_t, extra_p = torch.randn(2, 5, 32, generator=g), torch.randn(2, 5, 32, generator=g)
            gv = torch.tensor([[True] * 5, [True, True, True, False, False]])
            mask = group_attention_mask([8, 5], torch.cat((torch.ones(2, 8, dtype=torch.bool), gv), 1))
            t, p = torch.cat((torch.zeros_like(main), extra_t), 1), torch.cat((main, extra_p), 1)
            outs.append(model.decode(t, p, enc, mask)[:, :, :8])
        unmasked = model.decode(t, p, enc)[:, :, :8]
    err = max(float((o - alone).abs().max()) for o in outs)
    record_property("max_abs_diff_main_queries", err)
    assert err < 1e-5
    assert float((unmasked - alone).abs().max()) > 1e-3  # the test can tell


@pytest.mark.paper("co-detr")
def test_total_loss_weighting_hand_values() -> None:
    """Eq. 6: DETR's terms as they are, the auxiliary head's x lambda_1, the positive queries' x lambda_2 x the DETR
    weight of the term (1 / 5 / 2), at every decoder layer."""
    t = torch.tensor
    detr = {"loss_ce": t(1.0), "loss_bbox": t(2.0)}
    aux = [{"loss_cls": t(3.0), "loss_giou": t(4.0)}]
    pos = [{"loss_ce": t(0.5), "loss_bbox": t(0.25), "loss_giou_0": t(0.1)}]
    out = co_total(detr, aux, pos, lambda1=1.5, lambda2=2.0, query_weights={"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0})
    assert set(out) == {"loss_ce", "loss_bbox", "aux0_loss_cls", "aux0_loss_giou", "pos0_loss_ce", "pos0_loss_bbox",
                        "pos0_loss_giou_0"}
    expected = 1 + 2 + 1.5 * (3 + 4) + 2 * (1 * 0.5 + 5 * 0.25 + 2 * 0.1)
    assert float(sum(out.values())) == pytest.approx(expected)
    assert float(out["pos0_loss_bbox"]) == pytest.approx(2.5)


@pytest.mark.paper("co-detr")
def test_without_aux_heads_equals_detr(record_property) -> None:
    """aux_heads=0: DETR's weights load strictly and give the same outputs and loss terms; with the heads on, DETR's
    own terms are unchanged (the positive queries cannot reach the main queries) and the extra terms appear."""
    detr, plain = _pair(aux_heads=0)
    images, targets = _data()
    with torch.no_grad():
        detr.eval(), plain.eval()
        a, b = detr(images), plain(images)
        assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])
        detr.train(), plain.train()
        la, lb = detr(images, targets), plain(images, targets)
        assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)
        _, co = _pair(aux_heads=1, anchor_scale=2.0)
        co.train()
        lc = co(images, targets)
    err = max(float((la[k] - lc[k]).abs()) for k in la)
    record_property("detr_terms_abs_diff_with_aux_on", err)
    assert err < 1e-5
    assert {"aux0_loss_cls", "aux0_loss_giou", "pos0_loss_ce", "pos0_loss_bbox", "pos0_loss_giou"} <= set(lc)
    assert float(lc["pos0_loss_ce"]) > 0


def test_training_step_reaches_every_part() -> None:
    """One optimiser step on 64 px images: finite losses, gradients in both auxiliary heads (ATSS and Faster R-CNN
    style) and in every query projection."""
    _, model = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0)
    model.train()
    images, targets = _data()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    for name in ("aux_heads.0.cls.weight", "aux_heads.0.reg.weight", "query_pos_proj.0.weight", "query_content_proj.0.weight",
                 "downsample.0.0.weight", "rcnn_heads.0.rpn.head.objectness.weight", "rcnn_heads.0.roi.box_head.fc6.weight",
                 "rcnn_heads.0.roi.box_predictor.bbox_pred.weight", "query_pos_proj.1.weight", "query_content_proj.1.weight"):
        assert float(dict(model.named_parameters())[name].grad.abs().sum()) > 0, name
    opt.step()


def test_registered_model_and_bad_config() -> None:
    with torch.device("meta"):
        m = pz.create_model("co_detr_resnet50", num_classes=5)
    assert isinstance(m, CoDETR) and m.num_aux == 2 and len(m.aux_heads) == len(m.rcnn_heads) == 1  # the paper's K = 2
    assert m.lambda1 == 1.0 and m.lambda2 == 2.0
    with pytest.raises(pz.errors.ConfigError):
        CoDETR(_body(), 3, aux_heads=-1, **SMALL)


@pytest.mark.paper("co-detr")
def test_rcnn_head_positive_queries_are_its_foreground_rois(record_property) -> None:
    """The Faster R-CNN-style head's one-to-many assignment: its positive queries are the RoIs its RoI head labels
    foreground — each overlaps the object it serves with IoU >= 0.5 and serves its highest-IoU object; the objects
    themselves are among them (added to the proposals, as Faster R-CNN trains); the content of a query is the mean of
    its RoIAlign features (checked against torchvision's roi_align on a one-level pyramid)."""
    from torchvision.ops import box_iou, roi_align

    _, model = _pair(aux_heads=0, rcnn_heads=1, pyramid_levels=1, anchor_scale=2.0)
    model.train()
    images, targets = _data()
    x, valid = model.batch(images)
    enc = model.encode(x, valid)
    maps, _, _ = model.pyramid(enc)
    image_wh = torch.stack((valid.any(1).sum(1), valid.any(2).sum(1)), -1).to(x.dtype)
    gt = torch.zeros(2, 2, 4)
    labels = torch.zeros(2, 2, dtype=torch.int64)
    gt_valid = torch.zeros(2, 2, dtype=torch.bool)
    for i, t in enumerate(targets):
        gt[i, : len(t["boxes"])], labels[i, : len(t["boxes"])], gt_valid[i, : len(t["boxes"])] = t["boxes"], t["labels"], True
    sizes = [(int(h), int(w)) for w, h in image_wh.tolist()]
    torch.manual_seed(3)
    terms, q = model.rcnn_heads[0](x, sizes, maps, [float(enc["stride"])], gt, labels, gt_valid)
    assert set(terms) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    worst = 1.0
    for i in range(2):
        boxes, target = q["boxes"][i][q["valid"][i]], q["target"][i][q["valid"][i]]
        iou = box_iou(boxes, gt[i][gt_valid[i]])
        assert torch.equal(target, iou.argmax(1))
        worst = min(worst, float(iou.max(1).values.min()))
        for box in gt[i][gt_valid[i]]:  # every object is one of its own positive boxes
            assert bool((boxes == box).all(1).any())
        rois = torch.cat([torch.full((len(boxes), 1), float(i)), boxes], 1)
        expected = roi_align(maps[0], rois, 7, 1 / float(enc["stride"]), 2).mean((2, 3))
        assert torch.allclose(q["content"][i][q["valid"][i]], expected, atol=1e-5)
    record_property("lowest_iou_of_a_positive_roi", round(worst, 4))
    assert worst >= 0.5
    assert not q["valid"].all() or q["valid"].shape[1] == int(q["valid"].sum(1).max())  # padded to the largest count


@pytest.mark.paper("co-detr")
def test_rcnn_terms_are_weighted_by_lambda1_and_leave_detr_alone() -> None:
    """Eq. 6 with K = 2: the second head's L_enc terms (``aux1_*``) scale with lambda_1, and DETR's own terms equal a
    plain DETR's (neither head's queries can reach the main queries)."""
    images, targets = _data()
    detr, one = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0, lambda1=1.0)
    _, three = _pair(aux_heads=1, rcnn_heads=1, anchor_scale=2.0, lambda1=3.0)
    detr.train(), one.train(), three.train()
    with torch.no_grad():
        base = detr(images, targets)
        torch.manual_seed(5)
        a = one(images, targets)
        torch.manual_seed(5)
        b = three(images, targets)
    rcnn = [k for k in a if k.startswith("aux1_")]
    assert sorted(rcnn) == ["aux1_loss_box_reg", "aux1_loss_classifier", "aux1_loss_objectness", "aux1_loss_rpn_box_reg"]
    for k in rcnn:
        assert float(b[k]) == pytest.approx(3 * float(a[k]), rel=1e-5)
    assert max(float((base[k] - a[k]).abs()) for k in base) < 1e-5
    assert {"pos1_loss_ce", "pos1_loss_bbox", "pos1_loss_giou"} <= set(a)
