"""TSP-FCOS (arXiv 2011.10881): the parts it shares with FCOS against torchvision's ``fcos_resnet50_fpn`` (random,
perturbed weights loaded with ``source="torchvision"``): the ResNet-50-FPN maps P3-P7 and the classification head
whose sigmoid maximum is the FoI score, and the FoIs selected from them; FCOS's positive-region assignment (centre
sampling, inside the box, the level's size range, the smallest box) against torchvision's own ``compute_loss``
matching; the ltrb and centerness formulas and the level ranges on hand cases; the FoI selector and the
Hungarian matching with the positive-region prior on constructed cases (and against brute force); the parameter
count, part by part."""
from __future__ import annotations

import itertools
import types

import pytest
import torch
from helpers import n_params, perturb_, rel_err

import paperzoo as pz
from paperzoo.errors import ConfigError, DataError
from paperzoo.models.detection.tsp import (
    TSPMatcher,
    centerness,
    fcos_assign,
    fcos_positive,
    level_ranges,
    ltrb,
    select_fois,
)
from paperzoo.reproduce.tsp import small_tsp

K = 5
STRIDES = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def pair():
    from torchvision.models.detection import fcos_resnet50_fpn

    torch.manual_seed(0)
    ref = perturb_(fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=K), seed=1).eval()
    ours = pz.create_model("tsp_fcos_resnet50_fpn", num_classes=K, num_fois=40, min_size=128, max_size=160)
    state = ref.state_dict()
    pz.load_weights(ours, state, source="torchvision", strict=False)
    return ours.eval(), ref


@pytest.mark.paper("tsp")
def test_fcos_parts_equal_torchvision(pair, record_property) -> None:
    """P3-P7 and the FCOS classification head (our FoI scorer) equal torchvision's; every torchvision tensor but
    FCOS's own box / centerness convs is used, and the FoIs are the top positions of torchvision's scores."""
    ours, ref = pair
    from paperzoo.weights import _CONVERTERS

    mapped = _CONVERTERS[("tsp", "torchvision")](ref.state_dict(), ours)
    own = ours.state_dict()
    assert set(mapped) <= set(own)
    used = [k for k in ref.state_dict() if not k.startswith(("head.regression_head.bbox_", "head.classification_head.cls_logits"))
            and not k.endswith("num_batches_tracked")]
    assert len([k for k in mapped if not k.endswith("num_batches_tracked")]) == len(used) + 2  # + foi_logits w, b
    record_property("tensors_loaded_from_torchvision", len(mapped))
    x = torch.randn(2, 3, 128, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = list(ref.backbone(x).values())
        maps = ours.backbone(x)
        assert len(maps) == len(expected) == 5
        for a, b in zip(maps, expected):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5
        ref_logits = ref.head.classification_head(expected)  # (N, sum HW, K)
        valid = torch.ones(2, 128, 160, dtype=torch.bool)
        f = ours.features(x, valid)
        assert rel_err(f["foi_logits"], ref_logits) < 1e-5
        idx = select_fois(f["foi_logits"].sigmoid().amax(-1), 40, f["valid"])
        ref_idx = ref_logits.sigmoid().amax(-1).topk(40, dim=1).indices
        assert torch.equal(idx.sort(1).values, ref_idx.sort(1).values)
        out = ours.head(f, idx)
        assert torch.equal(out["points"], f["points"][idx]) and out["pred_logits"].shape == (2, 40, K)


def _tv_anchors(size: int) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
    """torchvision FCOS's anchors on a size x size image (one per position, of the stride's size, centred on
    x * stride), and their centres and strides."""
    anchors, counts, strides = [], [], []
    for s in STRIDES:
        n = -(-size // s)
        ys, xs = torch.meshgrid(torch.arange(n) * s, torch.arange(n) * s, indexing="ij")
        c = torch.stack((xs.flatten(), ys.flatten()), 1).float()
        anchors.append(torch.cat((c - s / 2, c + s / 2), 1))
        counts.append(n * n)
        strides.append(torch.full((n * n,), float(s)))
    a = torch.cat(anchors)
    return a, counts, (a[:, :2] + a[:, 2:]) / 2, torch.cat(strides)


@pytest.mark.paper("tsp")
def test_fcos_assignment_equals_torchvision(record_property) -> None:
    """The positive region of the matching prior and FCOS's assignment equal torchvision's FCOS matching, on random
    boxes of every size (nested and overlapping ones included) in a batch of two 1152 px images (every level's range used, P7's too)."""
    from torchvision.models.detection.fcos import FCOS

    g = torch.Generator().manual_seed(0)
    anchors, counts, points, strides = _tv_anchors(1152)
    targets = []
    for m, big in ((12, [0.0, 0.0, 1100.0, 1100.0]), (7, [30.0, 40.0, 1150.0, 1120.0])):  # big: P7's range
        xy = torch.rand(m, 2, generator=g) * 600
        wh = torch.exp(torch.rand(m, 2, generator=g) * 6.5) + 4
        boxes = torch.cat((torch.cat((xy, (xy + wh).clamp(max=1152)), 1), torch.tensor([big])))
        targets.append({"boxes": boxes, "labels": torch.ones(m + 1, dtype=torch.int64)})
    fake = types.SimpleNamespace(center_sampling_radius=1.5,
                                 head=types.SimpleNamespace(compute_loss=lambda t, h, a, matched: matched))
    expected = torch.stack(FCOS.compute_loss(fake, targets, None, [anchors, anchors], counts))
    boxes = torch.zeros(2, 13, 4)
    boxes[..., 2:] = 1
    valid = torch.zeros(2, 13, dtype=torch.bool)
    for i, t in enumerate(targets):
        boxes[i, : len(t["boxes"])], valid[i, : len(t["boxes"])] = t["boxes"], True
    r = torch.tensor(level_ranges(STRIDES))[torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])]
    positive = fcos_positive(points, strides, r[:, 0], r[:, 1], boxes, valid, radius=1.5)
    got = fcos_assign(positive, boxes)
    record_property("positive_points", int((expected >= 0).sum()))
    assert (expected >= 0).sum() > 20 and (expected[:, -counts[-1]:] >= 0).any()  # P7 takes objects too
    assert torch.equal(got, expected)


