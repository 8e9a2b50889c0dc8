"""ResNet variants of later papers, all built by ``resnet.ResNet`` with options: Bag of Tricks (ResNet-C/D),
SENet, CBAM, ResNet-RS and anti-aliased ResNets, against timm and against the papers' own numbers."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import macs, n_params, perturb_, rel_err

import paperzoo as pz
from paperzoo.layers import CBAM, BlurPool2d


def _equals_timm(name: str, size: int = 64) -> None:
    """timm's model (random init, perturbed) loads strictly into ours and gives the same eval outputs."""
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


def _slow(*names: str) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) for n in names]


def _meta(name: str, **kwargs) -> torch.nn.Module:
    """A model on the meta device: shapes, parameter counts and FLOPs without allocating or initialising."""
    with torch.device("meta"):
        return pz.create_model(name, **kwargs).eval()


def _gmacs(model: torch.nn.Module, size: int = 224) -> float:
    return macs(model, torch.randn(1, 3, size, size, device="meta")) / 1e9


# ------------------------------------------------------------------------------------------ Bag of Tricks
@pytest.mark.paper("bag-of-tricks")
@pytest.mark.parametrize("name", ["resnet50d", "resnet18d", *_slow("resnet50c", "resnet34d", "resnet101d", "resnet152d")])
def test_tricks_equal_timm(name: str) -> None:
    """ResNet-C (deep stem) and ResNet-D (plus average-pool shortcuts) equal timm's resnet*c/d."""
    _equals_timm(name)


@pytest.mark.paper("bag-of-tricks")
def test_tricks_flops_match_paper_table5() -> None:
    """Multiply-adds at 224x224 match Table 5: ResNet-50 3.8G (A, stride on the 1x1), B 4.1G, C 4.3G, D 4.3G."""
    table5 = {("resnet50", True): 3.8, ("resnet50", False): 4.1, ("resnet50c", False): 4.3, ("resnet50d", False): 4.3}
    for (name, stride_in_1x1), gflops in table5.items():
        assert abs(_gmacs(_meta(name, stride_in_1x1=stride_in_1x1)) - gflops) / gflops < 0.03, name
    assert pz.model_meta("resnet50d").paper_gflops == 4.3


def test_resnet_d_shortcut_averages_before_projecting() -> None:
    """ResNet-D's strided shortcut is a 2x2 average pool then a stride-1 1x1 conv (nothing is skipped)."""
    block = _meta("resnet50d").layer2[0]
    pool, conv = block.downsample[0], block.downsample[1]
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.kernel_size == 2 and conv.stride == (1, 1)
    stem = _meta("resnet50c").conv1
    assert [m.kernel_size for m in stem if isinstance(m, torch.nn.Conv2d)] == [(3, 3)] * 3


# ------------------------------------------------------------------------------------------ SENet
@pytest.fixture(scope="module")
def seresnet50_pair():
    ref = perturb_(timm.create_model("seresnet50")).eval()
    ours = pz.load_weights(pz.create_model("seresnet50"), ref.state_dict(), source="timm").eval()
    return ours, ref


@pytest.mark.paper("senet")
def test_seresnet50_equals_timm(seresnet50_pair) -> None:
    """SE-ResNet-50 equals timm's seresnet50 (SE as fc1/fc2 1x1 convs, ratio 1/16, before the addition)."""
    ours, ref = seresnet50_pair
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("senet")
def test_seresnet50_params_match_paper(seresnet50_pair) -> None:
    """SE-ResNet-50 has the paper's 28.1M parameters, ~10% more than ResNet-50's 25.6M."""
    ours, _ = seresnet50_pair
    assert round(n_params(ours) / 1e6, 1) == ours.meta.paper_params_m == 28.1
    assert 0.09 < n_params(ours) / n_params(_meta("resnet50")) - 1 < 0.11


@pytest.mark.paper("senet")
@pytest.mark.parametrize("name", ["seresnet50", "seresnet101", "seresnet152"])
def test_seresnet_flops_match_paper_table2(name: str) -> None:
    """Multiply-adds at 224x224 match Table 2 (3.87G, 7.60G, 11.32G) in the paper's stride-on-the-1x1 layout."""
    model = _meta(name, stride_in_1x1=True)
    gflops = model.meta.paper_gflops
    assert abs(_gmacs(model) - gflops) / gflops < 0.03


@pytest.mark.paper("senet")
@pytest.mark.parametrize("name", _slow("seresnet101", "seresnet152", "seresnet152d"))
def test_deeper_seresnets_equal_timm(name: str) -> None:
    _equals_timm(name)


