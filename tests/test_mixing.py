"""mixup and CutMix: label weights against the papers' definitions and against torchvision's v2 MixUp and
CutMix (statistics of the mixing ratio over many batches)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.data import CutMix, MixUp, MixUpOrCutMix

N = 8


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def mixup_ratios(mix, draws: int, generator: torch.Generator | None = None) -> np.ndarray:
    """lambda of each batch: the weight of a sample's own label, for a sample paired with another."""
    labels = torch.arange(N)
    out = []
    for _ in range(draws):
        _, y = mix(torch.eye(N).view(N, N, 1, 1), labels, generator) if generator is not None else mix(torch.eye(N).view(N, N, 1, 1), labels)
        own = y.diagonal()
        out.append(float(own[own < 1].min()) if (own < 1).any() else 1.0)
    return np.array(out)


@pytest.mark.paper("mixup")
def test_mixup_mixes_images_and_labels_with_the_same_ratio(record_property) -> None:
    """x = lambda x_i + (1 - lambda) x_j and y = lambda y_i + (1 - lambda) y_j with one lambda per batch:
    with one-hot "images" the mixed image is exactly the mixed label."""
    g = torch.Generator().manual_seed(0)
    x = torch.eye(N).view(N, N, 1, 1)
    mixed, y = MixUp(0.4, N)(x, torch.arange(N), g)
    record_property("max_abs_diff_mixed_image_vs_mixed_label", float((mixed.flatten(1) - y).abs().max()))
    torch.testing.assert_close(mixed.flatten(1), y)
    record_property("max_abs_dev_label_sum_from_1", float((y.sum(1) - 1).abs().max()))
    assert torch.allclose(y.sum(1), torch.ones(N))
    lam = {round(float(v), 6) for v in y.max(1).values if v < 1}
    record_property("num_distinct_mixing_weights", len(lam))
    assert len(lam) <= 2  # lambda and 1 - lambda seen from the two members of each pair


@pytest.mark.paper("mixup")
@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_ratio_is_beta_alpha_alpha_like_torchvision(alpha: float, record_property) -> None:
    """lambda ~ Beta(alpha, alpha): its mean, variance and whole distribution match the Beta law and
    torchvision.transforms.v2.MixUp's lambdas."""
    from torchvision.transforms import v2

    g = torch.Generator().manual_seed(1)
    ours = mixup_ratios(MixUp(alpha, N), 3000, g)
    ours = np.minimum(ours, 1 - ours)  # the pair's smaller weight: symmetric in lambda <-> 1 - lambda
    torch.manual_seed(2)
    theirs = mixup_ratios(v2.MixUp(alpha=alpha, num_classes=N), 3000)
    theirs = np.minimum(theirs, 1 - theirs)
    rng = np.random.default_rng(3)
    beta = rng.beta(alpha, alpha, 3000)
    beta = np.minimum(beta, 1 - beta)
    record_property("ks_lambda_vs_torchvision_MixUp", ks_distance(ours, theirs))
    record_property("ks_lambda_vs_numpy_beta_samples", ks_distance(ours, beta))
    assert ks_distance(ours, theirs) < 0.05 and ks_distance(ours, beta) < 0.05
    full = np.concatenate([ours, 1 - ours])
    record_property("var_lambda", float(full.var()))
    record_property("var_lambda_beta_law", 1 / (4 * (2 * alpha + 1)))
    assert full.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.08)


@pytest.mark.paper("cutmix")
def test_cutmix_label_weight_is_the_pasted_area_exactly(record_property) -> None:
    """The label weight of the pasted image is the box's share of the pixels (after clipping to the image)."""
    g = torch.Generator().manual_seed(4)
    x = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1).expand(N, 3, 24, 20).clone()
    own_diff = source_diff = sum_dev = 0.0
    for _ in range(200):
        mixed, y = CutMix(1.0, N)(x, torch.arange(N), g)
        for i in range(N):
            pasted = (mixed[i, 0] != i).float().mean()
            if pasted > 0:
                own_diff = max(own_diff, abs(float(1 - y[i, i]) - float(pasted)))
                assert float(1 - y[i, i]) == pytest.approx(float(pasted), abs=1e-6)
                source = int(mixed[i, 0][mixed[i, 0] != i][0])
                source_diff = max(source_diff, abs(float(y[i, source]) - float(pasted)))
                assert float(y[i, source]) == pytest.approx(float(pasted), abs=1e-6)
        sum_dev = max(sum_dev, float((y.sum(1) - 1).abs().max()))
        assert torch.allclose(y.sum(1), torch.ones(N))
    record_property("max_abs_diff_1_minus_own_label_weight_vs_pasted_area", own_diff)
    record_property("max_abs_diff_label_weight_vs_pasted_area", source_diff)
    record_property("max_abs_dev_label_sum_from_1", sum_dev)


@pytest.mark.paper("cutmix")
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_cutmix_box_statistics_match_torchvision(alpha: float, record_property) -> None:
    """Box sides W sqrt(1 - lambda), H sqrt(1 - lambda) around a uniform centre, clipped: the kept-area ratio
    has the same distribution as torchvision.transforms.v2.CutMix's, and is lambda on average only before
    clipping (clipping keeps more of the image)."""
    from torchvision.transforms import v2

    g = torch.Generator().manual_seed(5)
    cut = CutMix(alpha, N)
    ours = np.array([cut.box(32, 32, g)[-1] for _ in range(4000)])
    torch.manual_seed(6)
    tv = v2.CutMix(alpha=alpha, num_classes=N)
    x = torch.zeros(N, 3, 32, 32)
    theirs = np.array([float(tv(x, torch.arange(N))[1][1, 1]) for _ in range(4000)])
    record_property("ks_kept_area_vs_torchvision_CutMix", ks_distance(ours, theirs))
    record_property("mean_kept_area_ours", float(ours.mean()))
    record_property("mean_kept_area_torchvision", float(theirs.mean()))
    assert ks_distance(ours, theirs) < 0.05
    assert abs(ours.mean() - theirs.mean()) < 0.02
    assert ours.mean() > 0.5  # E[lambda] = 0.5 before clipping the box to the image


def test_switching_between_mixup_and_cutmix() -> None:
    g = torch.Generator().manual_seed(7)
    mix = MixUpOrCutMix(0.2, 1.0, N, switch_prob=0.5)
    x = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1).expand(N, 1, 8, 8).clone()
    kinds = []
    for _ in range(200):
        mixed, _ = mix(x, torch.arange(N), g)
        fractional = bool(((mixed - mixed.round()).abs() > 1e-6).any())  # mixup blends, CutMix pastes whole values
        kinds.append(fractional)
    assert 0.35 < np.mean(kinds) < 0.65
