"""Selective-kernel ResNets against timm, the SK equations by hand, and Assemble-ResNet-50's structure
as the authors' code builds it."""
from __future__ import annotations

import pytest
import timm
import torch
from helpers import n_params, perturb_, rel_err

import paperzoo as pz
from paperzoo.layers import BlurPool2d, SelectiveKernel
from paperzoo.models.classification.assembled import ASSEMBLED_SK, BigLittleStage
from paperzoo.models.classification.sknet import SelectiveKernelBottleneck


@pytest.mark.paper("assembled-cnn")
@pytest.mark.parametrize("name", ["skresnet18", pytest.param("skresnet34", marks=pytest.mark.slow),
                                  pytest.param("skresnext50_32x4d", marks=pytest.mark.slow)])
def test_skresnets_equal_timm(name: str) -> None:
    """timm's SK ResNets (random init, perturbed) load strictly into ours and give the same outputs."""
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("assembled-cnn")
def test_selective_kernel_equals_timm_module() -> None:
    """The SK conv of SKNet-50 (grouped 3x3 and dilated 3x3 paths, no input split) equals timm's module."""
    from timm.layers import SelectiveKernel as TimmSK

    kw = dict(stride=2, groups=8, rd_ratio=1 / 16, rd_divisor=32, split_input=False)
    ref = perturb_(TimmSK(64, 64, **kw)).eval()
    ours = SelectiveKernel(64, 64, **kw).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 64, 9, 9)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-6


@pytest.mark.paper("assembled-cnn")
def test_selective_kernel_equations_by_hand() -> None:
    """Split, fuse, select (the SK paper's eqs. 1-6) written out: U = U1 + U2, s = GAP(U), z = relu(bn(W s)),
    a = softmax over paths of (A z, B z), V = a1 U1 + a2 U2."""
    sk = perturb_(SelectiveKernel(8, 8, kernel_size=(3, 5), split_input=False, rd_channels=4)).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        u1, u2 = sk.paths[0](x), sk.paths[1](x)
        assert sk.paths[1].conv.dilation == (2, 2)  # the 5x5 path is a 3x3 conv with dilation 2
        s = (u1 + u2).mean((2, 3))
        z = torch.relu(sk.attn.bn(sk.attn.fc_reduce(s[..., None, None]))).flatten(1)
        logits = (sk.attn.fc_select.weight.flatten(1) @ z.T).T.view(1, 2, 8)
        a = torch.softmax(logits, dim=1)
        expected = a[:, 0, :, None, None] * u1 + a[:, 1, :, None, None] * u2
        assert torch.allclose(sk(x), expected, atol=1e-6)


@pytest.mark.paper("assembled-cnn")
def test_assembled_resnet50_follows_the_authors_code() -> None:
    """Assemble-ResNet-50 (Big-Little alpha=2, beta=4; SK r=2, L=32; anti-aliased strides) has the authors'
    block counts, widths and resolutions, and a parameter count we pin (the paper reports none)."""
    with torch.device("meta"):
        model = pz.create_model("assembled_resnet50").eval()
        feats = pz.create_model("assembled_resnet50", features_only=True).eval()(torch.randn(2, 3, 64, 64))
    for stage, depth, planes in zip((model.layer1, model.layer2, model.layer3), (3, 4, 6), (64, 128, 256)):
        assert isinstance(stage, BigLittleStage)
        assert len(stage.big) == depth - 1 and len(stage.little) == 1 and len(stage.merge) == 1
        assert stage.little[0].conv3.conv.out_channels == planes * 4 // 2  # little branch: half the width
        assert stage.big[0].conv2.attn.fc_reduce.out_channels == max(planes // 2, 32)  # d = max(C / r, L)
        assert isinstance(stage.big[-1].act, torch.nn.Identity)  # no ReLU before the merge
    assert len(model.layer4) == 3 and isinstance(model.layer4[0].aa, BlurPool2d)
    assert model.layer4[0].conv2.paths[0].conv.stride == (1, 1)  # strided SK runs at stride 1, then blurs
    assert round(n_params(model) / 1e6, 2) == 41.85
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]


def test_big_little_stage_adds_the_branches_then_merges() -> None:
    """A Big-Little stage: relu(little_e(little(x)) + upsample(big(x))) then the merge block."""
    stage = perturb_(BigLittleStage(16, 8, 3, 2, alpha=2, beta=4, dprs=[0.0] * 3,
                                    sk_kwargs=ASSEMBLED_SK, aa_layer=BlurPool2d)).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        big = stage.big(x)
        assert big.shape[-1] == 4
        up = big.repeat_interleave(2, -1).repeat_interleave(2, -2)
        expected = stage.merge(torch.relu(stage.little_e(stage.little(x)) + up))
        assert torch.allclose(stage(x), expected, atol=1e-6) and expected.shape == (2, 32, 4, 4)


def test_sk_block_subsamples_after_the_selective_kernel() -> None:
    """Assemble-ResNet's strided block: SK conv at full resolution, then the blur subsamples its output."""
    shortcut = torch.nn.Sequential(torch.nn.AvgPool2d(3, 2, 1), torch.nn.Conv2d(32, 32, 1, bias=False))
    block = perturb_(SelectiveKernelBottleneck(32, 8, stride=2, downsample=shortcut, sk_kwargs=ASSEMBLED_SK,
                                               aa_layer=BlurPool2d)).eval()
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        v = block.conv2(block.conv1(x))
        assert v.shape[-1] == 8
        expected = torch.relu(block.conv3(block.aa(v)) + shortcut(x))
        assert torch.allclose(block(x), expected, atol=1e-6) and expected.shape[-1] == 4