@pytest.mark.paper("tsp")
def test_ltrb_centerness_ranges_by_hand() -> None:
    """FCOS eq. 1 and 3 on hand cases: point (30, 40) in box (10, 20, 70, 50): (l, t, r, b) = (20, 20, 40, 10),
    centerness sqrt(20/40 x 10/20) = 0.5; the box's centre 1; outside 0. Size ranges 0/64/128/256/512/inf."""
    d = ltrb(torch.tensor([[30.0, 40.0], [40.0, 35.0], [5.0, 40.0]]), torch.tensor([[10.0, 20.0, 70.0, 50.0]]))
    assert d[0, 0].tolist() == [20.0, 20.0, 40.0, 10.0]
    assert centerness(d[:, 0]).tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert level_ranges(STRIDES) == [(0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, float("inf"))]


@pytest.mark.paper("tsp")
def test_foi_selection_constructed() -> None:
    """The top-k valid positions, best first; padded positions never; positives raised to (1 + s) / 2."""
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2, 0.7]])
    valid = torch.tensor([[True, False, True, True, True, True]])
    assert select_fois(scores, 3, valid).tolist() == [[3, 5, 2]]
    positive = torch.tensor([[True, False, False, False, True, False]])  # 0.1 -> 0.55, 0.2 -> 0.6
    assert select_fois(scores, 4, valid, positive).tolist() == [[3, 5, 4, 0]]
    assert select_fois(scores, 10, valid).shape == (1, 6)


