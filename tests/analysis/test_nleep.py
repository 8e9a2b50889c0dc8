"""LEEP, NLEEP and the rank correlation of Ranking Neural Checkpoints on hand-computed and constructed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import paperzoo as pz
from paperzoo.analysis import nleep as T


@pytest.mark.paper("checkpoint-ranking")
def test_leep_by_hand(record_property) -> None:
    """LEEP of four samples, two source labels: P(y, z) = [[.2, .05], [.25, .5]], P(z) = [.45, .55], so
    P(y | z) = [[4/9, 1/11], [5/9, 10/11]] and LEEP = mean_i log sum_z P(y_i | z) theta_iz."""
    theta = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    y = np.array([0, 1, 1, 1])
    by_hand = (math.log(0.8 * 4 / 9 + 0.2 * 1 / 11) + math.log(0.6 * 5 / 9 + 0.4 * 10 / 11)
               + math.log(0.3 * 5 / 9 + 0.7 * 10 / 11) + math.log(0.1 * 5 / 9 + 0.9 * 10 / 11)) / 4
    ours = T.leep(theta, y)
    record_property("abs_err", abs(ours - by_hand))
    assert ours == pytest.approx(by_hand, abs=1e-12)
    assert T.leep(np.eye(2)[[0, 0, 1, 1]], [0, 0, 1, 1]) == pytest.approx(0.0)  # a perfect source: log 1
    assert T.leep(np.full((4, 2), 0.5), [0, 0, 1, 1]) == pytest.approx(math.log(0.5))  # uninformative: log prior


@pytest.mark.paper("checkpoint-ranking")
def test_nleep_is_leep_over_the_mixture_posterior(record_property) -> None:
    """NLEEP on constructed features: PCA keeping 80% of the variance, then scikit-learn's GaussianMixture with one
    component per class, then LEEP of its posterior — recomputed here step by step with scikit-learn and the LEEP
    formula; features in well separated class clusters score near log 1 = 0, label-free noise near log(1/3)."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    centres = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])
    feats = centres[y] + rng.normal(size=(120, 4)) * np.array([1.0, 1.0, 1.0, 0.1])
    reduced = PCA(n_components=0.8, svd_solver="full", random_state=0).fit_transform(feats)
    post = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, max_iter=200, random_state=0).fit(reduced).predict_proba(reduced)
    joint = np.stack([post[y == c].sum(0) for c in range(3)]) / 120
    expected = np.mean(np.log((post * (joint / joint.sum(0))[y]).sum(1)))
    ours = T.nleep(feats, y)
    record_property("abs_err", abs(ours - expected))
    assert reduced.shape[1] == 2  # three equal directions: two of them hold 80% of the variance
    assert ours == pytest.approx(expected, abs=1e-9) and ours > -0.05
    noise = T.nleep(rng.normal(size=(120, 4)), y)
    assert noise < -0.9 and noise > math.log(1 / 3) - 0.05


@pytest.mark.paper("checkpoint-ranking")
def test_kendall_tau_against_scipy(record_property) -> None:
    """Kendall's tau-b, with and without ties, equals scipy.stats.kendalltau; a hand case: (1, 2, 3, 4) against
    (1, 3, 2, 4) has 5 concordant and 1 discordant pairs, tau = 4/6."""
    assert T.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    rng = np.random.default_rng(1)
    worst = 0.0
    for ties in (False, True):
        for _ in range(5):
            a, b = rng.normal(size=12), rng.normal(size=12)
            if ties:
                a, b = np.round(a), np.round(b * 2)
            worst = max(worst, abs(T.kendall_tau(a, b) - scipy.stats.kendalltau(a, b).statistic))
    record_property("max_abs_err_vs_scipy", worst)
    assert worst < 1e-12


def test_baselines_and_errors() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 30)
    good = np.stack([y * 4.0, np.zeros(60)], 1) + rng.normal(size=(60, 2))
    bad = rng.normal(size=(60, 2))
    assert T.linear_probe(good, y) > 0.9 > T.linear_probe(bad, y)
    assert T.knn_accuracy(good, y) > 0.9 and T.h_score(good, y) > T.h_score(bad, y)
    with pytest.raises(pz.PaperzooError, match="probability"):
        T.leep(np.ones((2, 2)), [0, 1])
    with pytest.raises(pz.PaperzooError, match="one label per sample"):
        T.nleep(good, y[:10])
    with pytest.raises(pz.PaperzooError):
        T.kendall_tau([1.0], [2.0])
    assert torch.isnan(torch.tensor(T.kendall_tau([1, 1, 1], [1, 2, 3])))
