"""Segment Anything (arXiv 2304.02643): the segment_anything package's models, their random weights perturbed, load
into ours strictly and give the same image embeddings, masks and IoU predictions — the released ViT-B's prompt
encoder and mask decoder at full size, and whole models with a reduced-depth encoder built through both libraries'
classes (windowed attention with padding, global attention, relative positions); ViT-B/L/H have the reference's
tensors (on meta); the predictor embeds once and answers many prompts as SamPredictor does; automatic mask
generation keeps the reference generator's masks; the stability score by hand."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from helpers import n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.errors import PaperzooError
from paperzoo.models.segmentation.sam import SamAutomaticMaskGenerator, SamPredictor, stability_score

sa = pytest.importorskip("segment_anything")
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer  # noqa: E402

# A reduced encoder: 256 px (16 x 16 tokens), width 96, blocks 0 and 2 windowed (7 x 7: the grid padded to 21),
# block 1 global; prompt encoder and mask decoder at their released size.
SMALL = dict(img_size=256, embed_dim=96, depth=3, num_heads=4, global_attn_indexes=(1,), window_size=7)


def _reference_small() -> Sam:
    s = SMALL
    return Sam(
        ImageEncoderViT(depth=s["depth"], embed_dim=s["embed_dim"], img_size=s["img_size"], mlp_ratio=4,
                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=s["num_heads"], patch_size=16,
                        qkv_bias=True, use_rel_pos=True, global_attn_indexes=s["global_attn_indexes"],
                        window_size=s["window_size"], out_chans=256),
        PromptEncoder(embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16),
        MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048,
                                                                            num_heads=8),
                    transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)).eval()


@pytest.fixture(scope="module")
def small_pair():
    torch.manual_seed(0)
    ref = perturb_(_reference_small(), seed=1)
    ours = pz.load_weights(pz.create_model("sam_vit_b", **SMALL), ref.state_dict(), source="segment-anything").eval()
    return ours, ref


def _prompts(n: int, size: int = 256) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    xy = torch.rand(n, 2, 2, generator=g) * size
    return {"point_coords": torch.rand(n, 3, 2, generator=g) * size,
            "point_labels": torch.tensor([[1, 0, 1], [1, -1, -1]] * (n // 2) + [[1, 1, 0]] * (n % 2)),
            "boxes": torch.cat([xy.min(1).values, xy.max(1).values], 1),
            "mask_inputs": torch.randn(n, 1, 64, 64, generator=g)}


@pytest.mark.paper("segment-anything")
def test_whole_model_equals_segment_anything(small_pair, record_property) -> None:
    """Image embeddings, low-res mask logits and IoU predictions equal Sam.forward's for points, points + box +
    mask, and a box alone, with multimask output on and off (reduced encoder)."""
    ours, ref = small_pair
    x = torch.rand(2, 3, 256, 200) * 255
    pre = torch.stack([ours.preprocess(im) for im in x])
    assert torch.equal(pre, torch.stack([ref.preprocess(im) for im in x]))
    p = _prompts(2)
    cases = [("point_coords", "point_labels"), ("point_coords", "point_labels", "boxes", "mask_inputs"), ("boxes",)]
    with torch.no_grad():
        emb = ours.image_encoder(pre)
        assert rel_err(emb, ref.image_encoder(pre)) < 1e-5
        for keys in cases:
            for multi in (True, False):
                kw = {k: p[k] for k in keys}
                low, iou = ours(pre, **kw, multimask_output=multi)
                batched = [{"image": x[i], "original_size": (256, 200),
                            **{k: (v[i:i + 1] if k != "mask_inputs" else v[i:i + 1]) for k, v in kw.items()}}
                           for i in range(2)]
                expected = ref(batched, multimask_output=multi)
                exp_low = torch.cat([e["low_res_logits"] for e in expected])
                exp_iou = torch.cat([e["iou_predictions"] for e in expected])
                assert low.shape == exp_low.shape == (2, 3 if multi else 1, 64, 64)
                assert rel_err(low, exp_low) < 1e-4 and rel_err(iou, exp_iou) < 1e-4, keys
    record_property("cases", len(cases) * 2)


@pytest.mark.paper("segment-anything")
def test_released_vit_b_decoder_equals_segment_anything(record_property) -> None:
    """sam_model_registry["vit_b"](checkpoint=None), perturbed, loads strictly; its prompt encoder and mask decoder
    (full size, 64 x 64 embedding) give the same masks and IoU predictions for many prompts on one embedding."""
    torch.manual_seed(0)
    ref = sa.sam_model_registry["vit_b"](checkpoint=None)
    for module in (ref.prompt_encoder, ref.mask_decoder):
        perturb_(module, seed=2)
    ours = pz.create_model("sam_vit_b")
    strict_load(record_property, ours, ref.state_dict(), "segment-anything")
    ours.eval(), ref.eval()
    emb = torch.randn(1, 256, 64, 64)
    p = _prompts(3, 1024)
    with torch.no_grad():
        assert torch.equal(ours.prompt_encoder.get_dense_pe(), ref.prompt_encoder.get_dense_pe())
        for kw in ({"points": (p["point_coords"], p["point_labels"]), "boxes": None, "masks": None},
                   {"points": None, "boxes": p["boxes"], "masks": p["mask_inputs"][..., :64, :64].repeat(1, 1, 4, 4)}):
            s1, d1 = ours.prompt_encoder(**kw)
            s2, d2 = ref.prompt_encoder(**kw)
            assert rel_err(s1, s2) < 1e-5 and rel_err(d1, d2) < 1e-5
            m1, i1 = ours.mask_decoder(emb, ours.prompt_encoder.get_dense_pe(), s1, d1, True)
            m2, i2 = ref.mask_decoder(emb, ref.prompt_encoder.get_dense_pe(), s2, d2, True)
            assert m1.shape == (3, 3, 256, 256)
            assert rel_err(m1, m2) < 1e-4 and rel_err(i1, i2) < 1e-4


@pytest.mark.paper("segment-anything")
def test_vit_b_l_h_have_the_reference_tensors(record_property) -> None:
    """ViT-B/L/H: every tensor of segment_anything's builders (the released checkpoints' layout) fits ours, on meta."""
    counts = {}
    for name, key in (("sam_vit_b", "vit_b"), ("sam_vit_l", "vit_l"), ("sam_vit_h", "vit_h")):
        with torch.device("meta"):
            ref = sa.sam_model_registry[key](checkpoint=None)
            ours = pz.create_model(name)
        strict_load(record_property, ours, ref.state_dict(), "segment-anything")
        assert n_params(ours) == n_params(ref)
        counts[name] = round(n_params(ours) / 1e6, 1)
    record_property("params_m", counts)
    assert counts == {"sam_vit_b": 93.7, "sam_vit_l": 312.3, "sam_vit_h": 641.1}


@pytest.mark.paper("segment-anything")
def test_predictor_embeds_once_and_equals_sam_predictor(small_pair, record_property) -> None:
    """One embedding, many prompts: masks at the original size, IoU predictions and low-res logits equal
    SamPredictor's for one point, a batch of boxes and a point + box; the encoder ran once."""
    ours, ref = small_pair
    image = torch.rand(1, 3, 256, 192) * 255  # already at the encoder's long side
    calls = []
    hook = ours.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    pred = SamPredictor(ours)
    pred.set_torch_image(image, (320, 240))
    rp = sa.SamPredictor(ref)
    rp.set_torch_image(image, (320, 240))
    s = torch.tensor([192 / 240, 256 / 320])
    pts, labels = torch.tensor([[100.0, 150.0]]), torch.tensor([1])
    boxes = torch.tensor([[10.0, 20.0, 200.0, 300.0], [50.0, 60.0, 120.0, 200.0]])
    with torch.no_grad():
        got = [pred.predict(pts, labels), pred.predict(box=boxes, multimask_output=False),
               pred.predict(pts, labels, box=boxes[:1], return_logits=True)]
        want = [rp.predict_torch((pts * s)[None], labels[None]),
                rp.predict_torch(None, None, boxes * s.repeat(2), multimask_output=False),
                rp.predict_torch((pts * s)[None], labels[None], boxes[:1] * s.repeat(2), return_logits=True)]
    hook.remove()
    assert len(calls) == 1
    assert got[0][0].shape == (3, 320, 240) and got[1][0].shape == (2, 1, 320, 240)
    for (m, i, low), (em, ei, elow) in zip(got, want):
        em, ei, elow = (em[0], ei[0], elow[0]) if m.ndim == 3 else (em, ei, elow)
        assert rel_err(low, elow) < 1e-4 and rel_err(i, ei) < 1e-4
        if m.dtype == torch.bool:
            assert (m != em).float().mean() < 1e-3
        else:
            assert rel_err(m, em) < 1e-4
    with pytest.raises(PaperzooError, match="set_image"):
        SamPredictor(ours).predict(pts, labels)


