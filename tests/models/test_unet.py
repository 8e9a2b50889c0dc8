"""U-Net (arXiv 1505.04597): the valid network maps 572 to 388 through the sizes of Fig. 1 and has the parameters
Fig. 1's layers give by hand (31.0M); eq. 2's weight map against a hand computation on a two-cell image; eq. 1's
weighted loss; overlap-tile against the valid net on a mirrored input; the elastic deformation's statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import n_params

import paperzoo as pz
from paperzoo.errors import PaperzooError
from paperzoo.models.segmentation.unet import ElasticDeform, class_balance, weight_map, weighted_cross_entropy


@pytest.mark.paper("unet")
def test_valid_net_maps_572_to_388_through_fig1_sizes(record_property) -> None:
    """572x572 in, 388x388 out; the contracting path's maps are 568, 280, 136, 64 and the bottom 28 (Fig. 1)."""
    with torch.device("meta"):
        model = pz.create_model("unet", tile=False)
        sizes = []
        for block in model.down:
            block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
        out = model(torch.empty(1, 1, 572, 572))
    record_property("output_size", out.shape[-1])
    assert out.shape == (1, 2, 388, 388)
    assert sizes == [568, 280, 136, 64, 28]
    assert model.output_size(572) == 388 and model.input_size_for(388) == 572


