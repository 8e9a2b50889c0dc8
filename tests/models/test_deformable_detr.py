"""Deformable DETR (arXiv 2010.04159), the base of Co-DETR's Deformable variant: the multi-scale deformable attention
core and module against Hugging Face's pure-PyTorch ones (four levels of different sizes, sampling points off the
map, padded values); the whole detector against ``DeformableDetrForObjectDetection`` (built from a config with its
timm ResNet-50 without any download, reduced in width and depth, perturbed) loaded with ``source="transformers"``:
the same ``pred_logits``/``pred_boxes`` on a padded batch, and the same focal-loss set terms after matching; planted
mistakes (``align_corners=True``, offsets not divided by the level's size, DETR's sine positions instead of pixel
centres) that the comparisons catch; the parameter count against Hugging Face's full-size model and the paper's 40M;
two training steps through ``paperzoo train``'s path on the built-in scenes."""
from __future__ import annotations

import types

import pytest
import torch
from helpers import perturb_, rel_err
from torchvision.ops import box_convert

import paperzoo as pz
from paperzoo.errors import ConfigError, WeightsError
from paperzoo.models.detection import deformable_detr
from paperzoo.models.detection._parts import deformable
from paperzoo.models.detection._parts.deformable import MSDeformAttn, ms_deform_attn

K = 5
SHAPES = [(9, 11), (5, 6), (3, 3), (1, 2)]
SMALL = dict(num_classes=K, d_model=64, heads=4, ffn=96, enc_layers=2, dec_layers=2, num_queries=20, min_size=128,
             max_size=200)


def _off(a: torch.Tensor, b: torch.Tensor) -> float:
    """The same relative error as ``rel_err``, for planted bugs: not recorded as the check's measured error."""
    return float((a - b).abs().max() / b.abs().max())


def _hf_config(**kw):
    from transformers import DeformableDetrConfig

    return DeformableDetrConfig(use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False, **kw)


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 128, 160, generator=g), torch.rand(3, 150, 120, generator=g)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 60.0, 90.0, 100.0]]), "labels": torch.tensor([3, 4])},
            {"boxes": torch.tensor([[0.0, 0.0, 60.0, 70.0]]), "labels": torch.tensor([1])}]


def _attention_inputs(heads: int = 4, dim: int = 8, queries: int = 13, points: int = 3):
    g = torch.Generator().manual_seed(0)
    s = sum(h * w for h, w in SHAPES)
    value = torch.randn(2, s, heads, dim, generator=g)
    locations = torch.rand(2, queries, heads, len(SHAPES), points, 2, generator=g) * 1.2 - 0.1  # some off the map
    weights = torch.randn(2, queries, heads, len(SHAPES) * points, generator=g).softmax(-1)
    return value, locations, weights.view(2, queries, heads, len(SHAPES), points)


def _hf_core(value, locations, weights):
    from transformers.models.deformable_detr.modeling_deformable_detr import MultiScaleDeformableAttention

    shapes = torch.tensor(SHAPES)
    start = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    return MultiScaleDeformableAttention()(value, shapes, SHAPES, start, locations, weights, 64)


@pytest.mark.paper("co-detr")
def test_deformable_attention_core_equals_transformers(record_property, monkeypatch) -> None:
    """Eq. 3's sampling and weighted sum on four levels of different sizes (points partly outside the maps: zero
    padding) equals Hugging Face's ``MultiScaleDeformableAttention``; with ``align_corners=True`` it does not."""
    value, locations, weights = _attention_inputs()
    with torch.no_grad():
        expected = _hf_core(value, locations, weights)
        out = ms_deform_attn(value, SHAPES, locations, weights)
    assert out.shape == (2, 13, 4 * 8)
    err = rel_err(out, expected)
    record_property("rel_err_vs_transformers", err)
    assert err < 1e-5, err
    # planted bug: grid_sample with align_corners=True (pixel corners, not centres, at 0 and 1)
    functional = torch.nn.functional
    monkeypatch.setattr(deformable, "F", types.SimpleNamespace(
        grid_sample=lambda *a, **k: functional.grid_sample(*a, **{**k, "align_corners": True})))
    with torch.no_grad():
        planted = _off(ms_deform_attn(value, SHAPES, locations, weights), expected)
    record_property("planted_align_corners_rel_err", planted)
    assert planted > 1e-2, planted