@pytest.mark.paper("senet")
def test_seresnet152d_has_timms_tensors() -> None:
    """seresnet152d (timm's published RA2 weights) is SE-ResNet-152 on ResNet-D: timm's tensors load strictly
    (meta device), with a deep 3x3 stem and average-pool shortcuts; its outputs are compared in the slow run."""
    with torch.device("meta"):
        ref = timm.create_model("seresnet152d")
        ours = pz.load_weights(pz.create_model("seresnet152d"), ref.state_dict(), source="timm")
    assert isinstance(ours.conv1, torch.nn.Sequential) and isinstance(ours.layer2[0].downsample[0], torch.nn.AvgPool2d)
    assert pz.model_meta("seresnet152d").input_size == ref.pretrained_cfg["input_size"] == (3, 256, 256)


def test_se_recalibrates_channels_by_hand() -> None:
    """y = x * sigmoid(W2 relu(W1 mean(x) + b1) + b2), computed by hand for one image."""
    se = pz.layers.SqueezeExcite(32).eval()
    perturb_(se)
    x = torch.randn(1, 32, 5, 5)
    s = x.mean((2, 3)).flatten()
    h = torch.relu(se.fc1.weight.flatten(1) @ s + se.fc1.bias)
    g = torch.sigmoid(se.fc2.weight.flatten(1) @ h + se.fc2.bias)
    with torch.no_grad():
        assert torch.allclose(se(x), x * g.view(1, -1, 1, 1), atol=1e-6)


# ------------------------------------------------------------------------------------------ CBAM
@pytest.mark.paper("cbam")
def test_resnet50_cbam_params_match_paper() -> None:
    """ResNet-50 + CBAM (the authors' placement: after the last BN of every bottleneck, r = 16) has 28.09M."""
    model = _meta("resnet50_cbam")
    assert round(n_params(model) / 1e6, 2) == model.meta.paper_params_m == 28.09
    block = model.layer3[0]
    assert isinstance(block.se, CBAM) and block.se.channel.fc1.out_channels == 1024 // 16


