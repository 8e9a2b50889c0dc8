"""Swin Transformer (Liu et al., 2021) against timm, torchvision and the official checkpoint layout, and
against the paper's Table 1 parameter and FLOP counts."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from helpers import n_params, perturb_, rel_err

import paperzoo as pz
from paperzoo.models.classification.swin import shifted_window_mask

NAMES = pz.list_models("swin_*")


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against other processes and run
    these reference builds and forwards several times slower (shared by the transformer families' tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gmacs_on_meta(name: str) -> float:
    """Multiply-adds of one image at the model's input size, counted on the meta device (SDPA included)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = pz.create_model(name).eval()
        x = torch.randn(1, *model.meta.input_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    return counter.get_total_flops() / 2e9


def check_timm(name: str) -> None:
    """Equivalence with timm for one variant at its own input size."""
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    size = ours.meta.input_size[-1]
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("swin")
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_has_timms_architecture(name: str) -> None:
    """Same tensors (names, shapes: window-sized bias tables included) as timm's model of the same name."""
    with torch.device("meta"):
        ours, ref = pz.create_model(name), timm.create_model(name)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


@pytest.fixture(scope="module")
def swin_t() -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's Swin-T (random, perturbed; masks built per input size) and ours loaded from its weights."""
    ref = perturb_(timm.create_model("swin_tiny_patch4_window7_224", strict_img_size=False)).eval()
    ours = pz.load_weights(pz.create_model("swin_tiny_patch4_window7_224"), ref.state_dict(), source="timm").eval()
    return ours, ref


@pytest.mark.paper("swin")
def test_swin_t_equals_timm(swin_t) -> None:
    """timm's Swin-T loads strictly and gives the same logits at 224x224."""
    ours, ref = swin_t
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("swin")
def test_swin_s_equals_timm() -> None:
    check_timm("swin_small_patch4_window7_224")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if "tiny" not in n and "small" not in n])
def test_larger_variants_equal_timm(name: str) -> None:
    check_timm(name)


@pytest.mark.paper("swin")
def test_swin_t_equals_torchvision() -> None:
    """torchvision's swin_t (features/head layout, padded windows) maps onto ours exactly."""
    ref = perturb_(torchvision.models.swin_t()).eval()
    ours = pz.load_weights(pz.create_model("swin_tiny_patch4_window7_224"), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("swin")
def test_official_checkpoint_layout_loads_like_timm_filter(swin_t) -> None:
    """An official-layout state dict (merging at stage ends, head without .fc, persistent index and mask
    buffers) gives the same network through our converter as through timm's own checkpoint filter."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    _, ref = swin_t
    official = {}
    for key, value in ref.state_dict().items():
        key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        official[key.replace("head.fc.", "head.")] = value
    official["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    official["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    filtered = checkpoint_filter_fn(dict(official), ref)  # timm reads it back as the very same network
    assert filtered.keys() == ref.state_dict().keys() and all(torch.equal(filtered[k], v) for k, v in ref.state_dict().items())
    ours = pz.load_weights(pz.create_model("swin_tiny_patch4_window7_224"), official, source="official").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("swin")
@pytest.mark.parametrize("size, window, shift", [(56, 7, 3), (28, 7, 3), (16, 8, 4)])
def test_shifted_window_mask_equals_timms(size: int, window: int, shift: int) -> None:
    """The SW-MSA mask (Fig. 4): -100 between tokens from different regions of the rolled map, else 0."""
    from timm.models.swin_transformer import SwinTransformerBlock as TimmBlock

    block = TimmBlock(dim=8, input_resolution=(size, size), num_heads=1, window_size=window, shift_size=shift)
    assert torch.equal(shifted_window_mask(size, size, (window, window), (shift, shift)), block.attn_mask)


@pytest.mark.paper("swin")
def test_features_only_stage_maps_equal_timm(swin_t) -> None:
    """features_only gives the four stage outputs (strides 4-32) as NCHW maps, as timm's forward_intermediates."""
    _, ref = swin_t
    ours = pz.create_model("swin_tiny_patch4_window7_224", features_only=True)
    pz.load_weights(ours, ref.state_dict(), source="timm")
    assert ours.feature_info.channels() == [96, 192, 384, 768] and ours.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
        for a, b in zip(ours.eval()(x), expected, strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


@pytest.mark.paper("swin")
@pytest.mark.parametrize("name", NAMES)
def test_params_and_flops_match_paper_table1(name: str) -> None:
    """Swin-T/S/B/L 28/50/88/197M; 4.5/8.7/15.4/34.5G at 224; B and L at 384 47.0G and 103.9G (within 2%)."""
    meta = pz.model_meta(name)
    with torch.device("meta"):
        params = n_params(pz.create_model(name)) / 1e6
    assert abs(params - meta.paper_params_m) < 1.0
    assert abs(gmacs_on_meta(name) - meta.paper_gflops) / meta.paper_gflops < 0.02


def test_other_input_size_at_run_time_equals_timm_dynamic_masks(swin_t) -> None:
    """An input other than img_size (here 256x192) pads to whole windows and builds its shift masks on the
    fly, as timm's dynamic-size mode does."""
    ours, ref = swin_t
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


def test_window_size_change_interpolates_bias_tables() -> None:
    """Weights learned with 7x7 windows load into a 12x12-window model; each 13x13 bias table is bi-cubically
    resized to 23x23 (section 3.2) and the centre offset keeps its value up to interpolation error."""
    small = dict(embed_dim=32, depths=(2, 2), num_heads=(1, 2))
    src = pz.create_model("swin_tiny_patch4_window7_224", img_size=56, window_size=7, **small)
    dst = pz.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=12, **small)
    pz.load_weights(dst, src.state_dict(), source="timm")
    table = dst.layers[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (23 * 23, 1)
    centre_src = src.layers[0].blocks[0].attn.relative_position_bias_table[6 * 13 + 6]
    assert torch.allclose(table[11 * 23 + 11], centre_src, atol=0.02)
    assert dst(torch.randn(1, 3, 96, 96)).isfinite().all()


def test_non_shifted_ablation_has_no_masks() -> None:
    model = pz.create_model("swin_tiny_patch4_window7_224", shifted=False)
    assert all(not any(b.shift_size) and b.attn_mask is None for s in model.layers for b in s.blocks)


def test_common_kwargs() -> None:
    m = pz.create_model("swin_tiny_patch4_window7_224", num_classes=5, in_chans=1, drop_path_rate=0.1, img_size=64,
                        window_size=4, embed_dim=32, depths=(2, 2), num_heads=(1, 2))
    assert m(torch.randn(2, 1, 64, 64)).shape == (2, 5)
