"""Grad-CAM: equations 1-2 on networks where the answer is known, Guided Backpropagation's rule, token
maps of a ViT, the pointing game and the ``paperzoo cam`` command."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import paperzoo as pz
from paperzoo.explain import GradCAM, GuidedGradCAM, guided_backprop, pointing_game, to_feature_map


class ObjectNet(nn.Module):
    """features A = (ReLU(x), ReLU(-x)): channel 0 sees bright pixels, channel 1 dark ones; scores are a
    linear map of their global averages (the CAM architecture), so dy^c/dA^k_ij = W_ck / Z."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -0.5], [-1.0, 1.5]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A bright square on a dark background, and its mask."""
    x = -torch.rand(2, 1, 16, 16) * 0.5
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, 2:7, 3:8] = True
    mask[1, 9:14, 8:15] = True
    x[:, 0][mask] = 1.0 + torch.rand(int(mask.sum()))
    return x, mask


@pytest.mark.paper("grad-cam")
def test_equations_1_and_2_on_a_cam_network(record_property) -> None:
    """alpha_k^c = 1/Z sum_ij dy^c/dA^k_ij = W_ck / Z, and L^c = ReLU(sum_k alpha_k^c A^k)."""
    net = ObjectNet()
    x, mask = scene()
    feats = torch.relu(torch.cat([x, -x], 1))
    for c in (0, 1):
        raw, _ = GradCAM(net, net.act).compute(x, c)
        expected = torch.relu((net.fc.weight[c].view(1, 2, 1, 1) / 256 * feats).sum(1))
        record_property(f"max_abs_diff_vs_eq_1_2_class_{c}", float((raw - expected).detach().abs().max()))
        torch.testing.assert_close(raw, expected.detach())
    # class-discriminative: the object's class lights up the square, the background class the rest
    on, off = GradCAM(net, "act")(x, 0), GradCAM(net, "act")(x, 1)
    record_property("cam_min", float(on.min()))
    record_property("cam_max", float(on.max()))
    record_property("pointing_game_hits_object_class_of_2", int(pointing_game(on, mask).sum()))
    record_property("pointing_game_hits_background_class_of_2", int(pointing_game(off, mask).sum()))
    assert on.shape == (2, 16, 16) and float(on.min()) == 0.0 and float(on.max()) == pytest.approx(1.0)
    assert pointing_game(on, mask).all() and not pointing_game(off, mask).any()


@pytest.mark.paper("grad-cam")
def test_equation_1_averages_spatially_varying_gradients(record_property) -> None:
    """With a head that weights every position differently, alpha is the spatial mean of the gradient."""
    torch.manual_seed(0)
    conv, head = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 5)
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head)
    x = torch.randn(3, 3, 8, 8)
    raw, logits = GradCAM(net, net[1]).compute(x)
    a = torch.relu(conv(x)).detach()
    w = head.weight.view(5, 4, 8, 8)[logits.argmax(1)]           # dy^c / dA for the predicted classes
    record_property("max_abs_diff_vs_spatial_mean_gradient_cam",
                    float((raw - torch.relu((w.mean((2, 3), keepdim=True) * a).sum(1))).detach().abs().max()))
    torch.testing.assert_close(raw, torch.relu((w.mean((2, 3), keepdim=True) * a).sum(1)))


@pytest.mark.paper("grad-cam")
def test_guided_backprop_passes_only_positive_gradients_through_relus(record_property) -> None:
    """y = v . ReLU(W x): vanilla gradient W^T (1[Wx > 0] v); guided W^T (1[Wx > 0] 1[v > 0] v)."""
    torch.manual_seed(1)
    lin, out = nn.Linear(6, 5, bias=False), nn.Linear(5, 1, bias=False)
    net = nn.Sequential(lin, nn.ReLU(), out)
    x = torch.randn(4, 6)
    z = lin(x).detach()
    v = out.weight[0].detach()
    expected = ((z > 0) * v.clamp(min=0)) @ lin.weight.detach()
    record_property("max_abs_diff_vs_hand_guided_gradient",
                    float((guided_backprop(net, x, torch.zeros(4, dtype=torch.long)) - expected).abs().max()))
    torch.testing.assert_close(guided_backprop(net, x, torch.zeros(4, dtype=torch.long)), expected)


def test_gradcam_on_a_resnet_and_guided_gradcam_shapes() -> None:
    model = pz.create_model("resnet20_cifar", num_classes=8)
    x = torch.randn(2, 3, 32, 32)
    maps = GradCAM(model)(x, torch.tensor([1, 5]))
    assert maps.shape == (2, 32, 32) and 0 <= float(maps.min()) and float(maps.max()) <= 1
    assert GuidedGradCAM(model)(x).shape == (2, 3, 32, 32)
    assert model.training  # the model's mode is restored


@pytest.mark.paper("grad-cam")
def test_vit_token_maps(record_property) -> None:
    """Transformer tokens (N, 1 + h w, C) are laid out as an h x w map without the class token; Swin's
    NHWC stage outputs are permuted; Grad-CAM then works unchanged."""
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = GradCAM(vit, vit.blocks[-1].norm1)(x)
    record_property("vit_cam_map_std", float(maps.std()))
    assert maps.shape == (2, 32, 32) and float(maps.std()) > 0
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).view(2, 17, 3)
    grid = to_feature_map(tokens)
    record_property("max_abs_diff_grid_corner_vs_first_patch_token", float((grid[:, :, 0, 0] - tokens[:, 1]).abs().max()))
    assert grid.shape == (2, 3, 4, 4) and torch.equal(grid[:, :, 0, 0], tokens[:, 1])
    nhwc = torch.randn(2, 7, 7, 96)
    record_property("max_abs_diff_nhwc_map_vs_permute", float((to_feature_map(nhwc) - nhwc.permute(0, 3, 1, 2)).abs().max()))
    assert torch.equal(to_feature_map(nhwc), nhwc.permute(0, 3, 1, 2))


def test_pointing_game_tolerance() -> None:
    maps = torch.zeros(1, 10, 10)
    maps[0, 2, 2] = 1
    mask = torch.zeros(1, 10, 10)
    mask[0, 5:8, 5:8] = 1
    assert not pointing_game(maps, mask)[0] and pointing_game(maps, mask, tolerance=3)[0]


def test_cam_command(tmp_path: Path) -> None:
    """``paperzoo cam`` on weights saved by training code writes the PNG; a bad class is one clear error."""
    from PIL import Image

    from paperzoo.cli import main
    from paperzoo.data import ShapesDataset
    from paperzoo.train.checkpoint import save_weights

    model = pz.create_model("resnet20_cifar", num_classes=8)
    save_weights(model.state_dict(), tmp_path / "w.safetensors", {"mean": "[0.5, 0.5, 0.5]", "std": "[0.25, 0.25, 0.25]"})
    Image.fromarray(ShapesDataset("val", image_size=40).scene(0).image).save(tmp_path / "img.png")
    main(["cam", "--model", "resnet20_cifar", "--weights", str(tmp_path / "w.safetensors"), "--image",
          str(tmp_path / "img.png"), "--out", str(tmp_path / "cam.png"), "--class", "3"])
    assert (tmp_path / "cam.png").stat().st_size > 5000
    with pytest.raises(SystemExit) as e:
        main(["cam", "--model", "resnet20_cifar", "--weights", str(tmp_path / "w.safetensors"), "--image",
              str(tmp_path / "img.png"), "--out", str(tmp_path / "bad.png"), "--class", "9"])
    assert e.value.code == 2
