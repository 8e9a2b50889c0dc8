"""DETR (arXiv 2005.12872): Hugging Face's ``DetrForObjectDetection`` (built from a config, its timm ResNet-50 without
any download, perturbed) loaded into ours with ``source="transformers"`` gives the same ``pred_logits``/``pred_boxes``
on a padded batch of two images and the same three loss terms (matching included); the Hungarian matcher against
brute force and its cost against a hand computation; the paper's 41M parameters for DETR-R50 (60M for R101); the
auxiliary losses and their weights; the official checkpoint key layout.

Inputs are small (shorter side 128) so that the R50 comparison runs in a few seconds. The reference's decoder is
run without its ``auxiliary_loss`` switch: with it on, Hugging Face feeds each decoder layer the LayerNorm of the
previous one, which the official model does not."""
from __future__ import annotations

import itertools

import pytest
import torch
from helpers import perturb_, rel_err
from torchvision.ops import box_convert, generalized_box_iou

import paperzoo as pz
from paperzoo.errors import DataError
from paperzoo.models.detection.detr import HungarianMatcher

K = 5
SMALL = dict(min_size=128, max_size=200)


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 128, 160, generator=g), torch.rand(3, 150, 120, generator=g)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([3, 4])},
            {"boxes": torch.tensor([[0.0, 0.0, 60.0, 70.0]]), "labels": torch.tensor([1])}]


@pytest.fixture(scope="module")
def pair():
    from transformers import DetrConfig, DetrForObjectDetection

    torch.manual_seed(0)
    ref = DetrForObjectDetection(DetrConfig(use_pretrained_backbone=False, num_labels=K)).eval()
    perturb_(ref, seed=3)
    with torch.no_grad():  # distinct object queries and sharper cross-attention, so that queries differ (and match)
        ref.model.query_position_embeddings.weight.normal_(generator=torch.Generator().manual_seed(4))
        for layer in ref.model.decoder.layers:
            layer.encoder_attn.q_proj.weight.mul_(5)
            layer.encoder_attn.k_proj.weight.mul_(5)
    with torch.device("meta"):
        ours = pz.create_model("detr_resnet50", num_classes=K, **SMALL)
    ours = pz.load_weights(ours.to_empty(device="cpu"), ref.state_dict(), source="transformers").eval()
    return ours, ref


@pytest.mark.paper("detr")
def test_outputs_equal_transformers(pair, record_property) -> None:
    """pred_logits (N, 100, K + 1) and pred_boxes (N, 100, 4) equal Hugging Face's on the same padded batch and
    pixel mask (two images of different sizes)."""
    ours, ref = pair
    images = _images()
    with torch.no_grad():
        x, valid = ours.batch(images)
        out = ours(images)
        expected = ref(pixel_values=x, pixel_mask=valid.long())
    assert not valid.all()  # the second image is padded
    assert out["pred_logits"].shape == (2, 100, K + 1) and out["pred_boxes"].shape == (2, 100, 4)
    errs = {"pred_logits": rel_err(out["pred_logits"], expected.logits), "pred_boxes": rel_err(out["pred_boxes"], expected.pred_boxes)}
    record_property("rel_err_vs_transformers", errs)
    assert max(errs.values()) < 1e-4, errs
    assert float(out["pred_logits"].std(1).mean()) > 1e-3  # the queries are not all alike


