"""ViT (Dosovitskiy et al., 2020) against timm and torchvision, and against the paper's Table 1."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import n_params, perturb_, rel_err
from test_swin import single_thread  # noqa: F401  (autouse)

import paperzoo as pz
NAMES = pz.list_models("vit_*", paper="vit")


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return pz.create_model(name, **kwargs)


def same_structure(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Identical parameter names and shapes, and the same number of heads in every attention layer."""
    a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert a == b
    heads = lambda m: [x.num_heads for x in m.modules() if hasattr(x, "num_heads") and hasattr(x, "qkv")]  # noqa: E731
    assert heads(ours) == heads(ref)


def check_timm(name: str, size: int, **kwargs) -> None:
    ref = perturb_(timm.create_model(name, img_size=size, num_classes=1000, **kwargs)).eval()
    ours = pz.load_weights(pz.create_model(name, img_size=size, **kwargs), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vit")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_architecture(name: str) -> None:
    """Every registered ViT has timm's tensors (names and shapes) and head counts for the same name."""
    with torch.device("meta"):
        ref = timm.create_model(name, num_classes=1000)  # (timm's in21k-only variants default to no head)
    same_structure(meta_model(name), ref)


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's ViT-Ti/16 (random, perturbed; any input size) and ours loaded from its weights."""
    ref = perturb_(timm.create_model("vit_tiny_patch16_224", dynamic_img_size=True)).eval()
    return pz.load_weights(pz.create_model("vit_tiny_patch16_224"), ref.state_dict(), source="timm").eval(), ref


@pytest.mark.paper("vit")
def test_vit_ti_equals_timm_at_224(tiny) -> None:
    """timm's weights load strictly and give the same logits at the model's own 224x224."""
    ours, ref = tiny
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vit")
@pytest.mark.parametrize("name", ["vit_small_patch32_224", "vit_base_patch16_224"])
def test_equals_timm(name: str) -> None:
    """Real sizes at a small input (64x64 on both sides): timm's weights give the same logits."""
    check_timm(name, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("vit_large_patch16_224", 64), ("vit_large_patch32_384", 64),
                                        ("vit_huge_patch14_224", 56)])
def test_equals_timm_large(name: str, size: int) -> None:
    check_timm(name, size)


@pytest.mark.paper("vit")
@pytest.mark.parametrize("ours_name, tv_name", [("vit_base_patch16_224", "vit_b_16"), ("vit_base_patch32_224", "vit_b_32")])
def test_equals_torchvision_vit_b(ours_name: str, tv_name: str) -> None:
    """torchvision's ViT-B/16 and B/32 (another layout: packed in_proj, encoder.layers...) map onto ours exactly."""
    ref = perturb_(getattr(torchvision.models, tv_name)(image_size=64)).eval()
    ours = pz.load_weights(pz.create_model(ours_name, img_size=64), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("ours_name, tv_name, size", [("vit_large_patch16_224", "vit_l_16", 64),
                                                      ("vit_large_patch32_224", "vit_l_32", 64), ("vit_huge_patch14_224", "vit_h_14", 56)])
def test_equals_torchvision_other_sizes(ours_name: str, tv_name: str, size: int) -> None:
    ref = perturb_(getattr(torchvision.models, tv_name)(image_size=size)).eval()
    ours = pz.load_weights(pz.create_model(ours_name, img_size=size), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vit")
def test_loading_another_resolution_interpolates_like_timm() -> None:
    """Section 3.2: weights trained at 224 load into a 96x96 model; the position embeddings are 2-D
    interpolated exactly as timm's own checkpoint filter does, so the two models agree."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    src = perturb_(timm.create_model("vit_tiny_patch16_224")).state_dict()
    ref = timm.create_model("vit_tiny_patch16_224", img_size=96).eval()
    ref.load_state_dict(checkpoint_filter_fn(dict(src), ref))
    ours = pz.load_weights(pz.create_model("vit_tiny_patch16_224", img_size=96), src, source="timm").eval()
    assert ours.pos_embed.shape == (1, 1 + 36, 192)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vit")
def test_other_input_sizes_at_run_time_match_timm_dynamic_size(tiny) -> None:
    """Inputs of another size (here 128x96) interpolate the position embeddings on the fly, like timm's
    ``dynamic_img_size``."""
    ours, ref = tiny
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("vit")
def test_features_only_equals_timm(tiny) -> None:
    """features_only returns chosen blocks' patch tokens as (B, D, H/16, W/16) maps, as timm's
    forward_intermediates does."""
    _, ref = tiny
    ours = pz.create_model("vit_tiny_patch16_224", features_only=True, out_indices=(3, 7, 11))
    pz.load_weights(ours, ref.state_dict(), source="timm")
    assert ours.feature_info.channels() == [192] * 3 and ours.feature_info.reduction() == [16] * 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[3, 7, 11], intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape == (2, 192, 4, 4) and rel_err(a, b) < 1e-5


@pytest.mark.paper("vit")
@pytest.mark.parametrize("name", [n for n in NAMES if pz.model_meta(n).paper_params_m])
def test_params_match_paper_table1(name: str) -> None:
    """ViT-B 86M, ViT-L 307M, ViT-H 632M (Table 1). The paper prints whole millions; its ViT-L figure is
    2.7M above the architecture's 304.3M (as timm's and torchvision's counts also are), hence 1%."""
    paper = pz.model_meta(name).paper_params_m
    assert abs(n_params(meta_model(name)) / 1e6 - paper) < max(1.0, 0.01 * paper)


def test_patch_embedding_is_eq1_linear_projection() -> None:
    """The conv patch embedding equals eq. 1: flatten each 16x16x3 patch and multiply by E."""
    model = pz.create_model("vit_tiny_patch16_224", img_size=32).eval()
    x = torch.randn(1, 3, 32, 32)
    patches = x.unfold(2, 16, 16).unfold(3, 16, 16).permute(0, 2, 3, 1, 4, 5).reshape(1, 4, -1)
    E = model.patch_embed.proj.weight.reshape(192, -1)
    with torch.no_grad():
        expected = patches @ E.T + model.patch_embed.proj.bias
        assert torch.allclose(model.patch_embed(x), expected, atol=1e-5)


def test_common_kwargs_and_reduced_variant() -> None:
    m = pz.create_model("vit_tiny_patch16_224", num_classes=7, in_chans=1, drop_path_rate=0.1, img_size=32,
                        embed_dim=64, depth=2, num_heads=2)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    m.reset_classifier(3)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
