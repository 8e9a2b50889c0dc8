"""Matting metrics on hand cases (SAD, MSE, gradient, connectivity), and MODNet through ``paperzoo train``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from paperzoo.tasks.matting import connectivity_error, gradient_error, mse, sad


@pytest.mark.paper("modnet")
def test_matting_metrics_by_hand(record_property) -> None:
    """SAD and MSE of a 0.5 offset on 10 pixels; the gradient error of a ramp against a flat matte (slope^2 per
    interior pixel); the connectivity error of a detached 0.5 blob (|0.5 - 1| once)."""
    true = np.zeros((2, 8, 8))
    true[:, 2:6, 2:6] = 1
    pred = true.copy()
    pred[0, 0, :8] = 0.5  # image 0: a detached row of 8 pixels at 0.5
    pred[0, 7, 0:2] = 0.5  # and 2 more pixels: 10 in all
    assert np.allclose(sad(pred, true), [10 * 0.5 / 1000, 0])
    assert np.allclose(mse(pred, true), [10 * 0.25 / 64, 0])
    blob = true.copy()
    blob[0, 0, 7] = 0.5
    conn = connectivity_error(blob, true)
    record_property("connectivity_blob", float(conn[0] * 1000))
    assert np.allclose(conn * 1000, [0.5, 0.0])
    ramp = np.tile(np.arange(32.0) * 0.01, (1, 32, 1))  # slope 0.01 per pixel along x
    flat = np.full_like(ramp, 0.2)
    g = gradient_error(ramp, flat) * 1000
    from scipy.ndimage import gaussian_gradient_magnitude

    interior = gaussian_gradient_magnitude(ramp[0], 1.4)[8:-8, 8:-8]
    assert np.allclose(interior, 0.01, atol=1e-6)  # a linear ramp's Gaussian-derivative gradient is its slope
    assert g[0] >= 16 * 16 * 0.01**2 * 0.99  # at least the interior's share
    assert gradient_error(flat, flat)[0] == 0.0


def test_connectivity_handles_several_images_and_components() -> None:
    """Per image, only its own largest component counts (labels never join across images)."""
    true = np.zeros((2, 6, 6))
    true[0, :3, :3] = 1
    true[0, 4:, 4:] = 1  # a second, smaller component in image 0
    true[1, :, :] = 1
    got = connectivity_error(true.copy(), true)
    assert np.allclose(got, 0.0)
    pred = true.copy()
    pred[0, 4:, 4:] = 0.5  # the small component, predicted at 0.5: its pixels leave omega at the first step
    assert connectivity_error(pred, true)[0] * 1000 == pytest.approx(4 * 0.5)


def test_modnet_predict_draws_the_matte(tmp_path, capsys) -> None:
    """``paperzoo train`` runs MODNet's three losses and reports the four matting errors; ``paperzoo predict`` writes
    the image and its matte side by side."""
    from PIL import Image

    from paperzoo.cli import main
    from paperzoo.data import ShapesDataset

    run = tmp_path / "run"
    main(["train", "--model", "modnet", "--data", "shapes", "--epochs", "1", "--batch-size", "4", "data.image_size=64",
          "data.size=4", "data.val_size=4", "model_args.width=0.35", "model_args.hr_channels=8", "--out", str(run)])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"val_sad", "val_mse", "val_grad", "val_conn"} <= set([r for r in rows if r["kind"] == "epoch"][-1])
    image, _ = ShapesDataset("val", size=1, kind="detection", image_size=64)[0]
    Image.fromarray((image * 255).byte().permute(1, 2, 0).numpy()).save(tmp_path / "scene.png")
    main(["predict", "--model", "modnet", "--weights", str(run / "model.safetensors"), "--image",
          str(tmp_path / "scene.png"), "--out", str(tmp_path / "matte.png")])
    with Image.open(tmp_path / "matte.png") as drawn:
        assert drawn.size == (128, 64)
