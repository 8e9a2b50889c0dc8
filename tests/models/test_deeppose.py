"""DeepPose (Toshev & Szegedy, 2014): the normalisation and cascade equations on hand-computed cases, the paper's
network and its parameter count."""
from __future__ import annotations

import pytest
import torch
from helpers import n_params

import paperzoo as pz
from paperzoo.models.pose import deeppose as dp


@pytest.mark.paper("deeppose")
def test_normalisation_is_eq1(record_property) -> None:
    """N(y; b) = diag(1/b_w, 1/b_h)(y - b_c): a box centred at (50, 40), 20 wide and 10 high maps (60, 35) to
    (0.5, -0.5) and its corners to +-0.5; N^-1 inverts it."""
    b = torch.tensor([50.0, 40.0, 20.0, 10.0])
    y = torch.tensor([[60.0, 35.0], [40.0, 45.0], [50.0, 40.0]])
    u = dp.normalize(y, b)
    record_property("normalised", u.tolist())
    assert u.tolist() == [[0.5, -0.5], [-0.5, 0.5], [0.0, 0.0]]
    assert torch.equal(dp.denormalize(u, b), y)


@pytest.mark.paper("deeppose")
def test_cascade_boxes_and_refinement_are_eq4_and_eq5() -> None:
    """Eq. 4: joint i's box is centred on its estimate with side sigma * diam(y). Eq. 5: the new estimate is the
    joint's regressed position inside that box, N^-1(psi_i; b_i). With a regressor that outputs a constant psi the
    refined joint lands at b_c + psi * side, by hand."""
    y = torch.tensor([[[10.0, 10.0], [40.0, 50.0]]])  # diam (the pair's distance) = 50
    diam = dp.diameter(y, pair=(0, 1))
    assert diam.tolist() == [50.0]
    boxes = dp.joint_boxes(y, diam, sigma=0.4)
    assert boxes.tolist() == [[[10.0, 10.0, 20.0, 20.0], [40.0, 50.0, 20.0, 20.0]]]

    class Constant(torch.nn.Module):
        def forward(self, x):  # psi: every crop says "joint 0 at (+0.25, 0), joint 1 at (0, -0.5)"
            return torch.tensor([[0.25, 0.0], [0.0, -0.5]]).expand(len(x), 2, 2)

    model = dp.DeepPose(2, stages=2, sigma=0.4, regressor=lambda k: Constant(), input_size=(32, 32), diam_pair=(0, 1))
    image = torch.zeros(3, 64, 64)
    refined = model.refine(1, [image], torch.zeros(1, dtype=torch.long), boxes)
    assert refined.tolist() == [[[15.0, 10.0], [40.0, 40.0]]]


@pytest.mark.paper("deeppose")
def test_simulated_displacements_follow_the_previous_stage(record_property) -> None:
    """Eq. 6: training boxes for stage s are centred at y_i + delta, delta ~ N(mu_i, Sigma_i), the statistics of the
    stage s-1 displacements in units of the box side; the sampled displacements have those statistics."""
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(4000, 2, 2, generator=g) * 100
    diam = torch.full((4000,), 50.0)
    shift = torch.tensor([[2.0, -1.0], [0.0, 3.0]])  # stage s-1 errors in pixels: a bias plus noise
    pred = gt + shift + torch.randn(4000, 2, 2, generator=g) * torch.tensor([1.0, 2.0])
    mu, cov = dp.displacement_stats(pred, gt, torch.ones(4000, 2), diam, sigma=0.5)  # box side 25 px
    assert torch.allclose(mu, shift / 25, atol=0.01)
    assert torch.allclose(torch.diagonal(cov, dim1=-2, dim2=-1), torch.tensor([1.0, 4.0]) / 625, rtol=0.1)
    boxes = dp.simulate_boxes(gt, diam, mu, cov, 0.5, generator=g)
    delta = boxes[..., :2] - gt
    record_property("mean_delta_px", delta.mean(0).tolist())
    assert torch.allclose(delta.mean(0), shift, atol=0.15)
    assert torch.allclose(delta.std(0), torch.tensor([1.0, 2.0]).expand(2, 2), rtol=0.1)
    assert torch.allclose(boxes[..., 2:], torch.full((4000, 2, 2), 25.0))


@pytest.mark.paper("deeppose")
def test_paper_network_and_parameter_count(record_property) -> None:
    """The registered ``deeppose`` is the paper's layer list at 220x220 for 14 LSP joints: its parameters equal the
    closed form of that list (46.86M: the 220 px input leaves a 5x5x256 map before F(4096)), which the paper
    rounds to "about 40M" (Sec. 3); the check allows the paper's rounding, within 20%."""
    with torch.device("meta"):
        model = pz.create_model("deeppose")
        out = model(torch.empty(2, 3, 220, 220))
    p = n_params(model)
    record_property("params_m", round(p / 1e6, 3))
    assert out.shape == (2, 14, 2)
    assert p == dp.deeppose_params_closed_form(14, 220)
    assert abs(p / 1e6 - 40.0) / 40.0 < 0.2
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [11, 5, 3, 3, 3] and convs[0].stride == (4, 4)
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules()) == 2
