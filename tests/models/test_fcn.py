"""FCN (arXiv 1411.4038): torchvision's fcn_resnet50/101 loaded from their perturbed random weights give the same
``{"out", "aux"}`` logits; FCN-VGG16's 134M parameters (Table 1); VGG-16's classifier weights, convolutionalized,
give the classifier's class scores at 224 px (sec. 3.1); the skip upsamplings start as bilinear interpolation
(sec. 3.3); the skip nets give input-sized maps and use pool4/pool3."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from helpers import n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.errors import PaperzooError
from paperzoo.models.segmentation.fcn import FCNVGG, FixedUpsample, Upsample, convolutionalize


@pytest.mark.paper("fcn")
def test_fcn_resnet50_equals_torchvision(record_property) -> None:
    """Perturbed random weights of torchvision's ``fcn_resnet50(aux_loss=True)`` load strictly; out and aux agree."""
    ref = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True)
    perturb_(ref, seed=1)
    ours = pz.create_model("fcn_resnet50", num_classes=5, aux_loss=True)
    strict_load(record_property, ours, ref.state_dict(), "torchvision")
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    assert list(out) == ["out", "aux"] and out["out"].shape == (2, 5, 48, 40)
    errs = {k: rel_err(out[k], expected[k]) for k in ("out", "aux")}
    record_property("max_rel_err_vs_torchvision", max(errs.values()))
    assert max(errs.values()) < 1e-5, errs


@pytest.mark.paper("fcn")
def test_fcn_resnet101_loads_torchvision_layout(record_property) -> None:
    """fcn_resnet101's tensors (names and shapes, with and without the aux head) are torchvision's, checked on meta."""
    for aux in (False, True):
        with torch.device("meta"):
            ref = torchvision.models.segmentation.fcn_resnet101(weights=None, weights_backbone=None, aux_loss=aux)
            ours = pz.create_model("fcn_resnet101", aux_loss=aux)
        strict_load(record_property, ours, ref.state_dict(), "torchvision")
        assert n_params(ours) == n_params(ref)
    with torch.device("meta"):  # pretrained weights hold the aux head: aux is on by default with them
        assert pz.create_model("fcn_resnet50").aux_classifier is None


@pytest.mark.paper("fcn")
def test_fcn_vgg16_parameters_match_table1(record_property) -> None:
    """FCN-VGG16 has 134M parameters (Table 1); the skip nets add only their 1x1 scorers and 2x upsamplings."""
    with torch.device("meta"):
        counts = {n: n_params(pz.create_model(n)) for n in ("fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16")}
    record_property("params_m", {k: round(v / 1e6, 3) for k, v in counts.items()})
    for n, count in counts.items():
        assert abs(count / 1e6 - 134.0) / 134.0 < 0.005, (n, count)
    c = 21  # 16s adds score_pool4 (512 -> 21, 1x1) and upscore2 (21 x 21 x 4 x 4); 8s the same at pool3 (256 -> 21)
    assert counts["fcn16s_vgg16"] - counts["fcn32s_vgg16"] == 512 * c + c + c * c * 16
    assert counts["fcn8s_vgg16"] - counts["fcn16s_vgg16"] == 256 * c + c + c * c * 16


@pytest.mark.paper("fcn")
def test_convolutionalized_vgg16_gives_the_classifier_scores(record_property) -> None:
    """torchvision's VGG-16 classifier (perturbed random weights) reshaped into fc6 7x7 / fc7 1x1 / score 1x1
    convolutions: at 224 px the fully convolutional net's 1x1 score map equals the classifier's 1000 scores."""
    torch.manual_seed(0)
    with torch.device("meta"):  # built without initialisation (138M weights), then drawn once: fast
        vgg = torchvision.models.vgg16(weights=None)
        fcn = FCNVGG(stride=32, num_classes=1000, pad=1)  # pad 1: the classifier's own conv1_1
    vgg.to_empty(device="cpu"), fcn.to_empty(device="cpu")
    with torch.no_grad():  # He-scaled random weights and non-zero biases, so that every term takes part
        for name, p in vgg.named_parameters():
            p.normal_(0, 0.1) if name.endswith("bias") else p.normal_(0, (2 / p[0].numel()) ** 0.5)
    own = fcn.state_dict()
    state = convolutionalize(vgg.state_dict())
    assert set(state) == {k for k in own if not k.startswith(("score_pool", "upscore"))}
    fcn.load_state_dict(state, strict=False)
    vgg.eval(), fcn.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = vgg(x)
        scores = fcn.score_fr(fcn.forward_features(x)[2])
    assert scores.shape == (1, 1000, 1, 1)
    err = rel_err(scores.flatten(1), expected)
    record_property("max_rel_err_vs_vgg16_classifier", err)
    assert err < 1e-5