@pytest.mark.paper("co-detr")
def test_deformable_attention_module_equals_transformers(record_property, monkeypatch) -> None:
    """``MSDeformAttn`` (offsets and weights from the query, values projected and zeroed on padding, offsets divided by
    each level's (W, H), reference points per level) equals ``DeformableDetrMultiscaleDeformableAttention`` with the
    same (perturbed) weights; offsets left in [0, 1] units instead of pixels of the level make it differ."""
    from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrMultiscaleDeformableAttention

    d, heads, points = 32, 4, 3
    torch.manual_seed(0)
    ref = perturb_(DeformableDetrMultiscaleDeformableAttention(_hf_config(d_model=d, num_feature_levels=len(SHAPES)),
                                                              heads, points), seed=1, scale=0.5).eval()
    ours = MSDeformAttn(d, heads, len(SHAPES), points)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(2)
    s = sum(h * w for h, w in SHAPES)
    query, value = torch.randn(2, 7, d, generator=g), torch.randn(2, s, d, generator=g)
    reference = torch.rand(2, 7, len(SHAPES), 2, generator=g)
    valid = torch.rand(2, s, generator=g) > 0.2
    shapes = torch.tensor(SHAPES)
    start = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    with torch.no_grad():
        expected = ref(query, attention_mask=valid, encoder_hidden_states=value, reference_points=reference,
                       spatial_shapes=shapes, spatial_shapes_list=SHAPES, level_start_index=start)[0]
        out = ours(query, reference, value, SHAPES, valid)
    err = rel_err(out, expected)
    record_property("rel_err_vs_transformers", err)
    assert err < 1e-5, err
    monkeypatch.setattr(MSDeformAttn, "offset_normalizer", lambda self, shapes, like: torch.ones(len(shapes), 2))
    with torch.no_grad():
        planted = _off(ours(query, reference, value, SHAPES, valid), expected)
    record_property("planted_unnormalised_offsets_rel_err", planted)
    assert planted > 1e-2, planted


@pytest.fixture(scope="module")
def pair():
    from transformers import DeformableDetrForObjectDetection

    torch.manual_seed(0)
    config = _hf_config(num_labels=K, d_model=64, encoder_attention_heads=4, decoder_attention_heads=4,
                        encoder_ffn_dim=96, decoder_ffn_dim=96, encoder_layers=2, decoder_layers=2, num_queries=20,
                        class_cost=2, auxiliary_loss=True)
    ref = perturb_(DeformableDetrForObjectDetection(config), seed=3).eval()
    with torch.device("meta"):
        ours = pz.create_model("deformable_detr_resnet50", **SMALL)
    ours = pz.load_weights(ours.to_empty(device="cpu"), ref.state_dict(), source="transformers").eval()
    return ours, ref


@pytest.mark.paper("co-detr")
def test_outputs_equal_transformers(pair, record_property, monkeypatch) -> None:
    """pred_logits (N, Q, K) and pred_boxes (N, Q, 4) equal Hugging Face's on the same padded batch and pixel mask (two
    images of different sizes, four levels); DETR's sine positions (no half-pixel offset) in place of Deformable
    DETR's make them differ."""
    ours, ref = pair
    images = _images()
    with torch.no_grad():
        x, valid = ours.batch(images)
        out = ours(images)
        expected = ref(pixel_values=x, pixel_mask=valid.long())
    assert not valid.all()  # the second image is padded
    assert out["pred_logits"].shape == (2, 20, K) and out["pred_boxes"].shape == (2, 20, 4)
    errs = {"pred_logits": rel_err(out["pred_logits"], expected.logits),
            "pred_boxes": rel_err(out["pred_boxes"], expected.pred_boxes)}
    record_property("rel_err_vs_transformers", errs)
    assert max(errs.values()) < 1e-4, errs
    assert float(out["pred_logits"].std(1).mean()) > 1e-3  # the queries are not all alike
    sine = deformable_detr.sine_position_embedding
    monkeypatch.setattr(deformable_detr, "sine_position_embedding", lambda *a, **k: sine(*a, **{**k, "offset": 0.0}))
    with torch.no_grad():
        planted = ours(images)
    bug = max(_off(planted["pred_logits"], expected.logits), _off(planted["pred_boxes"], expected.pred_boxes))
    record_property("planted_sine_offset_rel_err", bug)
    assert bug > 1e-3, bug