def _disc_logits(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in decoder whose masks depend on the prompt (random weights give nearly the same mask for every
    point): three discs of radius 24, 48, 96 input pixels around the first point, as (P, 3, 64, 64) low-res
    logits, and IoU predictions that vary with the point."""
    centres = torch.arange(64, dtype=torch.float32) * 4 + 2  # low-res pixel centres in the 256-px input frame
    pt = coords[:, 0].float()
    d = ((centres[None, None, :] - pt[:, 0, None, None]) ** 2 + (centres[None, :, None] - pt[:, 1, None, None]) ** 2).sqrt()
    radii = torch.tensor([24.0, 48.0, 96.0])
    logits = (radii[None, :, None, None] - d[:, None]) * 2
    iou = 0.5 + 0.1 * torch.arange(3.0)[None] + torch.sin(pt.sum(1, keepdim=True) / 37)
    return logits, iou


@pytest.mark.paper("segment-anything")
def test_automatic_masks_equal_the_reference_generator(small_pair, monkeypatch, record_property) -> None:
    """A 6 x 6 point grid, no crops, the paper's thresholds (predicted IoU > 0.88, stability >= 0.95, box NMS 0.7):
    the same masks in the same order, with the same predicted IoUs and stability scores, as SamAutomaticMaskGenerator,
    both driven by one prompt-dependent stand-in decoder (the grid, the coordinate transforms, the batching, the
    upsampling, the filters and torchvision's batched NMS are what is compared)."""
    ours, ref = small_pair
    seen = {}

    def ours_decode(emb, point_coords=None, point_labels=None, boxes=None, mask_inputs=None, multimask_output=True):
        return _disc_logits(point_coords)

    def ref_prompts(points, boxes, masks):
        seen["coords"] = points[0]
        return torch.zeros(len(points[0]), 1, 256), torch.zeros(len(points[0]), 256, 16, 16)

    monkeypatch.setattr(ours, "decode", ours_decode)
    monkeypatch.setattr(ref.prompt_encoder, "forward", ref_prompts)
    monkeypatch.setattr(ref.mask_decoder, "forward", lambda *a, **k: _disc_logits(seen["coords"]))
    g = torch.Generator().manual_seed(3)
    image = (torch.rand(192, 256, 3, generator=g) * 255).to(torch.uint8)
    kw = dict(points_per_side=6, points_per_batch=16, pred_iou_thresh=0.88, stability_score_thresh=0.95,
              box_nms_thresh=0.7)
    with torch.no_grad():
        got = SamAutomaticMaskGenerator(ours, **kw).generate(image)
        want = sa.SamAutomaticMaskGenerator(ref, **kw).generate(image.numpy())
    record_property("masks_kept", len(want))
    assert len(got["masks"]) == len(want) >= 4
    assert np.array_equal(got["masks"].numpy(), np.stack([a["segmentation"] for a in want]))
    assert torch.allclose(got["iou_predictions"], torch.tensor([a["predicted_iou"] for a in want]), atol=1e-5)
    assert torch.allclose(got["stability_scores"], torch.tensor([a["stability_score"] for a in want]), atol=1e-6)
    assert torch.allclose(got["points"].float(), torch.tensor([a["point_coords"][0] for a in want]).float(), atol=1e-4)


@pytest.mark.paper("segment-anything")
def test_stability_score_by_hand(record_property) -> None:
    """IoU of the masks cut at +1 and -1: logits [2, 0.5, -0.5, -2] give 1 pixel inside 3 -> 1/3."""
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -2.0]]])
    got = float(stability_score(logits))
    record_property("stability", got)
    assert abs(got - 1 / 3) < 1e-7


