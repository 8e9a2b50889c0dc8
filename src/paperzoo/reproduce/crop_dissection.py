"""Dissecting Image Crops in miniature: patches are localised in the original frame from lens traces alone.

The paper (Van Hoorick & Vondrick, Sec. 4-5) trains a network to classify each patch of a photo into the 4 x 4
cells of the uncropped frame and to detect crops; it localises patches well above chance, and ablations that remove
the lens traces (chromatic aberration, vignetting) bring it down. Here the built-in scenes are the photographs: one
arm renders both traces into them, the other none; patches come from the centres of a 4 x 4 grid over the
(half of the time randomly cropped) image, so scene content says nothing about the absolute position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.applications.crop_dissection import CropLocator
from ..tasks.crop import CropTask
from ._kit import (
    Data,
    Recipe,
    all_of,
    beats,
    fit,
    per_seed,
    plots,
    run_arms,
    seeded,
    spread,
)
from .report import Report

CLAIM = ("A network tells where in the original frame a patch came from, and whether an image was cropped, from "
         "lens traces such as chromatic aberration and vignetting; without those traces absolute localisation "
         "falls towards chance (Van Hoorick & Vondrick, 2021, Sec. 4-5).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(image_size=96, train_size=1500, test_size=300, preset="medium",
                                                    scale=(0.2, 0.5)))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=32, optimizer="adam", lr=2e-3,
                                                          weight_decay=0.0, schedule="cosine"))
    grid: int = 4
    patch: int = 16
    aberration: float = 0.02  # red magnified by 1 + a, blue by 1 - a
    vignetting: float = 0.6
    width: int = 16
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=32, test_size=16), recipe=dict(epochs=1, batch_size=16), width=4, seeds=(0,))
FULL = dict(data=dict(image_size=384, train_size=20000, test_size=2000), recipe=dict(epochs=30), patch=64,
            aberration=0.005, vignetting=0.3, width=64, seeds=(0, 1, 2))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    chance = 100.0 / cfg.grid**2

    def arm(traces: bool):
        task = CropTask(cfg.grid, cfg.patch, 32, cfg.aberration if traces else 0.0, cfg.vignetting if traces else 0.0,
                        mean=train.mean, std=train.std)

        def one(seed: int):
            model = seeded(seed, lambda: CropLocator(cfg.grid, 64, "small", "small", cfg.width))
            return fit("crop_locator", model, train, test, seed=seed, recipe=cfg.recipe, task=task,
                       eval_every=cfg.recipe.epochs)
        return one

    runs = run_arms({"lens traces": arm(True), "no traces": arm(False)}, cfg.seeds)
    loc = {k: [100 * r.metrics["val_location_acc"] for r in v] for k, v in runs.items()}
    crop = {k: [100 * r.metrics["val_crop_acc"] for r in v] for k, v in runs.items()}
    decision = all_of([
        beats(loc["lens traces"], [chance] * len(cfg.seeds), a_name="with lens traces", b_name="chance",
              metric="patch localisation accuracy (%)", margin=chance,
              claim=f"with lens traces, patches are localised at more than twice chance ({chance:.1f}%)"),
        beats(loc["lens traces"], loc["no traces"], a_name="with lens traces", b_name="without traces",
              metric="patch localisation accuracy (%)", claim="removing the traces lowers localisation accuracy"),
    ], claim="crops are localised from optical traces well above chance, and not without them")
    rows = [{"photographs": k, "patch localisation (%)": spread(loc[k]), "crop detection (%)": spread(crop[k]),
             "per seed (localisation)": per_seed(loc[k])} for k in runs]
    rows.append({"photographs": "chance", "patch localisation (%)": f"{chance:.1f}", "crop detection (%)": "50.0",
                 "per seed (localisation)": ""})
    figures = [plots.bars(out, "localisation.png", {**loc, "chance": [chance]}, "absolute patch localisation",
                          ylabel="accuracy (%)")]
    return Report(
        slug="crop-dissection", claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)} as photographs; 'lens traces': red channel magnified by "
               f"{1 + cfg.aberration:g} and blue by {1 - cfg.aberration:g} about the centre, vignetting of strength "
               f"{cfg.vignetting:g}; 'no traces': the scenes as rendered. Half the images are cropped (sides 0.5-0.9 of "
               f"the frame, at least {int(cfg.grid * cfg.patch * 1.1)} px); {cfg.grid}x{cfg.grid} patches of {cfg.patch} px at the "
               f"crop's cell centres, labelled with the original frame's cell; a 32 px global view. The paper's model and "
               f"loss with small CNNs (width {cfg.width}) for ResNet-18/34: {cfg.recipe.describe()}, seeds {list(cfg.seeds)}."),
        columns=["photographs", "patch localisation (%)", "crop detection (%)", "per seed (localisation)"], rows=rows,
        decision=decision,
        differences=["Rendered scenes with synthetic, exaggerated lens traces instead of 700,000 Flickr photographs "
                     "with real ones; 96 px frames and 16 px patches instead of full-resolution photos and 96 px patches; "
                     "small CNNs instead of ResNet-18/34."],
        figures=figures, results={"location_acc": loc, "crop_acc": crop, "chance": chance})