@pytest.mark.paper("co-detr")
def test_loss_terms_equal_transformers(pair, record_property) -> None:
    """The set loss after Hungarian matching with the focal class cost (class 2, L1 5, GIoU 2): loss_ce (sigmoid focal,
    alpha 0.25, gamma 2, over the number of objects), loss_bbox and loss_giou equal Hugging Face's (unweighted), for
    the last decoder layer and, matched anew, the first (auxiliary loss). The weights are the official repository's
    (2 / 5 / 2; Hugging Face sums its classification term with weight 1)."""
    ours, ref = pair
    images, targets = _images(), _targets()
    sizes = [tuple(im.shape[-2:]) for im in images]
    labels = [{"class_labels": t["labels"], "boxes": box_convert(t["boxes"] / torch.tensor([w, h, w, h]), "xyxy", "cxcywh")}
              for t, (h, w) in zip(targets, sizes)]
    with torch.no_grad():
        x, valid = ours.batch(images)
        expected = ref(pixel_values=x, pixel_mask=valid.long(), labels=labels).loss_dict
        losses = ours.loss(ours.forward_features(x, valid), targets, sizes, weighted=False)
        weighted = ours.loss(ours.forward_features(x, valid), targets, sizes)
    assert all(abs(float(weighted[k]) - {"ce": 2, "bbox": 5, "giou": 2}[k.split("_")[1]] * float(v)) < 1e-5
               for k, v in losses.items())
    assert set(losses) == {f"{k}{s}" for k in ("loss_ce", "loss_bbox", "loss_giou") for s in ("", "_0")}
    errs = {k: abs(float(v) - float(expected[k])) / float(expected[k]) for k, v in losses.items()}
    record_property("loss_rel_err_vs_transformers", errs)
    assert max(errs.values()) < 1e-5, (errs, {k: float(v) for k, v in losses.items()}, expected)


@pytest.mark.paper("co-detr")
def test_parameter_count_equals_transformers_and_paper(record_property) -> None:
    """Full size (COCO's 91 classes, 300 queries, 6 + 6 layers, FFN 1024, 4 levels x 4 points): exactly Hugging Face's
    parameter count (heads shared across decoder layers, as without box refinement) and Table 1's 40M."""
    from transformers import DeformableDetrForObjectDetection

    with torch.device("meta"):
        ours = pz.create_model("deformable_detr_resnet50")
        ref = DeformableDetrForObjectDetection(_hf_config(num_labels=91))
    n, n_ref = sum(p.numel() for p in ours.parameters()), sum(p.numel() for p in ref.parameters())
    record_property("params", n)
    record_property("params_transformers", n_ref)
    assert n == n_ref, (n, n_ref)
    assert abs(n / 1e6 - 40.0) / 40.0 < 0.02, n
    assert ours.query_embed.weight.shape == (300, 512) and len(ours.encoder) == len(ours.decoder) == 6
    assert len(ours.input_proj) == 4 and ours.meta.paper_params_m == 40.0


def test_converter_refuses_untied_heads_and_bad_config(pair) -> None:
    """A checkpoint whose per-layer heads differ (box refinement) is refused by name; d_model must suit GroupNorm(32)."""
    ours, ref = pair
    state = dict(ref.state_dict())
    state["class_embed.1.bias"] = state["class_embed.1.bias"] + 1
    with pytest.raises(WeightsError, match="class_embed.1.bias"):
        pz.load_weights(ours, state, source="transformers")
    with pytest.raises(ConfigError, match="multiple of 32"):
        pz.create_model("deformable_detr_resnet50", d_model=48)


