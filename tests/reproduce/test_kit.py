"""The reproduction kit's data views, augmentation, training run, cost and calibration helpers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paperzoo.errors import ConfigError
from paperzoo.reproduce._kit import (Data, FlipShift, Part, Repeated, background, calibration, fit, macs, match_cost,
                                     params, run_arms, seeded)
from paperzoo.tasks import ClassificationTask


def test_part_and_repeated_keep_the_wrapped_attributes(tiny_shapes) -> None:
    train, _ = tiny_shapes
    part = Part(train, 10)
    assert len(part) == 10 and part.num_classes == train.num_classes and part.mean == train.mean
    assert torch.equal(part[3][0], train[3][0])
    with pytest.raises(IndexError):
        part[10]
    rep = Repeated(part, 3)
    assert len(rep) == 30 and rep.classes == train.classes and torch.equal(rep[23][0], train[3][0])
    assert len(Part(train, None)) == len(train) and len(Part(train, 10**6)) == len(train)
    cycled = Repeated(part, length=25)  # a length that is no multiple of the set: exact step budgets
    assert len(cycled) == 25 and torch.equal(cycled[24][0], train[4][0])


def test_data_builds_the_splits_it_describes() -> None:
    data = Data("digits", image_size=8, train_size=100, test_size=None)
    train, test = data.splits()
    assert (len(train), len(test), train.num_classes, train[0][0].shape) == (100, 361, 10, (1, 8, 8))
    assert "100 real handwritten digits" in data.describe(train, test) and "361" in data.describe(train, test)
    assert len(data.validation()) == 179
    scenes = Data(image_size=16, train_size=20, test_size=10, preset="hard", scale=None, knobs={"max_objects": 2})
    train, test = scenes.splits()
    assert (len(train), len(test), train.config.max_objects, train.config.scale) == (20, 10, 2, (0.15, 0.4))
    assert "preset 'hard'" in scenes.describe() and "max_objects=2" in scenes.describe()
    assert scenes.splits(image_size=24)[0][0][0].shape == (3, 24, 24)
    with pytest.raises(Exception, match="dataset"):
        Data("mnist").splits()


def _translates(x: torch.Tensor, y: torch.Tensor, s: int, fill: float) -> bool:
    """Whether ``y`` is ``x`` (or its mirror image) moved by some offset within +-s, ``fill`` entering the border."""
    c, h, w = x.shape
    for img in (x, x.flip(-1)):
        padded = torch.full((c, h + 2 * s, w + 2 * s), fill)
        padded[:, s:s + h, s:s + w] = img
        for dy in range(2 * s + 1):
            for dx in range(2 * s + 1):
                if torch.equal(padded[:, dy:dy + h, dx:dx + w], y):
                    return True
    return False


def test_flip_shift_translates_each_image_with_the_fill() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 2, 7, 7)
    out, targets = FlipShift(2, flip=True, fill=-3.0)(images, torch.arange(6), g)
    assert out.shape == images.shape and torch.equal(targets, torch.arange(6))
    assert all(_translates(images[i], out[i], 2, -3.0) for i in range(6))
    assert (out == -3.0).any()  # some image was shifted, showing the fill
    again, _ = FlipShift(2, flip=True, fill=-3.0)(images, torch.arange(6), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the trainer's generator makes it reproducible
    same, _ = FlipShift(0, flip=False)(images, None, g)
    assert torch.equal(same, images)
    mirrored, _ = FlipShift(2, fill="reflect")(images, None, g)
    assert not (mirrored == -3.0).any() and mirrored.shape == images.shape
    with pytest.raises(ConfigError):
        FlipShift(7, fill="reflect")(images, None, g)  # reflection needs a larger image than the shift


def test_background_is_the_normalised_black_pixel(tiny_shapes) -> None:
    train, _ = tiny_shapes
    assert background(train) == pytest.approx((-2.0, -2.0, -2.0))  # (0 - 0.5) / 0.25


def test_fit_with_a_step_budget_repeats_a_small_set(tiny_shapes) -> None:
    train, test = tiny_shapes  # 64 training scenes
    model = seeded(0, lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8)))
    seen: list[int] = []
    run = fit("linear", model, train, test, steps=10, evals=2, batch_size=16, lr=0.1, optimizer="sgd",
              warmup_fraction=0.1, train_eval=Part(train, 16), callbacks=[lambda t, row: seen.append(t.step)])
    assert [row["step"] for row in run.history] == seen == [5, 10]  # 10 steps cut into 2 evaluations
    assert run.history[-1]["passes"] == pytest.approx(10 * 16 / 64)
    assert {"val_acc", "train_eval_acc", "train_loss"} <= set(run.metrics) and run.seed == 0
    assert run.params == params(model) == 3 * 16 * 16 * 8 + 8 and 0 <= run.acc <= 100
    with pytest.raises(ConfigError, match="unknown TrainConfig field 'learning_rate'"):
        fit("x", model, train, test, learning_rate=0.1)


def test_fit_applies_mixup_after_a_batch_transform(tiny_shapes) -> None:
    train, test = tiny_shapes
    calls, kinds = [], []

    class Recording(ClassificationTask):
        def loss(self, model, batch):
            kinds.append(batch[1].ndim)
            return super().loss(model, batch)

    def transform(images, targets, generator):
        calls.append(images.shape[0])
        return images, targets

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8))
    fit("mix", model, train, test, epochs=1, batch_size=32, batch_transform=transform, task=Recording(),
        overrides=["mixup.alpha=0.4"])
    assert calls == [32, 32] and set(kinds) == {2}  # our transform ran, then mixup turned labels soft


def test_run_arms_interleaves_seeds() -> None:
    order: list[tuple[str, int]] = []
    runs = run_arms({"a": lambda s: order.append(("a", s)) or s, "b": lambda s: order.append(("b", s)) or 10 + s}, (0, 1))
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1)] and runs == {"a": [0, 1], "b": [10, 11]}


def test_macs_and_match_cost() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
    assert macs(net, 5) == 3 * 4 * 9 * 25 + 4 * 25 * 2
    calls: list[float] = []

    def cost(c: float) -> float:
        calls.append(c)
        return c ** 2

    candidates = [float(k) for k in range(1, 101)]
    assert match_cost(50.0, candidates, cost) == 7.0  # 49 is closest to 50 on a log scale
    assert len(calls) < 12  # bisection, not a scan


def test_calibration_matches_the_binned_definition() -> None:
    g = torch.Generator().manual_seed(0)
    logits, labels = 3 * torch.randn(400, 8, generator=g), torch.randint(0, 8, (400,), generator=g)
    conf, pred = logits.softmax(1).max(1)
    ece = 0.0
    for lo in range(15):  # Guo et al.: 15 equal-width bins (lo/15, (lo+1)/15]
        inside = (conf > lo / 15) & (conf <= (lo + 1) / 15)
        if inside.any():
            ece += inside.float().mean() * (conf[inside].mean() - (pred[inside] == labels[inside]).float().mean()).abs()
    m = calibration(logits, labels)
    assert m["ece"] == pytest.approx(float(ece), abs=1e-6)
    assert m["acc"] == pytest.approx(float((pred == labels).float().mean()))
    assert m["nll"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)))
    assert not math.isnan(m["confidence"])


def test_every_figure_draws_with_one_and_several_seeds(tmp_path) -> None:
    from paperzoo.reproduce._kit import plots

    arms = {"one seed": [50.0], "three seeds": [60.0, 62.0, 61.0]}
    history = [{"epoch": e, "step": 10 * e, "time": 1.0, "val_acc": 0.1 * e, "train_loss": 1.0 / e} for e in (1, 2, 3)]
    g = torch.Generator().manual_seed(0)
    names = [
        plots.bars(tmp_path, "bars.png", arms, "bars"),
        plots.curves(tmp_path, "curves.png", {"a": history, "b": [history, history]}, "curves",
                     keys=[("val_acc", "acc (%)"), ("train_loss", "loss")], x="time"),
        plots.accuracy_vs_cost(tmp_path, "cost.png", {"s": [(1.0, [50.0], "x"), (2.0, [60.0, 61.0], "y")]}, "cost"),
        plots.lines(tmp_path, "lines.png", {"s": {0.1: [50.0], 1.0: [60.0, 61.0]}}, "lines", xlabel="lr", xscale="log"),
        plots.heatmap(tmp_path, "heat.png", {"g": [[1.0, 2.0], [3.0, 4.0]]}, ["a", "b"], ["c", "d"], "x", "y", "heat"),
        plots.reliability(tmp_path, "rel.png", {"m": (torch.randn(200, 8, generator=g), torch.randint(0, 8, (200,)))}),
    ]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
