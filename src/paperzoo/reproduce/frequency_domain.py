"""Learning in the Frequency Domain in miniature: a few low-frequency DCT channels keep accuracy.

The same narrow ResNet-50 is trained on RGB pixels (with its stem) and on block-DCT inputs (stem removed):
all 192 channels, the paper's static selections of 64 and 24 low-frequency channels, and — as a control the
paper's argument predicts to fail — the 24 highest frequencies. A last run learns a dynamic selection from
all 192 channels with the gate and its channel-count penalty (Sec. 3.2); the share of images for which each
channel is kept gives the paper's heat map (Fig. 4), where low frequencies and the luma (Y) component win.
The static inputs are trained from several seeds; the gated run (for the heat map) from the first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from ..data.dct import STATIC_SELECTIONS, channel_stats, images_to_dct, selection_index
from ..models.classification.resnet import Bottleneck, ResNet
from ..models.classification.resnet_dct import ResNetDCT
from ..tasks import ClassificationTask
from ._kit import Data, Recipe, about_equal, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("A CNN fed with block-DCT coefficients instead of pixels keeps (or improves) its accuracy when only a few "
         "low-frequency channels are kept: ResNet-50 with 24 of 192 DCT channels beats the RGB baseline on ImageNet.")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=4000, test_size=1000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=15, batch_size=64, lr=0.05, weight_decay=5e-5,
                                                          warmup_epochs=1.0))
    widths: tuple[int, ...] = (16, 32, 64, 128)
    layers: tuple[int, ...] = (1, 1, 1, 1)
    gate_lambda: float = 0.5  # weight of the mean gate (fraction of channels kept) in the loss
    tolerance: float = 2.0  # "keeps accuracy": DCT-24 at most this many points below RGB and below all 192 channels
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(image_size=16, train_size=64, test_size=32), recipe=dict(epochs=1), widths=(8, 8, 8, 8), seeds=(0,))
FULL = dict(data=dict(image_size=224, scale=(0.25, 0.6), train_size=50000, test_size=10000),
            recipe=dict(epochs=90, batch_size=256), widths=(64, 128, 256, 512), layers=(3, 4, 6, 3), seeds=(0,))


class GatedTask(ClassificationTask):
    """Cross-entropy plus lambda x (fraction of input channels the dynamic gate keeps)."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]):
        loss, logs = super().loss(model, batch)
        gate = model.gate.last_gate
        logs["channels_kept"] = gate.detach().sum(1).mean()
        return loss + self.lam * gate.mean(), logs


def _high_frequency_index(n: int) -> torch.Tensor:
    """The mirror image of the paper's n-channel selection: the same counts per component, highest frequencies."""
    return torch.tensor([64 * c + 63 - f for c, freqs in enumerate(STATIC_SELECTIONS[n]) for f in freqs])


