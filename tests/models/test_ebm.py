"""EBMs for continual learning: the contrastive energy over the batch's classes, the in-batch class selection,
E(x, y) evaluated per label and for all labels, and the continual-learning metrics, on hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

import paperzoo as pz
from paperzoo.analysis.continual import average_accuracy, class_splits, forgetting
from paperzoo.tasks.energy import EnergyTask, batch_classes, contrastive_energy_loss


class FixedEnergies(torch.nn.Module):
    def __init__(self, energies: torch.Tensor) -> None:
        super().__init__()
        self.e = torch.nn.Parameter(energies.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.e


@pytest.mark.paper("ebm-cl")
def test_contrastive_energy_over_the_batch_classes_by_hand(record_property) -> None:
    """Eq. 5-6 with labels (0, 2, 0) of 4 classes: only classes 0 and 2 are negatives, so the loss is
    mean_i E(x_i, y_i) + log(exp(-E(x_i, 0)) + exp(-E(x_i, 2))), and classes 1 and 3 (absent from the batch) get
    exactly zero gradient; with all classes as negatives (the softmax ablation) they do not."""
    E = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.0, 0.3, -0.5, 2.0], [-0.2, 0.1, 0.4, -3.0]])
    y = torch.tensor([0, 2, 0])
    by_hand = sum(E[i, y[i]] + math.log(math.exp(-E[i, 0]) + math.exp(-E[i, 2])) for i in range(3)) / 3
    model = FixedEnergies(E)
    loss, _ = EnergyTask().loss(model, (torch.zeros(3, 1), y))
    loss.backward()
    record_property("abs_err", abs(float(loss) - float(by_hand)))
    assert float(loss) == pytest.approx(float(by_hand), abs=1e-6)
    assert torch.all(model.e.grad[:, [1, 3]] == 0) and torch.all(model.e.grad[:, [0, 2]] != 0)
    assert batch_classes(y, 4).tolist() == [True, False, True, False]
    full = contrastive_energy_loss(E.clone().requires_grad_(), y, all_classes=True)
    assert float(full) == pytest.approx(float(torch.nn.functional.cross_entropy(-E, y)))
    model.e.grad = None
    EnergyTask(all_classes=True).loss(model, (torch.zeros(3, 1), y))[0].backward()
    assert torch.all(model.e.grad[:, [1, 3]] != 0)


@pytest.mark.paper("ebm-cl")
def test_energy_per_label_equals_all_labels_and_min_energy_prediction() -> None:
    """E(x, y) computed for given labels equals the all-classes evaluation at those labels; the model's output is
    -E, so its argmax is the minimum-energy label."""
    torch.manual_seed(0)
    model = pz.create_model("ebm_classifier", num_classes=5, in_chans=1).eval()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        all_e = model.energies(x)
        for y in range(5):
            torch.testing.assert_close(model.energy(x, torch.full((4,), y)), all_e[:, y])
        assert torch.equal(model(x).argmax(1), all_e.argmin(1))
        torch.testing.assert_close(model.energies(x, torch.tensor([3, 1])), all_e[:, [3, 1]])


@pytest.mark.paper("ebm-cl")
def test_average_accuracy_and_forgetting_by_hand() -> None:
    """acc[t][i] after task t on task i: average accuracy = mean of the last row; forgetting = mean over the earlier
    tasks of (best accuracy before the last task - final accuracy), the best not always right after the task's own
    training: ((0.9 - 0.5) + (0.85 - 0.6) + (0.9 - 0.7)) / 3."""
    acc = [[0.6], [0.9, 0.8], [0.7, 0.85, 0.9], [0.5, 0.6, 0.7, 0.95]]
    assert average_accuracy(acc) == pytest.approx((0.5 + 0.6 + 0.7 + 0.95) / 4)
    assert forgetting(acc) == pytest.approx((0.4 + 0.25 + 0.2) / 3)
    assert class_splits(10, 2) == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    with pytest.raises(pz.PaperzooError):
        class_splits(10, 3)
