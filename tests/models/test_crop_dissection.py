"""Dissecting Image Crops: the lens model against its analytic form, the crop/patch layout and its labels, the loss
equation and the model's output layout, on hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.models.applications.crop_dissection import (
    chromatic_aberration,
    crop_loss,
    crop_sample,
    lens_traces,
    vignette_gain,
)


@pytest.mark.paper("crop-dissection")
def test_vignette_is_the_six_degree_polynomial(record_property) -> None:
    """g(r) = s / (1 + 2.0625 r^2 + 8.75 r^4 + 0.0313 r^6) + 1 - s with r = distance of the pixel centre to the image
    centre over the half-diagonal: checked at a corner, an edge midpoint and next to the centre of a 96 x 64 frame."""
    h, w, s = 64, 96, 0.7
    gain = vignette_gain(h, w, s)
    half = math.hypot(h, w) / 2

    def g(row: int, col: int) -> float:
        r2 = ((row + 0.5 - h / 2) ** 2 + (col + 0.5 - w / 2) ** 2) / half**2
        return s / (1 + 2.0625 * r2 + 8.75 * r2**2 + 0.0313 * r2**3) + 1 - s

    worst = max(abs(float(gain[r, c]) - g(r, c)) for r, c in ((0, 0), (63, 95), (0, 48), (32, 48), (31, 47)))
    record_property("max_abs_err", worst)
    assert worst < 1e-6 and float(gain[0, 0]) < 0.4 and float(gain[32, 48]) > 0.999
    assert torch.allclose(gain, gain.flip(0)) and torch.allclose(gain, gain.flip(1))


@pytest.mark.paper("crop-dissection")
def test_chromatic_aberration_is_a_zoom_about_the_centre(record_property) -> None:
    """Channel c resampled at o + (x - o) / s_c: on a linear ramp (the horizontal position from the centre) the red
    channel magnified by 1.02 reads ramp / 1.02 and the blue by 0.98 reads ramp / 0.98 (bilinear sampling is exact on
    linear images), away from the borders; green is untouched."""
    h = w = 40
    ramp = (torch.arange(w, dtype=torch.float32) + 0.5 - w / 2).expand(h, w)
    img = ramp.expand(1, 3, h, w).contiguous()
    out = chromatic_aberration(img, (1.02, 1.0, 0.98))
    inner = (slice(None), slice(5, -5), slice(5, -5))
    errs = [float((out[0, 0] - ramp / 1.02)[inner[1:]].abs().max()), float((out[0, 2] - ramp / 0.98)[inner[1:]].abs().max()),
            float((out[0, 1] - ramp).abs().max())]
    record_property("max_abs_err", max(errs))
    assert max(errs) < 1e-4
    plain = torch.rand(2, 3, 16, 16)
    assert torch.allclose(lens_traces(plain, 0.0, 0.0), plain)


@pytest.mark.paper("crop-dissection")
def test_patches_and_labels_of_a_crop_by_hand() -> None:
    """A 96 px frame cropped to x 20-84, y 11-75, a 4 x 4 grid of 16 px patches: patch centres at x 28, 44, 60, 76 and
    y 19, 35, 51, 67 fall in the original frame's 24 px cells (1, 1, 2, 3) and (0, 1, 2, 2), so the location labels
    are row * 4 + column; the rectangle target is (20, 84, 11, 75) / 96 and the crop flag 1; the uncropped frame gives
    labels 0..15, rectangle (0, 1, 0, 1) and flag 0. Patches are the image's own pixels."""
    images = torch.rand(2, 3, 96, 96)
    rects = torch.tensor([[20, 84, 11, 75], [0, 96, 0, 96]])
    s = crop_sample(images, rects, grid=4, patch=16, global_size=32)
    cols, rows = [1, 1, 2, 3], [0, 1, 2, 2]
    assert s["locations"][0].tolist() == [r * 4 + c for r in rows for c in cols]
    assert s["locations"][1].tolist() == list(range(16))
    torch.testing.assert_close(s["rectangle"], torch.tensor([[20, 84, 11, 75], [0, 96, 0, 96]]) / 96.0)
    assert s["cropped"].tolist() == [1.0, 0.0]
    assert torch.equal(s["patches"][0, 6], images[0, :, 35 - 8:35 + 8, 60 - 8:60 + 8])  # row 1, column 2 of the crop
    assert s["patches"].shape == (2, 16, 3, 16, 16) and s["global"].shape == (2, 3, 32, 32)


@pytest.mark.paper("crop-dissection")
def test_loss_equation_and_output_layout() -> None:
    """loss = 0.15 x sum over the 16 patches of the batch-mean cross-entropy + 3 x MSE(rectangle) + BCE(crop logit);
    the model gives (B, 16, 16) location logits, a (B, 4) rectangle and (B,) crop logits."""
    model = pz.create_model("crop_locator", patch_backbone="small", global_backbone="small", width=4).eval()
    s = crop_sample(torch.rand(2, 3, 96, 96), torch.tensor([[20, 84, 11, 75], [0, 96, 0, 96]]), 4, 16, 32)
    out = model(s["patches"], s["global"])
    assert out["locations"].shape == (2, 16, 16) and out["rectangle"].shape == (2, 4) and out["crop_logit"].shape == (2,)
    loss, _ = crop_loss(out, s)
    ce = sum(F.cross_entropy(out["locations"][:, i], s["locations"][:, i]) for i in range(16))
    mse = ((out["rectangle"] - s["rectangle"]) ** 2).mean()
    p = torch.sigmoid(out["crop_logit"])
    bce = -(s["cropped"] * p.log() + (1 - s["cropped"]) * (1 - p).log()).mean()
    torch.testing.assert_close(loss, 0.15 * ce + 3.0 * mse + bce)
    with torch.device("meta"):
        full = pz.create_model("crop_locator")
        assert full(torch.empty(1, 16, 3, 96, 96), torch.empty(1, 3, 224, 224))["locations"].shape == (1, 16, 16)
