"""``curves.png`` from ``metrics.jsonl``: training loss per logged step, validation metrics per epoch, LR."""
from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
    return rows


def plot_curves(metrics_path: str | Path, out_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    steps = [r for r in rows if r.get("kind") == "step"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    val_keys = sorted({k for r in epochs for k in r if k.startswith(("val_", "ema_val_")) and k.endswith(("acc", "loss"))})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if steps:
        axes[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=1, label="train (logged steps)")
    if epochs:
        axes[0].plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
    for k in val_keys:
        if k.endswith("loss"):
            axes[0].plot([r["step"] for r in epochs if k in r], [r[k] for r in epochs if k in r], "s--", label=k)
    axes[0].set(xlabel="step", ylabel="loss", title="loss")
    for k in val_keys:
        if k.endswith("acc"):
            axes[1].plot([r["epoch"] for r in epochs if k in r], [r[k] for r in epochs if k in r], "o-", label=k)
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="validation")
    if steps:
        axes[2].plot([r["step"] for r in steps], [r["lr"] for r in steps])
    axes[2].set(xlabel="step", ylabel="learning rate", title="schedule")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(out_path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