@pytest.mark.paper("fcn")
def test_upsampling_starts_as_bilinear_interpolation(record_property) -> None:
    """The learned 2x deconvolution and the fixed final 8x one equal bilinear interpolation (away from the border)."""
    x = torch.randn(1, 3, 6, 7)
    up = Upsample(3)(x).detach()[..., 1:-1, 1:-1]  # a 4x4 / stride-2 deconvolution overhangs by one pixel
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    err2 = rel_err(up[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    up8 = FixedUpsample(3, 8)(x)[..., 4:-4, 4:-4]
    ref8 = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
    err8 = rel_err(up8[..., 4:-4, 4:-4], ref8[..., 4:-4, 4:-4])
    record_property("max_rel_err_vs_bilinear", max(err2, err8))
    assert max(err2, err8) < 1e-6
    assert Upsample(3).weight.requires_grad and not list(FixedUpsample(3, 8).parameters())


@pytest.mark.parametrize("stride", [32, 16, 8])
def test_skip_nets_give_input_sized_maps_and_use_their_skips(stride: int) -> None:
    torch.manual_seed(0)
    model = FCNVGG(stride=stride, num_classes=3, width=0.125, fc_dim=32).eval()
    for m in model.modules():  # move the zero-initialised scorers so that every path contributes
        if isinstance(m, torch.nn.Conv2d) and not m.weight.any():
            torch.nn.init.normal_(m.weight, 0, 0.1)
    x = torch.randn(1, 3, 45, 61, requires_grad=True)
    out = model(x)
    assert out.shape == (1, 3, 45, 61)
    out.square().sum().backward()
    for name in ("score_pool4", "score_pool3"):
        used = name == "score_pool4" and stride <= 16 or name == "score_pool3" and stride == 8
        assert hasattr(model, name) == used
        if used:
            assert getattr(model, name).weight.grad.abs().sum() > 0


def test_bad_stride_is_a_clear_error() -> None:
    with pytest.raises(PaperzooError, match="stride must be 32, 16 or 8"):
        FCNVGG(stride=4)


@pytest.mark.paper("fcn")
def test_crop_offsets_are_the_released_nets(record_property) -> None:
    """The crops computed from the layers' coordinate maps are those of the released Caffe nets (pad 100, fc6 7x7):
    pool4 5, pool3 9, final 19 / 27 / 31 for 32s / 16s / 8s."""
    from paperzoo.models.segmentation.fcn import crop_offsets

    got = {s: crop_offsets(s) for s in (32, 16, 8)}
    record_property("crop_offsets", str(got))
    assert got == {32: (0, 0, 19), 16: (5, 0, 27), 8: (5, 9, 31)}
    assert crop_offsets(8, pad=40, fc6_kernel=4) == (2, 3, 19)  # the miniature's


def test_train_through_the_cli(tmp_path) -> None:
    """``paperzoo train`` runs a narrow FCN-8s on the scenes' class masks and reports mean IoU."""
    import json

    from paperzoo.cli import main

    main(["train", "--model", "fcn8s_vgg16", "--data", "shapes", "--epochs", "1", "--batch-size", "4", "data.image_size=48",
          "data.size=8", "data.val_size=4", "model_args.width=0.0625", "model_args.fc_dim=32", "--out", str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "val_miou" in [r for r in rows if r["kind"] == "epoch"][-1]
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "fcn8s_vgg16", "--data", "shapes", "model_args.pad=3", "--out", str(tmp_path / "b")])
    assert e.value.code == 2