def test_wrong_input_size_is_a_clear_error(small_pair) -> None:
    ours, _ = small_pair
    with pytest.raises(PaperzooError, match="256x256 inputs"):
        ours.image_encoder(torch.zeros(1, 3, 128, 128))
    with pytest.raises(PaperzooError, match="point_labels"):
        ours.decode(torch.zeros(1, 256, 16, 16), point_coords=torch.zeros(1, 1, 2))


@pytest.mark.slow
@pytest.mark.paper("segment-anything")
def test_released_vit_b_image_embeddings_at_1024(record_property) -> None:
    """The released ViT-B encoder (perturbed random weights) at 1024 px: equal embeddings (slow on a CPU)."""
    torch.manual_seed(0)
    ref = perturb_(sa.sam_model_registry["vit_b"](checkpoint=None), seed=4).eval()
    ours = pz.load_weights(pz.create_model("sam_vit_b"), ref.state_dict(), source="segment-anything").eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        assert rel_err(ours.image_encoder(x), ref.image_encoder(x)) < 1e-4


TINY = ["model_args.img_size=64", "model_args.patch_size=8", "model_args.embed_dim=32", "model_args.depth=2",
        "model_args.num_heads=2", "model_args.global_attn_indexes=[1]", "model_args.window_size=4",
        "model_args.prompt_dim=32", "model_args.decoder_heads=2", "model_args.decoder_mlp_dim=64"]


