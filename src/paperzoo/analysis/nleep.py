"""Ranking neural checkpoints (Li et al., CVPR 2021, arXiv 2011.11200): which pre-trained checkpoint will transfer
best to a target task, judged without fine-tuning them all.

A *transferability score* is computed from a checkpoint's outputs on the target's training images and labels;
it is good when it ranks the checkpoints as their fine-tuned accuracies do, measured by Kendall's tau. The paper's
contribution is **NLEEP**: LEEP (Nguyen et al., 2020) needs the checkpoint's own classifier over its source
classes; NLEEP replaces that classifier by a Gaussian mixture fitted to the checkpoint's features (reduced by PCA)
and uses the mixture's posterior over its components as the "source label" distribution, so that any feature
extractor can be scored and the score reflects the features' cluster structure.

* ``leep(theta, labels)``: (1/n) sum_i log sum_z P(y_i | z) theta_iz, with P(y | z) from the empirical joint
  P(y, z) = (1/n) sum_i theta_iz [y_i = y] (LEEP, Eq. 2-3 of Nguyen et al.);
* ``nleep(features, labels)``: PCA keeping ``variance`` of the variance (the paper: 80%), a GaussianMixture with
  ``components_per_class`` x classes components (scikit-learn, full covariances), LEEP over
  its posterior;
* baselines of the paper: ``linear_probe`` (cross-validated accuracy of a logistic-regression probe), ``knn_accuracy``
  (leave-one-out k-NN accuracy), ``h_score`` (Bao et al., 2019: tr(cov(f)^-1 cov(E[f | y])));
* ``kendall_tau``: Kendall's tau-b between scores and fine-tuned accuracies (checked against scipy's).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import PaperzooError

ArrayLike = "np.ndarray | torch.Tensor"


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _labels(labels, n: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise PaperzooError(f"transferability: need one label per sample ({n}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise PaperzooError("transferability: labels must be non-negative integers")
    return y.astype(np.int64)


def leep(theta, labels, num_classes: int | None = None) -> float:
    """LEEP of "source label" distributions ``theta`` (n, Z) (rows sum to 1) for target ``labels`` (n,)."""
    theta = _np(theta)
    if theta.ndim != 2:
        raise PaperzooError(f"leep: theta must be (n, Z) probabilities, got shape {theta.shape}")
    if (theta < -1e-9).any() or not np.allclose(theta.sum(1), 1.0, atol=1e-6):
        raise PaperzooError("leep: every row of theta must be a probability distribution (non-negative, sums to 1)")
    n = len(theta)
    y = _labels(labels, n)
    k = num_classes or int(y.max()) + 1
    joint = np.zeros((k, theta.shape[1]))
    np.add.at(joint, y, theta)
    joint /= n  # P(y, z)
    conditional = joint / np.clip(joint.sum(0, keepdims=True), 1e-300, None)  # P(y | z)
    return float(np.mean(np.log(np.clip((theta * conditional[y]).sum(1), 1e-300, None))))


def nleep(features, labels, variance: float = 0.8, components_per_class: int = 1, seed: int = 0,
          max_iter: int = 200) -> float:
    """NLEEP: PCA of ``features`` (n, D) keeping ``variance`` of it, a Gaussian mixture of
    ``components_per_class`` x (number of classes) components, LEEP over the mixture's posterior."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    f = _np(features)
    if f.ndim != 2:
        raise PaperzooError(f"nleep: features must be (n, D), got shape {f.shape}")
    y = _labels(labels, len(f))
    if not 0 < variance <= 1:
        raise PaperzooError(f"nleep: variance must be in (0, 1], got {variance}")
    reduced = PCA(n_components=variance if variance < 1 else None, svd_solver="full", random_state=seed).fit_transform(f)
    k = components_per_class * (int(y.max()) + 1)
    gmm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-4, max_iter=max_iter, random_state=seed)
    theta = gmm.fit(reduced).predict_proba(reduced)
    return leep(theta, y)


def linear_probe(features, labels, folds: int = 3, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic-regression probe on standardised features (the 'Linear' baseline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f, y = _np(features), _labels(labels, len(features))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, f, y, cv=cv).mean())


def knn_accuracy(features, labels, k: int = 5) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote in feature space (the 'kNN' baseline)."""
    f, y = torch.as_tensor(_np(features)), torch.as_tensor(_labels(labels, len(features)))
    d = torch.cdist(f, f)
    d.fill_diagonal_(float("inf"))
    idx = d.topk(k, largest=False).indices
    votes = torch.zeros(len(f), int(y.max()) + 1, dtype=torch.float64).scatter_add_(1, y[idx], torch.ones(idx.shape, dtype=torch.float64))
    return float((votes.argmax(1) == y).double().mean())


def h_score(features, labels) -> float:
    """H-score (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y])), with a pseudo-inverse."""
    f, y = _np(features), _labels(labels, len(features))
    f = f - f.mean(0)
    cov = f.T @ f / len(f)
    means = np.zeros_like(f)
    for c in np.unique(y):
        means[y == c] = f[y == c].mean(0)
    between = means.T @ means / len(f)
    return float(np.trace(np.linalg.pinv(cov, rcond=1e-10) @ between))


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two rankings (ties handled as in scipy.stats.kendalltau)."""
    x, z = torch.as_tensor(_np(a)), torch.as_tensor(_np(b))
    if x.shape != z.shape or x.ndim != 1 or len(x) < 2:
        raise PaperzooError(f"kendall_tau: needs two 1-D sequences of equal length >= 2, got {tuple(x.shape)} and {tuple(z.shape)}")
    dx = torch.sign(x[:, None] - x[None, :]).triu(1)
    dz = torch.sign(z[:, None] - z[None, :]).triu(1)
    s = float((dx * dz).sum())
    tx, tz = float((dx != 0).sum()), float((dz != 0).sum())
    if tx == 0 or tz == 0:
        return float("nan")
    return s / (tx * tz) ** 0.5
