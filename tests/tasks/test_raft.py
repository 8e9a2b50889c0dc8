"""RAFT (Shi et al., 2020): the alignment and cross-model terms and the objective on hand cases, the paper's bound of
BYOL's loss by the same terms, the run-away direction of the cross-model gradient, and the task through the Trainer."""
from __future__ import annotations

import math

import pytest
import torch

import paperzoo as pz
from helpers import rel_err
from paperzoo.tasks.byol import regression_loss
from paperzoo.tasks.raft import RAFTTask, alignment_loss, byol_upper_bound, cross_model_loss, raft_loss
from paperzoo.tasks.ssl import Views, byol_pipelines
from paperzoo.train import TrainConfig, Trainer


@pytest.mark.paper("raft")
def test_raft_terms_on_a_hand_case() -> None:
    """Two samples in 2-d: p(v1) = (e1, e2), p(v2) = (e2 scaled, e2), teacher t(v1) = (e1, e1), t(v2) = (e2, -e2):
    squared distances of unit vectors are 2 (orthogonal), 4 (opposite), 0 (equal); the teacher of the same view
    counts (the other view's would give 2.5)."""
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    p1, p2 = torch.stack([e1, e2]), torch.stack([3 * e2, e2])  # norms do not matter
    t1, t2 = torch.stack([e1, e1]), torch.stack([e2, -e2])
    assert alignment_loss(p1, p2).item() == pytest.approx((2 + 0) / 2)
    assert cross_model_loss(p1, p2, t1, t2).item() == pytest.approx(((0 + 2) / 2 + (0 + 4) / 2) / 2)
    loss, align, cross = raft_loss(p1, p2, t1, t2, alpha=1.0, beta=0.5)
    assert loss.item() == pytest.approx(1.0 - 0.5 * 1.5) and align.item() == 1.0 and cross.item() == 1.5


@pytest.mark.paper("raft")
def test_byol_loss_is_bounded_by_twice_alignment_plus_cross_model() -> None:
    """The paper's bound, numerically on 1000 random triples: BYOL's per-sample loss (the same as byol.regression_loss)
    never exceeds 2 ||p1 - p2||^2 + 2 ||p2 - t2||^2 and averaged it reads L_BYOL <= 2 (L_align + L_cross-model of
    view 2); on a hand case (p1 = p2 opposite to t2) the loss is 4 and the bound 8."""
    g = torch.Generator().manual_seed(0)
    p1, p2, t2 = (torch.randn(1000, 8, generator=g) for _ in range(3))
    loss, bound = byol_upper_bound(p1, p2, t2)
    assert rel_err(loss, regression_loss(p1, t2)) < 1e-5
    assert bool((loss <= bound + 1e-6).all()) and float((bound - loss).min()) >= -1e-6
    assert loss.mean() <= 2 * (alignment_loss(p1, p2) + cross_model_loss(p2, p2, t2, t2)) + 1e-6
    collinear = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])
    l, bnd = byol_upper_bound(*collinear)  # p1 = p2: the bound 2 * 4 = 8 against the loss 4
    assert l.item() == pytest.approx(4.0) and bnd.item() == pytest.approx(8.0)


@pytest.mark.paper("raft")
def test_byol_loss_splits_into_consistency_cross_model_and_cross_term() -> None:
    """The split the authors' code names (``loss = loss_consistency + loss_cross_model + loss_cross_term``): with unit
    vectors, || p1 - t2 ||^2 = || p1 - p2 ||^2 + || p2 - t2 ||^2 + 2 <p1 - p2, p2 - t2> exactly, per sample; the bound
    above is this split with 2 <a, b> <= || a ||^2 + || b ||^2. On a hand case (p1 = e1, p2 = e2, t2 = -e2): 2 = 2 + 4 - 4."""
    g = torch.Generator().manual_seed(3)
    p1, p2, t2 = (torch.nn.functional.normalize(torch.randn(500, 6, generator=g), dim=-1) for _ in range(3))
    cross_term = 2 * ((p1 - p2) * (p2 - t2)).sum(-1)
    byol, _ = byol_upper_bound(p1, p2, t2)
    split = (p1 - p2).pow(2).sum(-1) + (p2 - t2).pow(2).sum(-1) + cross_term
    assert rel_err(byol, split) < 1e-5
    assert alignment_loss(p1, p2) + cross_model_loss(p2, p2, t2, t2) + cross_term.mean() == pytest.approx(
        byol.mean().item(), abs=1e-5)
    e1, e2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    l, _ = byol_upper_bound(e1, e2, -e2)  # || e1 + e2 ||^2 = 2 = 2 (consistency) + 4 (cross-model) - 4 (cross term)
    assert l.item() == pytest.approx(2.0)
    assert alignment_loss(e1, e2).item() == pytest.approx(2.0) and cross_model_loss(e2, e2, -e2, -e2).item() == pytest.approx(4.0)
    assert (2 * ((e1 - e2) * (e2 + e2)).sum()).item() == pytest.approx(-4.0)