def test_two_training_steps_through_the_train_path(tmp_path) -> None:
    """``paperzoo train --model deformable_detr_resnet50 --data shapes`` in process, tiny (64 px, d_model 32, one layer
    each, 10 queries): two steps, the weighted focal / L1 / GIoU terms, COCO AP from ``detect``."""
    from paperzoo.config import apply_overrides
    from paperzoo.run import build_and_train
    from paperzoo.train import TrainConfig

    tiny = dict(d_model=32, heads=4, enc_layers=1, dec_layers=1, ffn=32, num_queries=10, min_size=64, max_size=64)
    cfg = apply_overrides(TrainConfig(model="deformable_detr_resnet50", epochs=1, batch_size=2, device="cpu"),
                          ["data.size=4", "data.val_size=2", "data.image_size=64", "log_every=1",
                           *[f"model_args.{k}={v}" for k, v in tiny.items()]])
    cfg.data.name = "shapes"
    cfg.out = str(tmp_path)
    trainer = build_and_train(cfg, quiet=True)
    assert trainer.step == 2
    row = trainer.history[-1]
    assert "val_map" in row and 0 <= row["val_map"] <= 1
    steps = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert steps and all(k in steps[0] for k in ("loss_ce", "loss_bbox", "loss_giou"))
    model = trainer.model
    assert model.backbone.model.conv1.weight.requires_grad is False
    dets = model.detect([torch.rand(3, 64, 64), torch.rand(3, 48, 64)])
    assert len(dets[0]["scores"]) == min(100, 10 * model.num_classes)
    assert (dets[1]["boxes"][:, 3] <= 48 + 1e-3).all() and (dets[0]["scores"][:-1] >= dets[0]["scores"][1:]).all()


@pytest.mark.paper("co-detr")
def test_focal_matching_cost_by_hand(record_property) -> None:
    """One entry of the focal class cost the matcher uses (x 2, plus 5 L1 - 2 GIoU), computed by hand:
    alpha (1 - p)^2 (-log p) - (1 - alpha) p^2 (-log(1 - p)) with p the query's sigmoid score for the object's class."""
    from torchvision.ops import generalized_box_iou

    matcher = pz.create_model("deformable_detr_resnet50", **{**SMALL, "enc_layers": 1, "dec_layers": 1}).criterion.matcher
    g = torch.Generator().manual_seed(0)
    logits, boxes = torch.randn(1, 4, K, generator=g), torch.rand(1, 4, 4, generator=g) * 0.3 + 0.3
    labels, tgt = torch.tensor([2, 0]), torch.rand(2, 4, generator=g) * 0.3 + 0.3
    p = logits[0, 1, 0].sigmoid()
    focal = 0.25 * (1 - p) ** 2 * -p.log() - 0.75 * p ** 2 * -(1 - p).log()
    giou = generalized_box_iou(box_convert(boxes[0, 1:2], "cxcywh", "xyxy"), box_convert(tgt[1:2], "cxcywh", "xyxy"))[0, 0]
    hand = 2 * focal + 5 * (boxes[0, 1] - tgt[1]).abs().sum() - 2 * giou
    err = abs(float(matcher.cost(logits, boxes, labels, tgt)[1, 1] - hand))
    record_property("hand_cost_abs_err", err)
    assert err < 1e-5, err


def test_decoder_group_mask_isolates_extra_queries(pair) -> None:
    """The decoder's ``self_mask`` (Co-DETR's block-diagonal groups): the main queries decode to the same outputs alone
    and beside a group of extra queries (with their own reference points) that they cannot see."""
    from paperzoo.models.detection.co_detr import group_attention_mask

    ours, _ = pair
    with torch.no_grad():
        x, valid = ours.batch(_images())
        enc = ours.encode(x, valid)
        t, pos, ref = ours.queries(len(x))
        alone = ours.decode(t, pos, ref, enc)
        g = torch.Generator().manual_seed(5)
        extra = [torch.randn(2, 6, t.shape[-1], generator=g), torch.randn(2, 6, t.shape[-1], generator=g),
                 torch.rand(2, 6, 2, generator=g)]
        mask = group_attention_mask([t.shape[1], 6])[:, None]
        both = ours.decode(torch.cat((t, extra[0]), 1), torch.cat((pos, extra[1]), 1), torch.cat((ref, extra[2]), 1), enc,
                           mask)
        unmasked = ours.decode(torch.cat((t, extra[0]), 1), torch.cat((pos, extra[1]), 1), torch.cat((ref, extra[2]), 1),
                               enc)
    torch.testing.assert_close(both[:, :, : t.shape[1]], alone, rtol=1e-5, atol=1e-5)
    assert (unmasked[:, :, : t.shape[1]] - alone).abs().max() > 1e-3  # without the mask they do see each other
