"""The figures the reproductions draw, in one place: bars with seed error bars, training curves, and
accuracy against cost. Each function writes a PNG into ``out`` and returns its file name."""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, filename: str, **kw: Any) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / filename, dpi=110, **kw)
    pyplot().close(fig)
    return filename


def _values(v: float | Sequence[float]) -> list[float]:
    return [float(v)] if isinstance(v, (int, float)) else [float(x) for x in v]


def bars(out: Path, filename: str, arms: Mapping[str, float | Sequence[float]], title: str,
         ylabel: str = "test accuracy (%)", colors: Sequence[str] | None = None) -> str:
    """One bar per arm at the mean of its per-seed values, an error bar of +-1 standard deviation where an
    arm has several seeds, and every seed's value as a dot."""
    plt = pyplot()
    labels = list(arms)
    values = [_values(arms[k]) for k in labels]
    means = [statistics.fmean(v) for v in values]
    sds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.25 * len(labels) + 1.5), 3.8))
    xs = range(len(labels))
    errors = [s if len(v) > 1 else float("nan") for s, v in zip(sds, values)]  # NaN: no bar for a single seed
    bars_ = ax.bar(xs, means, yerr=errors if any(len(v) > 1 for v in values) else None, capsize=4,
                   color=list(colors) if colors else [f"C{i % 10}" for i in xs], alpha=0.85)
    for x, v in zip(xs, values):
        if len(v) > 1:
            ax.plot([x] * len(v), v, "k.", ms=5, zorder=3)
    for bar, m, s in zip(bars_, means, sds):
        ax.annotate(f"{m:.1f}", (bar.get_x() + bar.get_width() / 2, m + s), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, rotation=15 if len(labels) > 3 else 0, ha="right" if len(labels) > 3 else "center",
                  fontsize=8)
    lo = min(min(v) for v in values)
    hi = max(max(v) for v in values)
    if ylabel.endswith("(%)"):
        ax.set_ylim(max(0.0, lo - 10), min(100.0, hi + 6) if hi < 95 else 101)
    n = max(len(v) for v in values)
    ax.set(title=title + (f" (mean +- s.d., {n} seeds)" if n > 1 else ""), ylabel=ylabel)
    ax.title.set_fontsize(10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, filename)


