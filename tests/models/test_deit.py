"""DeiT (Touvron et al., 2020) against timm (which the official DeiT code is built on), and the paper's counts."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import n_params, perturb_, rel_err
from test_swin import single_thread  # noqa: F401  (autouse)

import paperzoo as pz
NAMES = pz.list_models("deit_*", paper="deit")


def pair(name: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    ref = perturb_(timm.create_model(name, img_size=size))
    ours = pz.load_weights(pz.create_model(name, img_size=size), ref.state_dict(), source="timm")
    return ours, ref


@pytest.mark.paper("deit")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_architecture(name: str) -> None:
    """Same tensors (names, shapes) as timm's model of the same name, distillation token and head included."""
    with torch.device("meta"):
        ours, ref = pz.create_model(name), timm.create_model(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_distilled() -> tuple[torch.nn.Module, torch.nn.Module]:
    return pair("deit_tiny_distilled_patch16_224", 224)


@pytest.mark.paper("deit")
@pytest.mark.parametrize("name, size", [("deit_tiny_patch16_224", 64), ("deit_small_distilled_patch16_224", 64),
                                        ("deit_base_distilled_patch16_224", 64)])
def test_equals_timm(name: str, size: int) -> None:
    """Eval logits equal timm's; for DeiT⚗ that is the average of the class and distillation heads."""
    ours, ref = pair(name, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours.eval()(x), ref.eval()(x)) < 1e-5


@pytest.mark.paper("deit")
def test_distilled_training_returns_both_heads_like_timm(tiny_distilled) -> None:
    """At 224x224: in distillation training the model returns (class-token logits, distillation-token
    logits) as timm's does; in eval mode, their average (equal to timm's eval logits)."""
    ours, ref = tiny_distilled
    ours.set_distilled_training(True)
    ref.set_distilled_training(True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        (a_cls, a_dist), (b_cls, b_dist) = ours.train()(x), ref.train()(x)
        assert rel_err(a_cls, b_cls) < 1e-5 and rel_err(a_dist, b_dist) < 1e-5
        assert not torch.allclose(a_cls, a_dist)  # two different tokens, two different heads
        assert torch.allclose(ours.eval()(x), (a_cls + a_dist) / 2, atol=1e-6)
        assert rel_err(ours(x), ref.eval()(x)) < 1e-5


@pytest.mark.paper("deit")
@pytest.mark.parametrize("name", NAMES)
def test_params_match_paper(name: str) -> None:
    """DeiT-Ti/S/B 5/22/86M (Table 1) and DeiT⚗ 6/22/87M (Table 5), printed as whole millions."""
    with torch.device("meta"):
        model = pz.create_model(name)
    assert abs(n_params(model) / 1e6 - pz.model_meta(name).paper_params_m) < 1.0


def test_distillation_token_sits_after_the_class_token() -> None:
    model = pz.create_model("deit_tiny_distilled_patch16_224", img_size=32, depth=1).eval()
    assert model.pos_embed.shape == (1, 2 + 4, 192)
    feats = pz.create_model("deit_tiny_distilled_patch16_224", img_size=32, depth=2, features_only=True)
    assert [f.shape for f in feats(torch.randn(1, 3, 32, 32))] == [(1, 192, 2, 2)] * 2


def test_distilled_fine_tune_reinitialises_both_heads(tmp_path) -> None:
    """create_model(pretrained=PATH, num_classes=5) on DeiT⚗: every backbone tensor comes from the
    checkpoint, and both heads (class and distillation, meta.classifier) are new 5-way layers."""
    kw = dict(img_size=32, depth=2)
    src = pz.create_model("deit_tiny_distilled_patch16_224", **kw)
    torch.save(src.state_dict(), tmp_path / "deit.pth")
    tuned = pz.create_model("deit_tiny_distilled_patch16_224", pretrained=str(tmp_path / "deit.pth"), num_classes=5, **kw)
    assert tuned.meta.classifier == ("head", "head_dist")
    assert tuned.head.out_features == tuned.head_dist.out_features == 5
    old = src.state_dict()
    backbone = {k: v for k, v in tuned.state_dict().items() if not k.startswith(("head.", "head_dist."))}
    assert len(backbone) == len(old) - 4 and all(torch.equal(v, old[k]) for k, v in backbone.items())
    assert tuned.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert pz.model_meta("deit_tiny_patch16_224").classifier == ("head",)
