"""PilotNet in miniature: steering from pixels alone, on the synthetic road renderer, open loop and closed loop.

The paper trains a CNN from camera frames to the driver's steering (inverse turning radius) and adds shifted and
rotated views labelled with the steering that would bring the car back (Sec. 5.2), without which a network that
only ever saw the car centred in its lane cannot recover from its own drift. It reports ~98% autonomy in
simulation and on the road (Sec. 7). Here PilotNet is trained on rendered frames (``paperzoo.data.roads``) with and
without that augmentation, two seeds each; open loop, its steering error on held-out shifted/rotated frames is
compared with predicting the training mean; closed loop, it drives a simulated winding road and its autonomy
(1 - 6 s x interventions / time) is compared between the two arms.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data.roads import RoadDataset, drive
from ..models.applications.pilotnet import PilotNet
from ..tasks.steering import SteeringTask
from ._kit import Recipe, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("A CNN maps raw camera frames straight to steering; trained with shifted and rotated views labelled with the "
         "corrective steering, it drives autonomously ~98% of the time (Bojarski et al., 2016, Sec. 5.2 and 7).")


@dataclass
class Config:
    train_size: int = 1500
    test_size: int = 400
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=16, optimizer="adam", lr=1e-3,
                                                          weight_decay=0.0, schedule="constant"))
    drive_steps: int = 400  # closed loop: 10 Hz at 10 m/s, so 40 s and 400 m of road
    lookahead: float = 20.0  # metres to the point the corrective steering aims at (2 s at 10 m/s)
    actuation_noise: float = 0.003  # closed loop: s.d. of the error of the executed arc (1/m), what makes cars drift
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(train_size=32, test_size=16, recipe=dict(epochs=1, batch_size=16), drive_steps=20, seeds=(0,))
FULL = dict(train_size=40000, test_size=4000, recipe=dict(epochs=20), drive_steps=6000, seeds=(0, 1, 2))


def winding_road(steps: int, seed: int, max_kappa: float = 0.012) -> torch.Tensor:
    """Curvature per metre of a road of constant-curvature pieces 40-120 m long."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    out = []
    while len(out) < steps:
        length = int(torch.randint(40, 121, (1,), generator=gen))
        out += [float((torch.rand(1, generator=gen) * 2 - 1) * max_kappa)] * length
    return torch.tensor(out[:steps])


def run(cfg: Config, out: Path) -> Report:
    test = RoadDataset("test", size=cfg.test_size, seed=0, augment=True, lookahead=cfg.lookahead)
    data = {aug: RoadDataset("train", size=cfg.train_size, seed=0, augment=aug, lookahead=cfg.lookahead) for aug in (True, False)}
    task = SteeringTask()
    road: dict[int, torch.Tensor] = {}
    loops: dict[str, list[dict]] = {"augmented": [], "centred only": []}

    def arm(aug: bool):
        label = "augmented" if aug else "centred only"

        def one(seed: int):
            model = seeded(seed, PilotNet)
            r = fit(f"pilotnet_{label}", model, data[aug], test, seed=seed, recipe=cfg.recipe, task=task,
                    eval_every=cfg.recipe.epochs)
            model.eval()
            kappas = road.setdefault(seed, winding_road(cfg.drive_steps, seed))
            loops[label].append(drive(lambda x: model(x)[0, 0], kappas, torch.Generator().manual_seed(seed),
                                      actuation_noise=cfg.actuation_noise))
            return r
        return one

    runs = run_arms({"augmented": arm(True), "centred only": arm(False)}, cfg.seeds)
    targets = torch.cat([data[True][i][1] for i in range(len(data[True]))])
    test_y = torch.cat([test[i][1] for i in range(len(test))])
    constant = float(((test_y - targets.mean()) ** 2).mean().sqrt()) * 1000
    rmse = {k: [r.metrics["val_rmse"] * 1000 for r in v] for k, v in runs.items()}
    auto = {k: [lp["autonomy"] for lp in v] for k, v in loops.items()}
    decision = all_of([
        beats(rmse["augmented"], [constant] * len(cfg.seeds), a_name="PilotNet", b_name="training mean",
              metric="steering RMSE (1/km)", lower_is_better=True, margin=0.1 * constant,
              claim="open loop, PilotNet's steering from pixels beats a constant by over 10%"),
        beats(auto["augmented"], auto["centred only"], a_name="with shifted/rotated views", b_name="centred views only",
              metric="autonomy (%)", claim="closed loop, the augmented PilotNet drives more autonomously"),
    ], claim="steering from pixels alone, and recovery learned from shifted and rotated views")
    rows = [{"training views": k, "open-loop RMSE (1/km)": spread(rmse[k], 2), "autonomy (%)": spread(auto[k], 1),
             "interventions": per_seed([lp["interventions"] for lp in loops[k]], 0),
             "mean |offset| (m)": spread([lp["mean_offset_m"] for lp in loops[k]], 2)} for k in runs]
    rows.append({"training views": "constant (training mean)", "open-loop RMSE (1/km)": f"{constant:.2f}",
                 "autonomy (%)": "", "interventions": "", "mean |offset| (m)": ""})
    figures = [plots.bars(out, "autonomy.png", auto, "closed-loop autonomy on a winding road", ylabel="autonomy (%)"),
               plots.bars(out, "steering_rmse.png", {**rmse, "constant": [constant]}, "open-loop steering error",
                          ylabel="RMSE of 1/r (1/km)")]
    return Report(
        slug="pilotnet", claim=CLAIM,
        setup=(f"PilotNet (252,219 weights) on {cfg.train_size} rendered 66x200 YUV frames of a two-lane road (curvature up "
               f"to 1/67 m, random lane width, lighting, colour casts, shadows), {cfg.recipe.describe()}, seeds "
               f"{list(cfg.seeds)}. 'Augmented': every frame seen from a viewpoint shifted up to 1 m and rotated up to "
               f"0.08 rad, labelled with the pure-pursuit correction to the lane centre {cfg.lookahead:g} m ahead; 'centred "
               f"only': the car always centred and aligned, labelled with the road's curvature. Open loop: RMSE of 1/r on "
               f"{cfg.test_size} held-out shifted/rotated frames. Closed loop: {cfg.drive_steps} steps of 0.1 s at 10 m/s on "
               f"a road of constant-curvature pieces, the executed arc off by N(0, {cfg.actuation_noise:g}) 1/m (actuation "
               "noise, the same draws for both arms); leaving the lane centre by more than 1 m is an intervention (the car "
               "is put back); autonomy = (1 - 6 s x interventions / elapsed) x 100."),
        columns=["training views", "open-loop RMSE (1/km)", "autonomy (%)", "interventions", "mean |offset| (m)"],
        rows=rows, decision=decision,
        differences=["Rendered roads with exact geometry instead of 72 hours of recorded driving and viewpoint "
                     "transforms of real frames; the simulator renders the true pose instead of warping recorded video.",
                     f"{cfg.drive_steps / 10:g} s of closed-loop driving per model instead of hours; the same road for both arms "
                     "of a seed."],
        figures=figures, results={"rmse_per_km": rmse, "constant_rmse_per_km": constant, "closed_loop": loops})