@pytest.mark.paper("raft")
def test_the_cross_model_gradient_runs_away_from_the_teacher() -> None:
    """A gradient step on L_RAFT with alpha = 0 increases the distance to the mean teacher (BYOL's cross term would
    decrease it); the teacher receives no gradient."""
    g = torch.Generator().manual_seed(1)
    p1, p2 = torch.randn(4, 6, generator=g, requires_grad=True), torch.randn(4, 6, generator=g, requires_grad=True)
    t1, t2 = torch.randn(4, 6, generator=g, requires_grad=True), torch.randn(4, 6, generator=g, requires_grad=True)
    loss, _, cross = raft_loss(p1, p2, t1, t2, alpha=0.0, beta=1.0)
    loss.backward()
    with torch.no_grad():
        after = cross_model_loss(p1 - 0.1 * p1.grad, p2 - 0.1 * p2.grad, t1, t2)
    assert after > cross and t1.grad is None and t2.grad is None


def test_raft_task_trains_without_a_predictor() -> None:
    """Two Trainer steps of RAFT without the predictor: finite loss, alignment and cross terms logged, target moved."""
    class Tiny(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(i)), i % 2

    torch.manual_seed(0)
    model = pz.create_model("resnet20_cifar", num_classes=2, width=4)
    task = RAFTTask(Views(byol_pipelines(16, 3, (0.5, 1.0)), (0.5,) * 3, (0.25,) * 3), 32, 8, predictor=False)
    trainer = Trainer(model, Tiny(), None, TrainConfig(epochs=1, batch_size=4, device="cpu", optimizer="adamw", lr=1e-2),
                      task=task, quiet=True)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = trainer.fit()
    assert math.isfinite(history[-1]["train_loss"]) and isinstance(task.heads["predictor"], torch.nn.Identity)
    assert not torch.equal(task.target_encoder.conv1.weight, start["conv1.weight"])
    with pytest.raises(pz.errors.ConfigError):
        RAFTTask(beta=-1)


@pytest.mark.paper("raft")
def test_raft_loss_equals_the_authors_code() -> None:
    """L_RAFT on the fixture's inputs equals the authors' ``gen_loss`` (WOWNICE/RAFT, tests/fixtures/raft/README.md) at
    two weightings. Pairing each view with the *other* view's teacher (BYOL's pairing) misses it."""
    from pathlib import Path

    from safetensors.torch import load_file
    fx = load_file(Path(__file__).parents[1] / "fixtures" / "raft" / "raft_official_loss.safetensors")
    p1, p2, t1, t2 = fx["p1"], fx["p2"], fx["t1"], fx["t2"]
    for (alpha, beta), key in (((1.0, 1.0), "loss_a1.0_b1.0"), ((0.7, 1.3), "loss_a0.7_b1.3")):
        loss, _, _ = raft_loss(p1, p2, t1, t2, alpha=alpha, beta=beta)
        assert abs(loss.item() - fx[key].item()) < 1e-5, (key, loss.item(), fx[key].item())
    crossed, _, _ = raft_loss(p1, p2, t2, t1)
    assert abs(crossed.item() - fx["loss_a1.0_b1.0"].item()) > 1e-3
