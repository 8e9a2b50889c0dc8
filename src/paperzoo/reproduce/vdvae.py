"""Very Deep VAE in miniature: at matched parameter count, a deeper hierarchy of stochastic layers reaches lower
bits per dimension (the paper's Table 4 / Fig. 4: depth, not width, is what improves the likelihood).

Per seed, two VDVAEs with the same encoder layout are trained on synthetic scenes: a shallow one with one stochastic
layer per resolution and a deep one with ``deep_layers`` per resolution; the shallow one's width is chosen so that
its parameter count matches the deep one's. Both are trained with the paper's recipe in small (Adam, gradient
clipping, update skipping above a gradient-norm threshold); the test negative ELBO in bits per dimension decides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.generative.vdvae import VDVAE
from ..tasks.generative import GenerativeTask, save_grid
from ._kit import Data, Recipe, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Very deep hierarchies of stochastic layers, trained stably, give better likelihoods: at the same number of "
         "parameters, a VAE with more stochastic layers per resolution reaches fewer bits per dimension "
         "(Child, 2020, Table 4 and Fig. 4).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(name="shapes", image_size=8, train_size=1600, test_size=300,
                                                    preset="medium", scale=(0.5, 0.9)))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=5, batch_size=32, optimizer="adam", lr=2e-3,
                                                          weight_decay=0.0, schedule="constant", momentum=0.0))
    deep_width: int = 24
    deep_layers: int = 4  # stochastic layers per resolution of the deep model (the shallow: 1)
    zdim: int = 8
    mixtures: int = 5
    grad_clip: float = 200.0
    skip_threshold: float = 1000.0
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(image_size=8, train_size=32, test_size=16), recipe=dict(epochs=1, batch_size=16), deep_width=8,
             deep_layers=2, zdim=2, mixtures=2, seeds=(0,))
FULL = dict(data=dict(image_size=32, train_size=20000, test_size=2000), recipe=dict(epochs=50), deep_width=128,
            deep_layers=8, zdim=16, mixtures=10, seeds=(0, 1, 2))


def _layers(size: int, per_res: int) -> tuple[str, str]:
    res = [r for r in (32, 16, 8, 4, 1) if r <= size]
    enc = ",".join(f"{r}x1,{r}d{r // nxt}" for r, nxt in zip(res[:-1], res[1:])) + f",{res[-1]}x1"
    dec = ",".join([f"{res[-1]}x{per_res}"] + [f"{r}m{prev},{r}x{per_res - 1}" if per_res > 1 else f"{r}m{prev}"
                                               for prev, r in zip(res[::-1][:-1], res[::-1][1:])])
    return enc, dec


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size = cfg.data.image_size
    enc, dec_deep = _layers(size, cfg.deep_layers)
    _, dec_shallow = _layers(size, 1)
    common = dict(zdim=cfg.zdim, num_mixtures=cfg.mixtures, enc_blocks=enc, grad_clip=cfg.grad_clip,
                  skip_threshold=cfg.skip_threshold)
    deep_params = _count(VDVAE(size, cfg.deep_width, dec_blocks=dec_deep, **common))
    widths = range(4, 4 * cfg.deep_width, 2)
    shallow_width = min(widths, key=lambda w: abs(_count(VDVAE(size, w, dec_blocks=dec_shallow, **common)) - deep_params))
    shallow_params = _count(VDVAE(size, shallow_width, dec_blocks=dec_shallow, **common))
    n_deep, n_shallow = len(VDVAE(size, 4, dec_blocks=dec_deep, **common).dec_blocks), len(dec_shallow.split(","))

    def arm(name: str, width: int, dec: str):
        def go(seed: int):
            model = seeded(seed, lambda: VDVAE(size, width, dec_blocks=dec, **common))
            result = fit(name, model, train, test, seed=seed, recipe=cfg.recipe, task=GenerativeTask(train.mean, train.std))
            if seed == cfg.seeds[0]:
                model.eval()
                import torch

                save_grid(model.sample(64, torch.Generator().manual_seed(0)), out / f"samples_{name.split()[0]}.png")
            return result
        return go

    deep_name, shallow_name = f"deep ({cfg.deep_layers} per resolution)", "shallow (1 per resolution)"
    runs = run_arms({deep_name: arm(deep_name, cfg.deep_width, dec_deep),
                     shallow_name: arm(shallow_name, shallow_width, dec_shallow)}, cfg.seeds)
    bpd = {n: [r.metrics["val_bits_per_dim"] for r in rs] for n, rs in runs.items()}
    rate = {n: [r.metrics["val_rate_bpd"] for r in rs] for n, rs in runs.items()}
    decision = beats(bpd[deep_name], bpd[shallow_name], a_name=deep_name, b_name=shallow_name,
                     metric="test bits per dimension", lower_is_better=True)
    rows = [{"model": n, "stochastic layers": n_deep if n == deep_name else n_shallow,
             "width": cfg.deep_width if n == deep_name else shallow_width,
             "params": deep_params if n == deep_name else shallow_params,
             "test bits/dim": spread(bpd[n], 3), "of which KL (bits/dim)": spread(rate[n], 3), "per seed": per_seed(bpd[n], 3)}
            for n in bpd]
    curves = {n: [r.history for r in rs] for n, rs in runs.items()}
    figures = [plots.bars(out, "bits_per_dim.png", bpd, "test bits per dimension (lower is better)", ylabel="bits/dim"),
               plots.curves(out, "curves.png", curves, "test bits/dim by epoch", keys=(("val_bits_per_dim", "test bits/dim"),)),
               "samples_deep.png", "samples_shallow.png"]
    return Report(
        slug="vdvae",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}. Both models: encoder `{enc}`, 8-bit discretised mixture of "
               f"{cfg.mixtures} logistics, {cfg.zdim}-D latents, bottleneck 1/4; deep decoder `{dec_deep}` "
               f"({n_deep} stochastic layers, width {cfg.deep_width}, {deep_params:,} parameters), shallow decoder "
               f"`{dec_shallow}` ({n_shallow} layers, width {shallow_width} chosen to match: {shallow_params:,} "
               f"parameters). {cfg.recipe.describe(schedule=False)}, Adam betas (0.9, 0.9), gradients clipped at "
               f"{cfg.grad_clip:g}, updates skipped above a gradient norm of {cfg.skip_threshold:g}; seeds "
               f"{list(cfg.seeds)}. Metric: the negative ELBO of the test scenes in bits per dimension."),
        columns=list(rows[0]),
        rows=rows,
        decision=decision,
        differences=[
            f"{size}x{size} synthetic scenes and a few hundred steps instead of CIFAR-10/ImageNet/FFHQ and "
            "millions of steps; tiny widths.",
            "The paper varies depth at fixed width and compares with PixelCNN-class models; here depth against width "
            "at a matched parameter count.",
            "No EMA of the weights is evaluated (the engine has it: ema_decay).",
        ],
        figures=figures,
        results={"bits_per_dim": bpd, "rate_bpd": rate, "params": {deep_name: deep_params, shallow_name: shallow_params},
                 "shallow_width": shallow_width},
    )