@pytest.mark.paper("cbam")
def test_cbam_equations_by_hand() -> None:
    """Eq. 2 and 3 on a 2-channel, 3x3 input, with every weight written out."""
    cbam = CBAM(2, reduction=2).eval()  # hidden layer of 1 unit
    with torch.no_grad():
        cbam.channel.fc1.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
        cbam.channel.fc1.bias.fill_(0.5)
        cbam.channel.fc2.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        cbam.channel.fc2.bias.copy_(torch.tensor([0.0, 1.0]))
        cbam.spatial.conv.weight.zero_()
        cbam.spatial.conv.weight[0, 0, 3, 3] = 1.0  # centre tap on the max map
        cbam.spatial.conv.weight[0, 1, 3, 3] = -2.0  # centre tap on the mean map
        cbam.spatial.bn.weight.fill_(1.0)  # running stats 0/1: BN is the identity (up to eps)
    x = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
                      [[0.0, -1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]]).unsqueeze(0)

    def mlp(d: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(d[0] - d[1] + 0.5)
        return torch.stack([2 * hidden, -hidden + 1])

    avg, mx = torch.tensor([5.0, 2 / 9]), torch.tensor([9.0, 2.0])
    f1 = x * torch.sigmoid(mlp(avg) + mlp(mx)).view(1, 2, 1, 1)  # F' = M_c(F) * F
    spatial = f1.amax(1) - 2 * f1.mean(1)  # 7x7 conv reduced to its centre taps
    expected = f1 * torch.sigmoid(spatial / (1 + 1e-5) ** 0.5).unsqueeze(1)  # F'' = M_s(F') * F'
    with torch.no_grad():
        assert torch.allclose(cbam(x), expected, atol=1e-6)


def test_cbam_equals_timm_module_with_biases() -> None:
    """timm's CBAM (with MLP biases; it stacks [mean, max] where the authors stack [max, mean]) agrees."""
    from timm.layers.cbam import CbamModule

    ref = perturb_(CbamModule(64, mlp_bias=True)).eval()
    ours = CBAM(64).eval()
    sd = ref.state_dict()
    mapping = {"channel.fc1.weight": "channel.fc1.weight", "channel.fc1.bias": "channel.fc1.bias",
               "channel.fc2.weight": "channel.fc2.weight", "channel.fc2.bias": "channel.fc2.bias"}
    ours_sd = {k: sd[v] for k, v in mapping.items()}
    ours_sd["spatial.conv.weight"] = sd["spatial.conv.conv.weight"].flip(1)
    ours_sd.update({f"spatial.bn.{k}": sd[f"spatial.conv.bn.{k}"] for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")})
    ours.load_state_dict(ours_sd)
    x = torch.randn(2, 64, 7, 7)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-6


def test_cbam_starts_with_a_uniform_spatial_gate() -> None:
    """The authors initialise the spatial gate's BN weight to zero (gate 0.5 everywhere), also inside a ResNet."""
    model = pz.create_model("resnet50_cbam")
    assert not model.layer1[0].se.spatial.bn.weight.any()


# ------------------------------------------------------------------------------------------ ResNet-RS
@pytest.mark.paper("resnet-rs")
@pytest.mark.parametrize("name", ["resnetrs50", *_slow("resnetrs101", "resnetrs152", "resnetrs200", "resnetrs270",
                                                     "resnetrs350", "resnetrs420")])
def test_resnetrs_equal_timm(name: str) -> None:
    """ResNet-RS (ResNet-D, SE ratio 1/4, strided-conv stem pool) equals timm's resnetrs*."""
    _equals_timm(name)


def test_resnetrs_stem_has_no_max_pool() -> None:
    pool = _meta("resnetrs50").maxpool
    assert isinstance(pool[0], torch.nn.Conv2d) and pool[0].stride == (2, 2)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in pool.modules())


# ------------------------------------------------------------------------------------------ Anti-aliasing
@pytest.mark.paper("antialias-resnet")
@pytest.mark.parametrize("name", ["resnetblur18", *_slow("resnetblur50")])
def test_resnetblur_equal_timm(name: str) -> None:
    """BlurPool ResNets (a 3x3 binomial filter after the stem's max pool and in strided blocks) equal timm's."""
    _equals_timm(name)


@pytest.mark.paper("antialias-resnet")
def test_blur_pool_filter_is_binomial_and_equals_timm() -> None:
    """The filter is [1, 2, 1]^T [1, 2, 1] / 16 per channel, reflect-padded; timm's BlurPool2d agrees."""
    from timm.layers import BlurPool2d as TimmBlur

    ours = BlurPool2d(4)
    assert torch.allclose(ours.filt[0, 0], torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    x = torch.randn(2, 4, 9, 10)
    assert torch.allclose(ours(x), TimmBlur(4)(x), atol=1e-6)
    assert ours(x).shape == (2, 4, 5, 5)
    assert not list(ours.parameters()) and "filt" not in ours.state_dict()


@pytest.mark.paper("antialias-resnet")
def test_resnet50_aa_places_filters_where_the_paper_says() -> None:
    """resnet50_aa: blur directly after each strided 3x3 conv (before BN), before each strided 1x1 projection,
    and after the stem's stride-1 max pool; no parameters are added."""
    assert n_params(_meta("resnet50_aa")) == n_params(_meta("resnet50"))
    model = pz.create_model("resnet50_aa")
    for stage in (model.layer2, model.layer3, model.layer4):
        block = stage[0]
        assert block.conv2.stride == (1, 1) and isinstance(block.aa, BlurPool2d) and block.aa_after_conv
        assert isinstance(block.downsample[0], BlurPool2d) and block.downsample[1].stride == (1, 1)
    assert isinstance(model.maxpool[1], BlurPool2d) and model.maxpool[0].stride == 1
    # "blur after conv": the filter sees the conv output, not the ReLU output.
    block = model.layer2[0].eval()
    x = torch.randn(1, 256, 16, 16)
    with torch.no_grad():
        h = block.act1(block.bn1(block.conv1(x)))
        y = block.act2(block.bn2(block.aa(block.conv2(h))))
        expected = block.act3(block.bn3(block.conv3(y)) + block.downsample(x))
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_blur_reduces_aliasing_of_a_checkerboard() -> None:
    """Subsampling a +-1 checkerboard (the highest frequency) by 2 gives a constant +1 map (full aliasing);
    after the binomial low-pass it is (nearly) zero."""
    x = (torch.arange(8).view(-1, 1) + torch.arange(8).view(1, -1)).remainder(2).float().mul(2).sub(1)
    x = x.view(1, 1, 8, 8)
    assert torch.equal(x[..., ::2, ::2], torch.full((1, 1, 4, 4), -1.0))
    assert BlurPool2d(1)(x)[..., 1:-1, 1:-1].abs().max() < 1e-6


def test_features_only_with_options() -> None:
    """features_only works on the new variants (the stem-pool and projection options keep the stage outputs)."""
    for name in ("resnet50d", "resnetrs50", "resnet50_aa"):
        feats = _meta(name, features_only=True)(torch.randn(1, 3, 64, 64, device="meta"))
        assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048]
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
