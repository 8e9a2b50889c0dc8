"""PilotNet against the paper's numbers (Fig. 4: layer shapes, 252,219 weights, ~27 million connections) and the
road renderer's geometry and steering correction against their analytic forms."""
from __future__ import annotations

import pytest
import torch
from helpers import macs

import paperzoo as pz
from paperzoo.data.roads import (
    RoadDataset,
    autonomy,
    random_params,
    render,
    rgb_to_yuv,
    steering_correction,
)

SHAPES = [(24, 31, 98), (36, 14, 47), (48, 5, 22), (64, 3, 20), (64, 1, 18)]  # Fig. 4's feature maps


@pytest.mark.paper("pilotnet")
def test_layer_shapes_parameters_and_connections(record_property) -> None:
    """Fig. 4: on a 66 x 200 frame the five conv maps are 24@31x98, 36@14x47, 48@5x22, 64@3x20, 64@1x18 (1,152
    values into FC 100-50-10-1); 252,219 weights (the paper's "250 thousand") and 26.9 million connections
    (multiply-accumulates; the paper's "27 million")."""
    model = pz.create_model("pilotnet")
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.features if isinstance(m, torch.nn.Conv2d)]
    x = torch.rand(2, 3, 66, 200)
    out = model(x)
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    connections = macs(model, x[:1])
    record_property("params", params)
    record_property("connections_m", connections / 1e6)
    assert shapes == SHAPES and out.shape == (2, 1)
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [100, 50, 10, 1]
    assert params == 252_219
    by_hand = sum(cin * k * k * cout * h * w for (cout, h, w), cin, k in
                  zip(SHAPES, (3, 24, 36, 48, 64), (5, 5, 5, 3, 3))) + 1152 * 100 + 100 * 50 + 50 * 10 + 10
    assert connections == by_hand == 26_876_342


@pytest.mark.paper("pilotnet")
def test_steering_correction_and_autonomy_by_hand() -> None:
    """steer = kappa - 2 d / L^2 - 2 psi / L (pure pursuit to the lane centre L m ahead); autonomy is
    (1 - 6 s x interventions / elapsed) x 100: the paper's example, 10 interventions in 600 s, gives 90%."""
    assert steering_correction(0.01, 0.5, 0.02, lookahead=20.0) == pytest.approx(0.01 - 1.0 / 400 - 0.04 / 20)
    assert steering_correction(0.0, 0.0, 0.0) == 0.0
    assert autonomy(10, 600.0) == pytest.approx(90.0)
    with pytest.raises(pz.PaperzooError):
        autonomy(1, 0.0)


def _right_edge_column(d: float, psi: float, row: int) -> float:
    gen = torch.Generator().manual_seed(0)
    p = random_params(1, gen, augment=False)
    p.d, p.psi, p.kappa, p.lane = torch.tensor([d]), torch.tensor([psi]), torch.tensor([0.0]), torch.tensor([3.6])
    p.brightness, p.cast, p.shadow_z, p.horizon = torch.ones(1), torch.ones(1, 3), -torch.ones(1), torch.tensor([0.3])
    img = render(p, gen)[0]
    white = (img.min(0).values[row] > 0.85).nonzero().flatten().float()
    return float(white[white > 100].mean())  # the right edge line, right of the image centre


@pytest.mark.paper("pilotnet")
def test_shifted_and_rotated_views_follow_the_camera_geometry(record_property) -> None:
    """The rendered right edge line sits where the pinhole camera puts it: at row r (ground distance
    z = h f / (r + 0.5 - horizon)) the column is w/2 + f x / z - 0.5 with x = 0.5 W - 0.15 - d - psi z; a shift by d and
    a rotation by psi move it by -f d / z and -f psi pixels."""
    f, h, row = 0.55 * 200, 1.5, 40
    z = h * f / (row + 0.5 - 0.3 * 66)
    expect = lambda d, psi: 100 + f * (0.5 * 3.6 - 0.15 - d - psi * z) / z - 0.5
    errs = [abs(_right_edge_column(d, psi, row) - expect(d, psi)) for d, psi in ((0, 0), (0.6, 0), (0, 0.05))]
    record_property("max_column_error_px", max(errs))
    assert max(errs) < 1.0


def test_road_dataset_and_yuv() -> None:
    ds = RoadDataset("train", size=4)
    x, y = ds[3]
    assert x.shape == (3, 66, 200) and y.shape == (1,) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(RoadDataset("train", size=4)[3][0], x)  # seeded
    gray = torch.full((3, 2, 2), 0.4)
    torch.testing.assert_close(rgb_to_yuv(gray), torch.stack([torch.full((2, 2), 0.4), torch.full((2, 2), 0.5), torch.full((2, 2), 0.5)]))
    with pytest.raises(pz.PaperzooError, match="66, 200"):
        pz.create_model("pilotnet")(torch.zeros(1, 3, 64, 64))


def test_closed_loop_drive_counts_interventions() -> None:
    """On a straight road a policy that steers straight never leaves the lane (100% autonomy); one that steers
    1/50 m to the right drifts out 1 m within ~10 m and is put back again and again."""
    from paperzoo.data.roads import drive

    straight = torch.zeros(60)
    calm = drive(lambda x: torch.tensor(0.0), straight, torch.Generator().manual_seed(0))
    assert calm["interventions"] == 0 and calm["autonomy"] == pytest.approx(100.0) and calm["mean_offset_m"] == 0
    biased = drive(lambda x: torch.tensor(0.02), straight, torch.Generator().manual_seed(0))
    assert biased["interventions"] >= 5 and biased["autonomy"] == pytest.approx(100 * (1 - biased["interventions"] * 6 / 6.0))