@pytest.mark.paper("unet")
def test_parameters_are_fig1_counted_by_hand(record_property) -> None:
    """31,030,658 parameters: Fig. 1's layers counted by hand (3x3 convs, 2x2 up-convs, concatenations, 1x1 head)."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    down = conv(3, 1, 64) + conv(3, 64, 64) + sum(conv(3, c // 2, c) + conv(3, c, c) for c in (128, 256, 512, 1024))
    up = sum(conv(2, c, c // 2) + conv(3, c, c // 2) + conv(3, c // 2, c // 2) for c in (1024, 512, 256, 128))
    expected = down + up + conv(1, 64, 2)
    with torch.device("meta"):
        count = n_params(pz.create_model("unet"))
    record_property("params", count)
    assert count == expected == 31_030_658


@pytest.mark.paper("unet")
def test_weight_map_two_cells_by_hand(record_property) -> None:
    """Two 3x3 cells in a 7x12 image, two background columns apart: eq. 2 at chosen pixels, by hand."""
    inst = np.zeros((7, 12), np.int64)
    inst[2:5, 2:5] = 1  # cell 1: columns 2-4
    inst[2:5, 7:10] = 2  # cell 2: columns 7-9; background columns 5 and 6 between them
    w = weight_map(inst, w0=10, sigma=5)
    fg, bg = 18, 7 * 12 - 18
    wc_fg, wc_bg = 84 / (2 * fg), 84 / (2 * bg)  # each class carries half the total weight
    border = lambda d1, d2: 10 * math.exp(-((d1 + d2) ** 2) / (2 * 25))  # noqa: E731
    expected = {
        (3, 5): wc_bg + border(1, 2),  # next to cell 1 (1 px), cell 2 two columns on
        (3, 6): wc_bg + border(1, 2),
        (0, 0): wc_bg + border(math.hypot(2, 2), math.hypot(2, 7)),  # the corner: to (2, 2) and to (2, 7)
        (3, 3): wc_fg,  # inside a cell: class weight only
    }
    got = {p: float(w[p]) for p in expected}
    record_property("weights", str({str(k): round(v, 4) for k, v in got.items()}))
    for p, e in expected.items():
        assert abs(got[p] - e) < 1e-5, (p, got[p], e)
    assert abs(class_balance((inst > 0).astype(int)).sum() - 84) < 1e-9
    one = weight_map(np.where(inst == 2, 0, inst))  # a single cell: no border term
    assert np.allclose(one, class_balance((one * 0 + (inst == 1)).astype(int)))


@pytest.mark.paper("unet")
def test_weighted_cross_entropy_is_eq1(record_property) -> None:
    """Eq. 1: sum over pixels of w(x) log p_l(x) (mean here), ignored pixels left out."""
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 5, generator=g), torch.randint(0, 3, (2, 4, 5), generator=g)
    weights = torch.rand(2, 4, 5, generator=g) * 5
    target[0, 0, 0] = 255
    logp = logits.log_softmax(1)
    keep = target != 255
    picked = logp.gather(1, target.clamp(max=2)[:, None])[:, 0]
    expected = -(weights * picked)[keep].sum() / keep.sum()
    got = weighted_cross_entropy(logits, target, weights)
    record_property("abs_err", float((got - expected).abs()))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.paper("unet")
def test_overlap_tile_is_the_valid_net_on_a_mirrored_input(record_property) -> None:
    """Overlap-tile on a 100x100 image equals the valid net applied to the image mirrored outward (numpy's
    reflection) by the margin, cut to the image."""
    torch.manual_seed(0)
    model = pz.create_model("unet", base=4).eval()
    x = torch.randn(1, 1, 100, 100)
    size = model.input_size_for(100)
    margin = (size - model.output_size(size)) // 2
    assert margin == 92
    mirrored = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (92, size - 192), (92, size - 192)), mode="reflect"))
    with torch.no_grad():
        expected = model.forward_valid(mirrored)[..., :100, :100]
        got = model(x)
    err = float((got - expected).abs().max())
    record_property("max_abs_err", err)
    assert got.shape == (1, 2, 100, 100) and err < 1e-5
    with torch.no_grad():  # smaller than the margin: mirrored repeatedly, still one output per pixel
        assert model(torch.randn(1, 1, 20, 31)).shape == (1, 2, 20, 31)


@pytest.mark.paper("unet")
def test_elastic_deformation_statistics(record_property) -> None:
    """Displacements at the 3x3 grid's nodes have a 10 px standard deviation, vary smoothly in between, and images
    and label maps move together; sigma 0 is the identity."""
    deform = ElasticDeform(sigma=10, grid=3)
    g = torch.Generator().manual_seed(0)
    h = w = 33
    grid = deform.field(400, h, w, g)
    base = ElasticDeform(sigma=0).field(1, h, w)
    disp = (grid - base) * (w - 1) / 2  # back to pixels
    nodes = disp[:, ::16, ::16]  # the 3x3 lattice: pixels 0, 16, 32
    std = float(nodes.std())
    record_property("node_displacement_std_px", std)
    assert abs(std - 10) < 0.5
    step = float((disp[:, 1:] - disp[:, :-1]).abs().mean())
    assert step < 1.5  # neighbouring pixels move almost alike
    img = torch.zeros(2, 1, h, w)
    img[:, :, 10:23, 10:23] = 1
    masks = img[:, 0].long()
    moved, moved_masks = deform(img, masks, torch.Generator().manual_seed(1))
    assert moved_masks.dtype == torch.long and set(moved_masks.unique().tolist()) <= {0, 1}
    assert float(((moved[:, 0] > 0.5).long() != moved_masks).float().mean()) < 0.02
    same, same_masks = ElasticDeform(sigma=0)(img, masks)
    assert torch.allclose(same, img, atol=1e-5) and torch.equal(same_masks, masks)


def test_padded_variant_and_bad_sizes() -> None:
    model = pz.create_model("unet", base=2, padding=True)
    assert model(torch.randn(1, 1, 48, 64)).shape == (1, 2, 48, 64)
    with pytest.raises(PaperzooError, match="cannot be max-pooled"):
        model(torch.randn(1, 1, 50, 64))
    with pytest.raises(PaperzooError, match="does not take"):
        pz.create_model("unet", widht=3)


def test_train_through_the_cli(tmp_path) -> None:
    import json

    from paperzoo.cli import main

    main(["train", "--model", "unet", "--data", "shapes", "--epochs", "1", "--batch-size", "4", "data.image_size=32",
          "data.size=8", "data.val_size=4", "model_args.base=4", "model_args.in_chans=3", "--out", str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "val_miou" in [r for r in rows if r["kind"] == "epoch"][-1]