@pytest.mark.paper("tsp")
def test_matching_prior_and_brute_force(record_property) -> None:
    """A prediction outside the object's positive region loses to a worse one inside it; without the prior it
    wins. The cost of one pair by hand; the assignment against brute force on random small cases."""
    logits = torch.tensor([[[4.0, -4.0], [1.0, -1.0], [-2.0, 0.0]]])
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.15, 0.1, 0.5, 0.6], [0.6, 0.6, 0.9, 0.9]]])
    gt, labels = torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]), torch.tensor([[0]])
    allowed = torch.tensor([[[False], [True], [True]]])
    assert TSPMatcher()(logits, boxes, labels, gt, allowed, [1])[0][0].tolist() == [1]
    assert TSPMatcher(prior_cost=0.0)(logits, boxes, labels, gt, allowed, [1])[0][0].tolist() == [0]
    c = TSPMatcher().cost(logits, boxes, labels, gt, allowed)
    # L1 = 0.05 + 0.1; intersection 0.35 x 0.4, union 0.175 + 0.16 - 0.14, enclosing box 0.4 x 0.5
    iou = 0.14 / 0.195
    by_hand = -torch.sigmoid(torch.tensor(1.0)) + 5 * 0.15 - 2 * (iou - (0.2 - 0.195) / 0.2)
    assert c[0, 1, 0].item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert c[0, 0, 0].item() == pytest.approx(-torch.sigmoid(torch.tensor(4.0)).item() - 2 + 1e4, abs=1e-3)
    g = torch.Generator().manual_seed(0)
    matcher = TSPMatcher(prior_cost=3.0)
    for _ in range(3):  # batches of two images, 5 predictions and 3 objects each
        n, q, m = 2, 5, 3
        lg = torch.randn(n, q, 2, generator=g)
        xy = torch.rand(n, q + m, 2, generator=g) * 0.5
        bx = torch.cat((xy, xy + 0.1 + torch.rand(n, q + m, 2, generator=g) * 0.4), -1)
        al = torch.rand(n, q, m, generator=g) > 0.5
        lab = torch.randint(0, 2, (n, m), generator=g)
        matches = matcher(lg, bx[:, :q], lab, bx[:, q:], al, [m, m])
        cost = matcher.cost(lg, bx[:, :q], lab, bx[:, q:], al)
        for i, (rows, cols) in enumerate(matches):
            alone = matcher.cost(lg[i : i + 1], bx[i : i + 1, :q], lab[i : i + 1], bx[i : i + 1, q:], al[i : i + 1])[0]
            assert torch.allclose(cost[i], alone, atol=1e-6)  # each image against its own objects only
            best = min(sum(alone[p[j], j] for j in range(m)) for p in itertools.permutations(range(q), m))
            assert alone[rows, cols].sum().item() == pytest.approx(best.item(), abs=1e-5)


