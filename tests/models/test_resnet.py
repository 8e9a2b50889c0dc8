"""ResNet (He et al., 2015) against torchvision and timm, and against the paper's own numbers."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import macs, n_params, perturb_, rel_err

import paperzoo as pz

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2"]


@pytest.mark.paper("resnet")
@pytest.mark.parametrize("name", IMAGENET)
def test_equals_torchvision(name: str) -> None:
    """torchvision's weights (randomly initialised, perturbed) load strictly and give the same outputs."""
    ref = perturb_(getattr(torchvision.models, name)()).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="torchvision").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("resnet")
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2"])
def test_equals_timm(name: str) -> None:
    """timm's weights (zero-initialised last BN gammas perturbed) load strictly and give the same outputs."""
    ref = perturb_(timm.create_model(name)).eval()
    ours = pz.load_weights(pz.create_model(name), ref.state_dict(), source="timm").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("resnet")
def test_features_equal_timm_features_only() -> None:
    """features_only returns timm's feature maps (stem and four stages) with the same channels and strides."""
    ref = perturb_(timm.create_model("resnet50", features_only=True)).eval()
    ours = pz.create_model("resnet50", features_only=True)
    pz.load_weights(ours, ref.state_dict(), source="timm")
    ours.eval()
    assert ours.feature_info.channels() == ref.feature_info.channels()
    assert ours.feature_info.reduction() == ref.feature_info.reduction()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x), strict=True):
            assert a.shape == b.shape and rel_err(a, b) < 1e-5


@pytest.mark.paper("resnet")
@pytest.mark.parametrize("depth, params_m", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)])
def test_cifar_params_match_paper_table6(depth: int, params_m: float) -> None:
    """The CIFAR ResNets have the paper's parameter counts (Table 6, to the digits it prints)."""
    for kind in ("resnet", "plain"):
        model = pz.create_model(f"{kind}{depth}_cifar")
        assert round(n_params(model) / 1e6, 2 if params_m < 1 else 1) == params_m
        assert model.meta.paper_params_m == params_m


@pytest.mark.paper("resnet")
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_imagenet_flops_match_paper_table1(name: str) -> None:
    """Multiply-adds at 224x224 match Table 1 (within 3%) for the paper's layout (stride on the first 1x1)."""
    model = pz.create_model(name, stride_in_1x1=True).eval()
    gmacs = macs(model, torch.randn(1, 3, 224, 224)) / 1e9
    assert abs(gmacs - model.meta.paper_gflops) / model.meta.paper_gflops < 0.03


def test_stride_placement_changes_only_cost() -> None:
    """The paper's stride-in-1x1 layout has the same parameters as the torchvision layout but fewer FLOPs."""
    a, b = pz.create_model("resnet50"), pz.create_model("resnet50", stride_in_1x1=True)
    assert n_params(a) == n_params(b)
    x = torch.randn(1, 3, 64, 64)
    assert macs(b, x) < macs(a, x)


def test_option_a_shortcut_is_parameter_free_and_exact() -> None:
    """Option A: identity with 2x subsampling and zero channels, so the block can represent identity."""
    from paperzoo.models.classification.resnet import CifarBlock

    block = CifarBlock(16, 32, stride=2, residual=True).eval()
    assert sum(p.numel() for p in block.shortcut.parameters()) == 0
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, :16], x[:, :, ::2, ::2]) and not s[:, 16:].any()
    plain = CifarBlock(16, 32, stride=2, residual=False)
    assert plain.shortcut is None


def test_residual_block_is_identity_when_branch_is_zero() -> None:
    """With the residual branch's last BN gamma and beta at zero, y = relu(x) (eq. 1 with F = 0)."""
    model = pz.create_model("resnet50", zero_init_last=True).eval()
    block = model.layer1[1]
    torch.nn.init.zeros_(block.bn3.bias)
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_dilates_last_stages(output_stride: int) -> None:
    model = pz.create_model("resnet50", features_only=True, output_stride=output_stride)
    feats = model(torch.randn(1, 3, 64, 64))
    assert feats[-1].shape[-1] == 64 // output_stride
    ref = torchvision.models.resnet50(replace_stride_with_dilation=[False, output_stride == 8, True])
    ours = pz.load_weights(pz.create_model("resnet50", output_stride=output_stride), perturb_(ref).state_dict(), source="torchvision")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours.eval()(x), ref.eval()(x)) < 1e-5


def test_common_kwargs() -> None:
    m = pz.create_model("resnet18", num_classes=7, in_chans=1, drop_path_rate=0.1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert m.meta.num_classes == 7 and m.meta.input_size[0] == 1
    c = pz.create_model("resnet20_cifar", num_classes=3, in_chans=1)
    assert c(torch.randn(2, 1, 16, 16)).shape == (2, 3)


def test_a_few_training_steps_reduce_the_loss(tiny_shapes) -> None:
    train, _ = tiny_shapes
    model = pz.create_model("resnet20_cifar", num_classes=train.num_classes)
    x = torch.stack([train[i][0] for i in range(32)])
    y = torch.tensor([train[i][1] for i in range(32)])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
