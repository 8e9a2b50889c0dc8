"""FNC (Huynh et al., 2020) on SimCLR: NT-Xent against a hand computation and lightly's NTXentLoss; the false-negative
selection through support views on constructed embeddings; elimination and attraction against the paper's equations
written out per anchor; `paperzoo train --task fnc`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import paperzoo as pz
from helpers import rel_err
from paperzoo.cli import main
from paperzoo.errors import ConfigError, PaperzooError
from paperzoo.tasks.fnc import FNCTask, false_negatives, fnc_loss, nt_xent


def _hand(z1: torch.Tensor, z2: torch.Tensor, t: float, flagged=None, strategy: str = "none") -> float:
    """The per-anchor equations with Python loops over anchors and candidates (cosine similarities)."""
    z = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n2, n = len(z), len(z1)
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        e = {k: math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i}
        fn = [k for k in range(n2) if flagged is not None and bool(flagged[i, k])]
        if strategy == "elimination":
            total += -math.log(e[p] / sum(v for k, v in e.items() if k not in fn))
        elif strategy == "attraction":
            den = sum(e.values())
            total += -sum(math.log(e[q] / den) for q in [p, *fn]) / (1 + len(fn))
        else:
            total += -math.log(e[p] / sum(e.values()))
    return total / n2


@pytest.mark.paper("fnc")
def test_nt_xent_equals_a_hand_computation_and_lightly() -> None:
    """NT-Xent of 2 images in 2-d by hand (closed form of the 4 anchors), of 6 random ones by per-anchor loops, and
    equal to lightly's NTXentLoss (t = 0.5), gradients included."""
    from lightly.loss import NTXentLoss

    z1, z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    c = 1 / math.sqrt(2)  # cos 45 degrees
    # anchor 0 (e1): others e2, (1,1), (0,1) -> cos 0, c, 0, positive (1,1); anchor 1 (e2): e1 0, (1,1) c, (0,1) 1 positive
    a0 = -math.log(math.exp(c / 0.5) / (math.exp(0) + math.exp(c / 0.5) + math.exp(0)))
    a1 = -math.log(math.exp(1 / 0.5) / (math.exp(0) + math.exp(c / 0.5) + math.exp(1 / 0.5)))
    a2 = -math.log(math.exp(c / 0.5) / (math.exp(c / 0.5) + math.exp(c / 0.5) + math.exp(c / 0.5)))
    a3 = -math.log(math.exp(1 / 0.5) / (math.exp(0) + math.exp(1 / 0.5) + math.exp(c / 0.5)))
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx((a0 + a1 + a2 + a3) / 4, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(6, 8, generator=g, requires_grad=True)
    ours = nt_xent(z1, z2, 0.5)
    assert ours.item() == pytest.approx(_hand(z1.detach(), z2.detach(), 0.5), rel=1e-6)
    ours.backward()
    r1, r2 = z1.detach().clone().requires_grad_(True), z2.detach().clone().requires_grad_(True)
    ref = NTXentLoss(temperature=0.5)(r1, r2)
    ref.backward()
    assert rel_err(ours.detach(), ref.detach()) < 1e-6
    assert rel_err(z1.grad, r1.grad) < 1e-5 and rel_err(z2.grad, r2.grad) < 1e-5


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """4 images: 0 and 2 share a class (near e0), 1 is near e1, 3 near e2; views are small perturbations."""
    g = torch.Generator().manual_seed(1)
    centres = torch.eye(4)[[0, 1, 0, 2]]
    return centres + 0.05 * torch.randn(4, 4, generator=g), centres + 0.05 * torch.randn(4, 4, generator=g)


@pytest.mark.paper("fnc")
def test_false_negatives_are_the_negatives_closest_to_the_support_views() -> None:
    """Support views of image 0 near e0 flag image 2's views (indices 2 and 6 of the 2N) for both of image 0's
    anchors (0 and 4), never a view of image 0 itself; top-1 picks one, top-2 both; a threshold flags the same;
    max and mean aggregation differ when one support view points elsewhere."""
    z1, z2 = _scene()
    support = torch.stack([z1 + 0.05, z2 - 0.05], 1)  # (N, S=2, d): near each image's own centre
    top2 = false_negatives(z1, z2, support, top_k=2)
    assert top2[0].nonzero().flatten().tolist() == [2, 6] and top2[4].nonzero().flatten().tolist() == [2, 6]
    assert top2[2].nonzero().flatten().tolist() == [0, 4]  # and symmetrically for image 2
    top1 = false_negatives(z1, z2, support, top_k=1)
    assert top1.sum(1).tolist() == [1] * 8 and set(top1[0].nonzero().flatten().tolist()) <= {2, 6}
    assert torch.equal(false_negatives(z1, z2, support, top_k=0, threshold=0.9)[[0, 2, 4, 6]], top2[[0, 2, 4, 6]])
    assert not false_negatives(z1, z2, support, top_k=0, threshold=0.9)[[1, 3, 5, 7]].any()  # 1 and 3 have no twin
    # image 1's support views at 0.6 e0 +- 0.8 e2: image 3 (e2) scores (0.8, -0.8), images 0 and 2 (e0) (0.6, 0.6)
    odd = support.clone()
    odd[1] = torch.tensor([[0.6, 0.0, 0.8, 0.0], [0.6, 0.0, -0.8, 0.0]])
    maxed = false_negatives(z1, z2, odd, top_k=1, aggregate="max")[1].nonzero().flatten().tolist()
    meaned = false_negatives(z1, z2, odd, top_k=1, aggregate="mean")[1].nonzero().flatten().tolist()
    assert maxed in ([3], [7]) and meaned in ([0], [2], [4], [6])  # max: image 3; mean: an image of the e0 class
    with pytest.raises(PaperzooError, match="aggregation"):
        false_negatives(z1, z2, support, aggregate="median")


@pytest.mark.paper("fnc")
def test_elimination_and_attraction_follow_the_papers_equations() -> None:
    """On random embeddings with the flags of the support views: elimination drops the flagged terms from each
    denominator, attraction averages the log-probabilities of the positive and the flagged negatives (loops per
    anchor); with nothing flagged both are NT-Xent."""
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    flagged = false_negatives(z1, z2, torch.randn(5, 3, 6, generator=g), top_k=2)
    for strategy in ("elimination", "attraction"):
        ours = fnc_loss(z1, z2, flagged, 0.2, strategy)
        ref = torch.tensor(_hand(z1, z2, 0.2, flagged, strategy))
        assert rel_err(ours.double(), ref) < 1e-5, strategy
        none = fnc_loss(z1, z2, torch.zeros_like(flagged), 0.2, strategy)
        assert none.item() == pytest.approx(nt_xent(z1, z2, 0.2).item(), rel=1e-6)
    assert fnc_loss(z1, z2, flagged, 0.2, "elimination") < nt_xent(z1, z2, 0.2)  # fewer negatives, lower loss


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(PaperzooError, match="strategy"):
        FNCTask(strategy="ignore")
    with pytest.raises(ConfigError, match="support"):
        FNCTask(strategy="elimination", support=0)
    with pytest.raises(ConfigError, match="temperature"):
        nt_xent(torch.randn(2, 3), torch.randn(2, 3), 0.0)


def test_paperzoo_train_task_fnc(tmp_path: Path) -> None:
    """`paperzoo train --task fnc` (attraction, 2 support views) runs and logs the flags' precision and the probe."""
    out = tmp_path / "run"
    main(["train", "--model", "resnet20_cifar", "--task", "fnc", "--data", "shapes", "--epochs", "1", "--batch-size", "8",
          "--out", str(out), "data.size=16", "data.val_size=16", "data.image_size=16", "model_args.width=4"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["fn_precision"] <= 1 and math.isfinite(r["loss"]) for r in rows if r["kind"] == "step")
    assert "val_probe_acc" in rows[-1]