@pytest.mark.paper("tsp")
def test_parameter_count(record_property) -> None:
    """TSP-FCOS = torchvision FCOS's backbone and towers + FCOS's classifier + the transformer part counted by hand;
    TSP-RCNN = torchvision Faster R-CNN's backbone, RPN and fc head + its transformer part by hand."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn, fcos_resnet50_fpn

    with torch.device("meta"):
        ours = pz.create_model("tsp_fcos_resnet50_fpn")
        ref = fcos_resnet50_fpn(weights=None, weights_backbone=None)
    c, d, f, layers, k = 256, 256, 1024, 6, 91
    assert n_params(ours.backbone) == n_params(ref.backbone)
    head = n_params(ref.head.classification_head) + n_params(ref.head.regression_head.conv)
    assert n_params(ours.cls_tower) + n_params(ours.bbox_tower) + n_params(ours.foi_logits) == head
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    transformer = 5 * d + (2 * c * d + d) + 2 * d + layers * per_layer + (d * k + k) + (d + 1) + (4 * d + 4) + 5
    total = n_params(ref.backbone) + head + transformer
    record_property("params_m", n_params(ours) / 1e6)
    assert n_params(ours) == total
    with torch.device("meta"):
        rcnn = pz.create_model("tsp_rcnn_resnet50_fpn")
        ref = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    shared = n_params(ref.backbone) + n_params(ref.rpn) + n_params(ref.roi_heads.box_head)
    transformer = (1024 * d + d) + (d * d + d) + 2 * d + layers * per_layer + (d * k + k) + (4 * d + 4)
    record_property("rcnn_params_m", n_params(rcnn) / 1e6)
    assert n_params(rcnn) == shared + transformer


@pytest.mark.paper("tsp")
def test_training_step_and_detect() -> None:
    """The named weighted losses are finite and reach the encoder, the heads and the FoI classifier; an image
    without objects trains; detections are at most detections_per_img per image, inside the image; bad labels
    give a DataError."""
    torch.manual_seed(0)
    model = small_tsp(3, 64, width=8, d_model=32, fois=20, layers=1).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = model(images, targets)
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou", "loss_ctr", "loss_foi"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for p in (model.encoder[0].linear1.weight, model.class_embed.weight, model.bbox_embed.weight, model.foi_logits.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    dets = model.detect([torch.rand(3, 64, 80)])
    assert len(dets[0]["boxes"]) <= model.detections_per_img
    assert (dets[0]["boxes"][:, 2] <= 80 + 1e-4).all() and (dets[0]["boxes"] >= 0).all()
    with pytest.raises(DataError):
        model(images, [targets[0], {"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([3])}])
    with pytest.raises(ConfigError):
        small_tsp(3, 64, width=8, d_model=32, fois=0)


# ---------------------------------------------------------------------------------------------- TSP-RCNN
@pytest.fixture(scope="module")
def rcnn_pair():
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    ref = perturb_(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=K, min_size=128, max_size=160,
                                           rpn_post_nms_top_n_test=30), seed=2).eval()
    ours = pz.create_model("tsp_rcnn_resnet50_fpn", num_classes=K, min_size=128, max_size=160, proposals=30)
    pz.load_weights(ours, ref.state_dict(), source="torchvision", strict=False)
    return ours.eval(), ref


@pytest.mark.paper("tsp")
def test_rcnn_proposals_and_roi_features_equal_torchvision(rcnn_pair, record_property) -> None:
    """TSP-RCNN's parts from Faster R-CNN (backbone, RPN, RoIAlign, fc6/fc7) give torchvision's proposals and RoI
    features; the encoder sees each image's proposals, padding masked."""
    ours, ref = rcnn_pair
    images = [torch.rand(3, 128, 160, generator=torch.Generator().manual_seed(3)),
              torch.rand(3, 120, 150, generator=torch.Generator().manual_seed(4))]
    with torch.no_grad():
        batch, _ = ref.transform(images)
        feats = ref.backbone(batch.tensors)
        expected, _ = ref.rpn(batch, feats)
        ob, _ = ours.transform(images)
        of = ours.backbone(ob.tensors)
        got, _ = ours.rpn(ob, of)
        for a, b in zip(got, expected):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5
        ref_rois = ref.roi_heads.box_head(ref.roi_heads.box_roi_pool(feats, expected, batch.image_sizes))
        rois = torch.cat([torch.cat((torch.full((len(p), 1), float(i)), p), 1) for i, p in enumerate(got)])
        ours_rois = ours.box_head(ours.box_roi_pool(of, rois, ob.image_sizes))
        assert rel_err(ours_rois, ref_rois) < 1e-5
        out = ours.head(of, got, ob.image_sizes)
    assert out["valid"].sum(1).tolist() == [len(p) for p in got]
    record_property("proposals_per_image", [len(p) for p in got])


@pytest.mark.paper("tsp")
def test_rcnn_prior_constructed() -> None:
    """A proposal may take only its own highest-IoU object, with IoU >= 0.5, and only if both are real."""
    iou = torch.tensor([[[0.7, 0.6], [0.4, 0.3], [0.55, 0.8], [0.9, 0.0]]])
    valid = torch.tensor([[True, True, True, False]])
    box_valid = torch.tensor([[True, True]])
    from paperzoo.models.detection.tsp import rcnn_prior

    assert rcnn_prior(iou, valid, box_valid).tolist() == [[[True, False], [False, False], [False, True], [False, False]]]
    assert rcnn_prior(iou, valid, torch.tensor([[False, True]])).tolist() == [[[False, True], [False, False],
                                                                              [False, True], [False, False]]]


@pytest.mark.paper("tsp")
def test_rcnn_training_step_and_detect(rcnn_pair) -> None:
    """The objects join the proposals in training, so every object is matched (its own box has IoU 1): box terms
    are near zero for a perfect proposal's zero deltas, the class and RPN terms finite; detect gives dicts."""
    ours, _ = rcnn_pair
    ours.train()
    try:
        images = [torch.rand(3, 128, 160), torch.rand(3, 128, 160)]
        targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 110.0], [50.0, 60.0, 70.0, 90.0]]), "labels": torch.tensor([1, 3])},
                   {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
        losses = ours(images, targets)
        assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou", "loss_objectness", "loss_rpn_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values())
        assert 0 < losses["loss_giou"].item() < 0.5 and losses["loss_ce"].item() > 0.1
    finally:
        ours.eval()
    dets = ours.detect([torch.rand(3, 128, 160)])
    assert len(dets[0]["boxes"]) == ours.detections_per_img and (dets[0]["boxes"][:, 2] <= 160 + 1e-4).all()