def curves(out: Path, filename: str, runs: Mapping[str, Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]]],
           title: str, keys: Sequence[tuple[str, str]] = (("val_acc", "test accuracy (%)"),), x: str = "epoch") -> str:
    """One panel per (row key, axis label), one colour per arm and one line per seed of it; keys ending in
    ``acc`` are drawn in percent. ``x`` is ``epoch``, ``step``, ``passes`` (epochs over the data) or ``time``
    (cumulative training seconds). ``runs`` maps an arm to one history (a list of rows) or to one per seed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.7), squeeze=False)
    for ax, (key, label) in zip(axes[0], keys):
        scale = 100.0 if key.endswith("acc") else 1.0
        for i, (arm, histories) in enumerate(runs.items()):
            if histories and isinstance(histories[0], Mapping):
                histories = [histories]
            for j, history in enumerate(histories):
                rows = [r for r in history if key in r]
                if x == "time":
                    xs, t = [], 0.0
                    for r in history:
                        t += r.get("time", 0.0)
                        if key in r:
                            xs.append(t)
                else:
                    xs = [r[x] for r in rows]
                ax.plot(xs, [scale * r[key] for r in rows], "-o", ms=2.5, lw=1.2, color=f"C{i % 10}", alpha=0.85,
                        label=arm if j == 0 else None)
        ax.set(xlabel={"time": "training time (s)", "passes": "epochs over the training set"}.get(x, x), ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out, filename)


def accuracy_vs_cost(out: Path, filename: str, series: Mapping[str, Sequence[tuple[float, Sequence[float] | float, str]]],
                     title: str, xlabel: str = "multiply-adds per image (M)", ylabel: str = "test accuracy (%)") -> str:
    """Accuracy against cost: one colour per series of (cost, per-seed accuracies, label) points, the mean
    marked with an error bar of +-1 standard deviation where there are several seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (name, points) in enumerate(series.items()):
        xs = [p[0] for p in points]
        vals = [_values(p[1]) for p in points]
        ys = [statistics.fmean(v) for v in vals]
        err = [statistics.stdev(v) if len(v) > 1 else float("nan") for v in vals]
        ax.errorbar(xs, ys, yerr=err if any(len(v) > 1 for v in vals) else None, fmt="-o" if len(points) > 1 else "o", capsize=3,
                    color=f"C{i % 10}", label=name)
        for xv, yv, p in zip(xs, ys, points):
            ax.annotate(p[2], (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, filename)


def heatmap(out: Path, filename: str, grids: Mapping[str, Sequence[Sequence[float]]],
            xticks: Sequence[str] | Mapping[str, Sequence[str]], yticks: Sequence[str], xlabel: str, ylabel: str,
            title: str, colorbar: str = "test accuracy (%)") -> str:
    """One panel per named grid (rows along y), a shared colour scale, the value printed in each cell;
    ``xticks`` may differ per panel (a mapping from the grid's name)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(4.6 * len(grids), 3.4), squeeze=False)
    flat = [v for g in grids.values() for row in g for v in row]
    lo, hi = min(flat), max(flat)
    im = None
    for ax, (name, grid) in zip(axes[0], grids.items()):
        im = ax.imshow(grid, vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
        ticks = list(xticks[name] if isinstance(xticks, Mapping) else xticks)
        ax.set(xticks=range(len(ticks)), xticklabels=ticks, yticks=range(len(yticks)), yticklabels=list(yticks),
               xlabel=xlabel, ylabel=ylabel, title=name)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label=colorbar)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out, filename, bbox_inches="tight")


def lines(out: Path, filename: str, series: Mapping[str, Mapping[Any, float | Sequence[float]]], title: str, xlabel: str,
          ylabel: str = "test accuracy (%)", xscale: str = "linear") -> str:
    """One line per series over shared x values (a learning rate, a batch size, a distance), the mean with
    a +-1 s.d. error bar where a point has several seeds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.7))
    for i, (name, points) in enumerate(series.items()):
        xs = list(points)
        vals = [_values(points[k]) for k in xs]
        ys = [statistics.fmean(v) for v in vals]
        err = [statistics.stdev(v) if len(v) > 1 else float("nan") for v in vals]
        ticks = xs if all(isinstance(k, (int, float)) for k in xs) else [str(k) for k in xs]
        ax.errorbar(ticks, ys, yerr=err if any(len(v) > 1 for v in vals) else None, fmt="-o", capsize=3, color=f"C{i % 10}",
                    label=name)
    ax.set(xscale=xscale, xlabel=xlabel, ylabel=ylabel, title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, filename)


def reliability(out: Path, filename: str, arms: Mapping[str, tuple[Any, Any]], title: str = "reliability on held-out data",
                bins: int = 10, min_count: int = 5) -> str:
    """Reliability diagram: accuracy against mean confidence per confidence bin (bins with at least
    ``min_count`` predictions), one line per arm of (logits, labels)."""
    import torch

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, (logits, labels) in arms.items():
        conf, pred = logits.softmax(1).max(1)
        which = (conf * bins).ceil().clamp(1, bins).long() - 1
        count = torch.zeros(bins).index_add_(0, which, torch.ones_like(conf))
        conf_sum = torch.zeros(bins).index_add_(0, which, conf)
        hit_sum = torch.zeros(bins).index_add_(0, which, (pred == labels).float())
        keep = count >= min_count
        ax.plot((conf_sum[keep] / count[keep]).tolist(), (hit_sum[keep] / count[keep]).tolist(), marker="o", label=name)
    ax.set(xlabel="confidence", ylabel="accuracy", title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out, filename)