def test_train_through_the_cli(tmp_path) -> None:
    """``paperzoo train`` runs a tiny SAM on the scenes' instances (the promptable task) and reports prompt mIoUs."""
    import json

    from paperzoo.cli import main

    main(["train", "--model", "sam_vit_b", "--data", "shapes", "--epochs", "1", "--batch-size", "4", "data.image_size=64",
          "data.size=8", "data.val_size=4", *TINY, "--out", str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "epoch"][-1]
    assert {"val_miou_point", "val_miou_point_oracle", "val_miou_point_single", "val_miou_box"} <= set(last)


def test_promptable_task_pieces() -> None:
    """The evaluation point is a mask's most interior pixel; the loss back-propagates the best of three masks."""
    from paperzoo.tasks.promptable import interior_points, mask_iou

    m = torch.zeros(2, 9, 9, dtype=torch.bool)
    m[0, 1:8, 1:8] = True  # a 7 x 7 block: its centre (x 4, y 4) is the one pixel 4 erosions deep
    m[1, 0:3, 0:3] = True  # touching the corner: (1, 1)
    assert interior_points(m).tolist() == [[4.0, 4.0], [1.0, 1.0]]
    assert mask_iou(m[:1], m[:1]).item() == 1.0
    assert abs(mask_iou(m[:1], m[1:]).item() - 4 / (49 + 9 - 4)) < 1e-7  # they share rows 1-2 x columns 1-2