@pytest.mark.paper("detr")
def test_dc5_outputs_equal_transformers_dilated_backbone(record_property) -> None:
    """DETR-DC5: Hugging Face's ``DetrConfig(dilation=True)`` (timm's ResNet-50 at output stride 16) loaded into
    ``detr_resnet50_dc5`` gives the same outputs; its feature map is twice as fine as DETR's (stride 16, not 32)."""
    from transformers import DetrConfig, DetrForObjectDetection

    torch.manual_seed(0)
    ref = perturb_(DetrForObjectDetection(DetrConfig(use_pretrained_backbone=False, num_labels=K, dilation=True)), seed=5)
    ref.eval()
    with torch.device("meta"):
        ours = pz.create_model("detr_resnet50_dc5", num_classes=K, **SMALL)
    ours = pz.load_weights(ours.to_empty(device="cpu"), ref.state_dict(), source="transformers").eval()
    images = _images()
    with torch.no_grad():
        x, valid = ours.batch(images)
        out = ours(images)
        expected = ref(pixel_values=x, pixel_mask=valid.long())
        assert ours.backbone(x)[-1].shape[-2:] == (x.shape[-2] // 16, x.shape[-1] // 16)
    errs = {"pred_logits": rel_err(out["pred_logits"], expected.logits), "pred_boxes": rel_err(out["pred_boxes"], expected.pred_boxes)}
    record_property("rel_err_vs_transformers", errs)
    assert max(errs.values()) < 1e-4, errs


@pytest.mark.paper("detr")
def test_loss_terms_equal_transformers(pair, record_property) -> None:
    """The set loss after Hungarian matching: loss_ce (no-object weight 0.1), loss_bbox (L1) and loss_giou equal Hugging
    Face's (unweighted), for targets in pixels turned into normalised (cx, cy, w, h)."""
    ours, ref = pair
    images, targets = _images(), _targets()
    sizes = [tuple(im.shape[-2:]) for im in images]
    labels = [{"class_labels": t["labels"], "boxes": box_convert(t["boxes"] / torch.tensor([w, h, w, h]), "xyxy", "cxcywh")}
              for t, (h, w) in zip(targets, sizes)]
    with torch.no_grad():
        x, valid = ours.batch(images)
        expected = ref(pixel_values=x, pixel_mask=valid.long(), labels=labels).loss_dict
        losses = ours.loss(ours.forward_features(x, valid), targets, sizes, weighted=False)
    errs = {k: abs(float(losses[k]) - float(expected[k])) / float(expected[k]) for k in ("loss_ce", "loss_bbox", "loss_giou")}
    record_property("loss_rel_err_vs_transformers", errs)
    assert max(errs.values()) < 1e-5, (errs, {k: float(v) for k, v in losses.items()}, expected)


@pytest.mark.paper("detr")
def test_matcher_is_optimal_against_brute_force(record_property) -> None:
    """scipy's assignment has the minimum total cost over every injective assignment of objects to queries (small
    cases, several images of different object counts, one without objects); one cost entry by hand:
    -p(class) + 5 L1 - 2 GIoU."""
    matcher = HungarianMatcher()
    g = torch.Generator().manual_seed(0)
    for q, counts in [(5, [3, 0, 2]), (4, [4, 1]), (6, [2])]:
        n = len(counts)
        logits = torch.randn(n, q, K + 1, generator=g)
        boxes = torch.rand(n, q, 4, generator=g) * 0.4 + torch.tensor([0.3, 0.3, 0.1, 0.1])
        targets = [{"labels": torch.randint(0, K, (c,), generator=g),
                    "boxes": torch.rand(c, 4, generator=g) * 0.4 + torch.tensor([0.3, 0.3, 0.1, 0.1])} for c in counts]
        indices = matcher(logits, boxes, targets)
        for i, (t, (rows, cols)) in enumerate(zip(targets, indices)):
            c = len(t["labels"])
            assert len(rows) == len(cols) == c and len(set(rows.tolist())) == c
            if c == 0:
                continue
            cost = matcher.cost(logits[i:i + 1], boxes[i:i + 1], t["labels"], t["boxes"])  # (q, c)
            found = float(cost[rows, cols].sum())
            best = min(float(sum(cost[p[j], j] for j in range(c))) for p in itertools.permutations(range(q), c))
            assert abs(found - best) < 1e-5, (found, best)
    # one entry by hand
    p = logits[0, 2].softmax(-1)[targets[0]["labels"][1]]
    l1 = (boxes[0, 2] - targets[0]["boxes"][1]).abs().sum()
    giou = generalized_box_iou(box_convert(boxes[0, 2][None], "cxcywh", "xyxy"),
                               box_convert(targets[0]["boxes"][1][None], "cxcywh", "xyxy"))[0, 0]
    entry = matcher.cost(logits[:1], boxes[:1], targets[0]["labels"], targets[0]["boxes"])[2, 1]
    record_property("hand_cost_abs_err", float((entry - (-p + 5 * l1 - 2 * giou)).abs()))
    assert abs(float(entry - (-p + 5 * l1 - 2 * giou))) < 1e-5


@pytest.mark.paper("detr")
@pytest.mark.parametrize("name,paper_m", [("detr_resnet50", 41.0), ("detr_resnet101", 60.0), ("detr_resnet50_dc5", 41.0),
                                          ("detr_resnet101_dc5", 60.0)])
def test_parameter_count(name: str, paper_m: float, record_property) -> None:
    """Table 1: 41M parameters for DETR-R50, 60M for DETR-R101, the same for their DC5 variants (dilation adds no
    weights; COCO's 91 classes + no object)."""
    with torch.device("meta"):
        model = pz.create_model(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    record_property("params_m", n)
    assert abs(n - paper_m) / paper_m < 0.02, n
    assert model.query_embed.weight.shape == (100, 256) and len(model.encoder) == len(model.decoder) == 6


def test_training_losses_are_weighted_with_aux_terms() -> None:
    """In training: 3 terms for the last decoder layer and for each of the 5 others, weighted 1 / 5 / 2."""
    model = pz.create_model("detr_resnet50", num_classes=K, enc_layers=1, dec_layers=3, ffn=64, **SMALL)
    images, targets = _images(), _targets()
    model.eval()  # no dropout, so that weighted and unweighted terms come from the same pass
    with torch.no_grad():
        x, valid = model.batch(images)
        out = model.forward_features(x, valid)
        raw = model.loss(out, targets, [im.shape[-2:] for im in images], weighted=False)
        weighted = model.loss(out, targets, [im.shape[-2:] for im in images])
    assert set(raw) == {f"{k}{s}" for k in ("loss_ce", "loss_bbox", "loss_giou") for s in ("", "_0", "_1")}
    for k, v in raw.items():
        w = 5.0 if "bbox" in k else 2.0 if "giou" in k else 1.0
        assert abs(float(weighted[k]) - w * float(v)) < 1e-6
    w = model.criterion.empty_weight()
    assert abs(float(w[-1]) - 0.1) < 1e-7 and float(w[:-1].min()) == float(w[:-1].max()) == 1.0 and len(w) == K + 1
    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert model.class_embed.weight.grad is not None and model.backbone.model.conv1.weight.grad is None
    dets = model.detect(images)
    assert len(dets[0]["boxes"]) == 100 and (dets[1]["boxes"][:, 2] <= 120 + 1e-3).all()
    with pytest.raises(DataError, match="labels must lie in 0..4"):
        model(images[:1], [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([5])}])


def test_official_checkpoint_layout() -> None:
    """The official repository's keys (``backbone.0.body``, ``transformer.*`` with packed ``in_proj``) load: a state
    dict written in that layout from ours round-trips exactly."""
    model = pz.create_model("detr_resnet50", num_classes=K, enc_layers=1, dec_layers=1, ffn=32, **SMALL)
    official = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone.model."):
            official["backbone.0.body." + k[len("backbone.model."):]] = v
        elif k.startswith("decoder_norm."):
            official["transformer.decoder.norm." + k[len("decoder_norm."):]] = v
        elif k.startswith(("encoder.", "decoder.")):
            part, i, rest = k.split(".", 2)
            rest = rest.replace("cross_attn.", "multihead_attn.")
            official[f"transformer.{part}.layers.{i}.{rest}"] = v
        else:
            official[k] = v
    for key in [k for k in official if any(p in k for p in (".q_proj.", ".k_proj.", ".v_proj."))]:
        official.pop(key)
    for k, v in model.state_dict().items():
        if ".q_proj." in k:
            part, i, rest = k.split(".", 2)
            attn, _, kind = rest.split(".")
            attn = attn.replace("cross_attn", "multihead_attn")
            qkv = torch.cat([model.state_dict()[k.replace("q_proj", n)] for n in ("q_proj", "k_proj", "v_proj")])
            official[f"transformer.{part}.layers.{i}.{attn}.in_proj_{kind}"] = qkv
    copy = pz.load_weights(pz.create_model("detr_resnet50", num_classes=K, enc_layers=1, dec_layers=1, ffn=32, **SMALL),
                           {"model": official}, source="official")
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in model.state_dict().items())
