"""Boundary F-score on hand-counted label maps."""
from __future__ import annotations

import torch

from paperzoo.metrics.boundary import boundaries, boundary_f1


def _square(top: int, left: int, size: int = 4, n: int = 10) -> torch.Tensor:
    m = torch.zeros(1, n, n, dtype=torch.long)
    m[0, top:top + size, left:left + size] = 1
    return m


def test_boundary_pixels_of_a_square() -> None:
    # a 4x4 square at (3, 3): its 12 rim pixels inside, and the 4 x 4 = 16 outside pixels that touch a side
    assert int(boundaries(_square(3, 3)).sum()) == 12 + 16


def test_boundary_f1_by_hand() -> None:
    gt = _square(3, 3)
    assert boundary_f1(gt, gt)["f1"] == 1.0
    shifted = _square(3, 5)  # two columns to the right: with tol 0, only the horizontal edges' shared pixels match
    r = boundary_f1(shifted, gt, tol=0)
    # both maps have 28 boundary pixels. Shared, by hand: rows 2 and 7 at columns 5-6 (2 + 2), rows 3 and 6 at
    # columns 4-7 (4 + 4); rows 4-5 none (gt's columns 2, 3, 6, 7 against 4, 5, 8, 9): 12 of 28 on each side
    assert abs(r["precision"] - 12 / 28) < 1e-12 and abs(r["recall"] - 12 / 28) < 1e-12
    assert abs(r["f1"] - 12 / 28) < 1e-12
    assert boundary_f1(shifted, gt, tol=2)["f1"] == 1.0  # every pixel within 2 of the other's boundary
    assert boundary_f1(torch.zeros_like(gt), gt)["f1"] == 0.0
    assert boundary_f1(torch.zeros_like(gt), torch.zeros_like(gt))["f1"] == 1.0
