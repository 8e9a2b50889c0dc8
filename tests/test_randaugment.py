"""RandAugment: the paper's 14 operations, their magnitude ranges, uniform selection and the N/M policy."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from paperzoo.data import RandAugment
from paperzoo.data.randaugment import OPS, apply_op, op_parameter

# Section 3 of the paper: "identity, autoContrast, equalize, rotate, solarize, color, posterize, contrast,
# brightness, sharpness, shear-x, shear-y, translate-x, translate-y".
PAPER_OPS = ["identity", "autoContrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
             "brightness", "sharpness", "shear-x", "shear-y", "translate-x", "translate-y"]
# AutoAugment's ranges (Table 1 of arXiv:1805.09501), which RandAugment keeps, reached at M = 10.
PAPER_RANGES = {"rotate": 30.0, "shear_x": 0.3, "shear_y": 0.3, "translate_x": 150 / 331, "translate_y": 150 / 331,
                "solarize": (256.0, 0.0), "posterize": (8.0, 4.0), "color": 0.9, "contrast": 0.9, "brightness": 0.9,
                "sharpness": 0.9}


def image(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 24, 24, generator=g) * 255).to(torch.uint8)


@pytest.mark.paper("randaugment")
def test_the_fourteen_operations_of_the_paper(record_property) -> None:
    record_property("num_ops", len(OPS))
    record_property("num_ops_matching_paper_list", len(set(OPS) & {op.lower().replace("-", "_") for op in PAPER_OPS}))
    assert len(OPS) == 14
    assert sorted(OPS) == sorted(op.lower().replace("-", "_") for op in PAPER_OPS)


@pytest.mark.paper("randaugment")
def test_magnitude_ranges(record_property) -> None:
    """At M = 10 every operation reaches AutoAugment's range; at M = 0 every magnitude op is the identity,
    and strength grows linearly in between (factors 1 +- 0.9 M/10 span AutoAugment's [0.1, 1.9])."""
    checks = {op: ((0, limit[0]), (10, limit[1])) if isinstance(limit, tuple) else ((10, limit), (5, limit / 2))
              for op, limit in PAPER_RANGES.items()}
    record_property("max_abs_diff_magnitude_vs_autoaugment_range",
                    max(abs(op_parameter(op, m) - v) for op, pairs in checks.items() for m, v in pairs))
    for op, limit in PAPER_RANGES.items():
        if isinstance(limit, tuple):
            assert (op_parameter(op, 0), op_parameter(op, 10)) == pytest.approx(limit)
        else:
            assert op_parameter(op, 10) == pytest.approx(limit)
            assert op_parameter(op, 5) == pytest.approx(limit / 2)
    assert op_parameter("identity", 10) is None and op_parameter("equalize", 10) is None
    x = image()
    record_property("num_magnitude_ops", len(PAPER_RANGES))
    record_property("num_magnitude_ops_identity_at_m0",
                    sum(torch.equal(apply_op(x, op, 0.0, sign=-1.0), x) for op in PAPER_RANGES))
    for op in PAPER_RANGES:
        assert torch.equal(apply_op(x, op, 0.0, sign=-1.0), x), op


@pytest.mark.paper("randaugment")
def test_operations_apply_the_parameter(record_property) -> None:
    """Each operation is torchvision's functional transform at the parameter the magnitude gives."""
    x = image(1)
    nearest = InterpolationMode.NEAREST
    pairs = [(apply_op(x, "rotate", 10, -1), TF.rotate(x, -30.0, interpolation=nearest, fill=[128.0] * 3)),
             (apply_op(x, "shear_x", 5, 1), TF.affine(x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.15)), 0.0],
                                                      interpolation=nearest, fill=[128.0] * 3, center=[0, 0])),
             (apply_op(x, "translate_y", 10, 1), TF.affine(x, 0.0, [0, round(24 * 150 / 331)], 1.0, [0.0, 0.0],
                                                          interpolation=nearest, fill=[128.0] * 3)),
             (apply_op(x, "solarize", 5, 1), TF.solarize(x, 128)), (apply_op(x, "posterize", 10, 1), TF.posterize(x, 4)),
             (apply_op(x, "contrast", 10, -1), TF.adjust_contrast(x, 0.1)),
             (apply_op(x, "brightness", 10, 1), TF.adjust_brightness(x, 1.9))]
    record_property("num_ops_equal_to_torchvision_of_7", sum(torch.equal(a, b) for a, b in pairs))
    record_property("max_abs_diff_vs_torchvision_functional", max(int((a.int() - b.int()).abs().max()) for a, b in pairs))
    assert torch.equal(apply_op(x, "rotate", 10, -1), TF.rotate(x, -30.0, interpolation=nearest, fill=[128.0] * 3))
    assert torch.equal(apply_op(x, "shear_x", 5, 1), TF.affine(x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.15)), 0.0],
                                                               interpolation=nearest, fill=[128.0] * 3, center=[0, 0]))
    assert torch.equal(apply_op(x, "translate_y", 10, 1), TF.affine(x, 0.0, [0, round(24 * 150 / 331)], 1.0, [0.0, 0.0],
                                                                   interpolation=nearest, fill=[128.0] * 3))
    assert torch.equal(apply_op(x, "solarize", 5, 1), TF.solarize(x, 128))
    assert torch.equal(apply_op(x, "posterize", 10, 1), TF.posterize(x, 4))
    assert torch.equal(apply_op(x, "contrast", 10, -1), TF.adjust_contrast(x, 0.1))
    assert torch.equal(apply_op(x, "brightness", 10, 1), TF.adjust_brightness(x, 1.9))


@pytest.mark.paper("randaugment")
def test_policy_draws_n_ops_uniformly_at_one_magnitude(record_property) -> None:
    """Each of the N operations is chosen with probability 1/K (K = 14) and a random sign."""
    torch.manual_seed(0)
    ra = RandAugment(num_ops=2, magnitude=9)
    draws = [d for _ in range(7000) for d in ra.sample()]
    assert len(draws) == 14000
    counts = torch.tensor([sum(op == o for o, _ in draws) for op in OPS], dtype=torch.float64)
    chi2 = float(((counts - 1000) ** 2 / 1000).sum())
    record_property("chi2_op_counts_vs_uniform", chi2)
    record_property("mean_sign", sum(s for _, s in draws) / len(draws))
    assert chi2 < 36.1  # 13 degrees of freedom, p = 0.001
    assert abs(sum(s for _, s in draws) / len(draws)) < 0.03


def test_normalised_input_round_trip_and_reproducibility() -> None:
    """With mean/std the transform works on paperzoo's normalised images; N = 0 is the identity; the same
    torch seed gives the same augmentation (what the Trainer's per-sample seeding relies on)."""
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    x = (image(2).float() / 255 - 0.5) / 0.25
    assert torch.equal(RandAugment(0, 9, mean, std)(x), x)
    ra = RandAugment(2, 9, mean, std)
    torch.manual_seed(5)
    a = ra(x)
    torch.manual_seed(5)
    assert torch.equal(a, ra(x)) and a.dtype == torch.float32 and a.shape == x.shape
    identity = RandAugment(3, 9, mean, std, ops=("identity",))(x)
    torch.testing.assert_close(identity, x, atol=1 / 255 / 0.25, rtol=0)  # only the uint8 rounding