def _tensors(rgb: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    return TensorDataset(rgb.contiguous(), labels)


def run(cfg: Config, out: Path) -> Report:
    train_data, test_data = cfg.data.splits()
    (x_tr, y_tr), (x_te, y_te) = train_data.materialize(), test_data.materialize()
    rgb_tr, rgb_te = (x.permute(0, 3, 1, 2).float() / 255 for x in (x_tr, x_te))
    dct_tr, dct_te = images_to_dct(rgb_tr), images_to_dct(rgb_te)  # (N, 192, S/4, S/4): upsampled x2, 8x8 blocks
    mean, std = channel_stats(dct_tr)
    dct_tr, dct_te = ((d - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1) for d in (dct_tr, dct_te))
    num_classes = train_data.num_classes
    size = cfg.data.image_size

    inputs = {
        "RGB pixels": None,
        "DCT, all 192": torch.arange(192),
        "DCT-64 (low)": selection_index(64),
        "DCT-24 (low)": selection_index(24),
        "DCT-24 (high)": _high_frequency_index(24),
    }

    def arm(label: str):
        index = inputs[label]
        if index is None:
            data = (_tensors((rgb_tr - 0.5) / 0.25, y_tr), _tensors((rgb_te - 0.5) / 0.25, y_te))
        else:
            data = (_tensors(dct_tr[:, index], y_tr), _tensors(dct_te[:, index], y_te))

        def build() -> torch.nn.Module:
            if index is None:  # pixels: the ResNet with its stem
                return ResNet(Bottleneck, cfg.layers, num_classes=num_classes, channels=cfg.widths, stem_width=cfg.widths[0])
            return ResNetDCT(Bottleneck, cfg.layers, in_chans=len(index), num_classes=num_classes, channels=cfg.widths)

        name = label.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        return lambda seed: fit(name, seeded(seed, build), *data, seed=seed, recipe=cfg.recipe)

    runs = run_arms({label: arm(label) for label in inputs}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    seed = cfg.seeds[0]
    gated = seeded(seed, lambda: ResNetDCT(Bottleneck, cfg.layers, in_chans=192, gate=True, num_classes=num_classes,
                                           channels=cfg.widths))
    gate_run = fit("dynamic_gate", gated, _tensors(dct_tr, y_tr), _tensors(dct_te, y_te), seed=seed, recipe=cfg.recipe,
                   task=GatedTask(cfg.gate_lambda))
    with torch.no_grad():
        gated.eval()(dct_te.contiguous(memory_format=torch.channels_last))
        kept = gated.gate.last_gate.mean(0)  # share of test images keeping each channel
    rows = [{"input": label, "channels": 3 if index is None else len(index),
             "input values / image": 3 * size ** 2 if index is None else len(index) * dct_tr.shape[-1] ** 2,
             "params (M)": runs[label][0].params_m, "test acc (%)": spread(acc[label]), "per seed": per_seed(acc[label])}
            for label, index in inputs.items()]
    rows.append({"input": f"DCT, dynamic gate (seed {seed})", "channels": f"{kept.sum():.1f} (mean)",
                 "params (M)": gate_run.params_m, "test acc (%)": f"{gate_run.acc:.1f}"})
    rgb, all192, low24, high24 = "RGB pixels", "DCT, all 192", "DCT-24 (low)", "DCT-24 (high)"
    m = "test acc (%)"
    decision = all_of([
        about_equal(acc[low24], acc[rgb], tolerance=cfg.tolerance, one_sided=True, a_name="DCT-24 (low)", b_name="RGB", metric=m),
        about_equal(acc[low24], acc[all192], tolerance=cfg.tolerance, one_sided=True, a_name="DCT-24 (low)",
                    b_name="DCT, all 192", metric=m),
        beats(acc[low24], acc[high24], a_name="DCT-24 (low)", b_name="DCT-24 (high)", metric=m),
    ], "24 low-frequency DCT channels keep the accuracy of RGB and of all 192 channels, and beat the 24 highest")
    y_low = kept[:64].view(8, 8)
    discussion = (f"The dynamic gate keeps {kept.sum():.1f} of 192 channels on average ({gate_run.acc:.1f}%); Y's 4x4 lowest "
                  f"frequencies are kept for {100 * float(y_low[:4, :4].mean()):.0f}% of images, its 4x4 highest for "
                  f"{100 * float(y_low[4:, 4:].mean()):.0f}%.")
    figures = [plots.bars(out, "accuracy.png", {**acc, "DCT, dynamic gate": [gate_run.acc]}, "Input representation"),
               _heatmap(kept, out)]
    return Report(
        slug="frequency-domain",
        claim=CLAIM,
        setup=(f"A narrow ResNet-50 (bottleneck blocks {cfg.layers}, widths {cfg.widths}) on "
               f"{cfg.data.describe(train_data, test_data)}: on RGB pixels with its stem, or with the stem removed on 8x8 "
               f"block-DCT channels of the YCbCr image upsampled x2 ({dct_tr.shape[-1]}x{dct_tr.shape[-1]} maps, normalised "
               f"per channel with training statistics). {cfg.recipe.describe()}, seeds {list(cfg.seeds)} (a seed fixes "
               f"initialisation and data order); the gated run adds {cfg.gate_lambda} x (fraction of channels kept) to the "
               "loss."),
        columns=["input", "channels", "input values / image", "params (M)", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            "A narrow one-block-per-stage ResNet-50 on 32x32 synthetic scenes (DCT maps 8x8) instead of ResNet-50 on "
            "448x448 ImageNet images (56x56 maps).",
            "All three components are transformed at the upsampled resolution; the paper's JPEG pipeline subsamples "
            "chroma and upsamples it back.",
            "The gate is deterministic (arg max) at test time; the authors also sample at test time. Its penalty is "
            "the mean fraction of kept channels, the paper's count divided by 192.",
        ],
        figures=figures,
        results={"accuracy": acc, "gate_acc": gate_run.acc, "kept_per_channel": kept.tolist()},
    )


def _heatmap(kept: torch.Tensor, out: Path) -> str:
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.2))
    for ax, c, name in zip(axes, range(3), ("Y", "Cb", "Cr")):
        im = ax.imshow(kept[64 * c:64 * c + 64].view(8, 8).numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set(title=f"{name}: share of images keeping (u, v)", xlabel="v (horizontal frequency)", ylabel="u (vertical)")
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(out / "gate_heatmap.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "gate_heatmap.png"
