"""The shared heatmap codec (Gaussian targets, quarter-pixel decoding, flip test, top-down crops) and the pose task."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.models.pose import _heatmap as hm


def test_gaussian_target_is_the_unnormalised_gaussian_at_the_rounded_pixel() -> None:
    """Stride 4, sigma 2: a keypoint at region (21.0, 13.0) is heatmap (4.75, 2.75) -> pixel (5, 3); the value at
    pixel (x, y) is exp(-((x - 5)^2 + (y - 3)^2) / 8); unlabelled or off-map keypoints get weight 0."""
    pts = torch.tensor([[[21.0, 13.0], [5.0, 5.0], [200.0, 5.0]]])
    vis = torch.tensor([[2, 0, 2]])
    heat, w = hm.encode(pts, vis, (16, 12), stride=4, sigma=2.0)
    assert w.tolist() == [[1.0, 0.0, 0.0]]
    assert heat[0, 0, 3, 5] == 1.0
    assert torch.isclose(heat[0, 0, 4, 7], torch.exp(torch.tensor(-(4 + 1) / 8.0)))
    assert heat[0, 1:].abs().sum() == 0


@pytest.mark.paper("hourglass")
def test_decoding_moves_a_quarter_pixel_towards_the_higher_neighbour(record_property) -> None:
    """Newell et al. (Sec. 4) and HRNet: the arg-max plus 0.25 towards the larger neighbour in x and y; at the
    border (x <= 1) no shift. A continuous Gaussian at (5.3, 4.8) decodes to (5.25, 4.75)."""
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    blob = torch.exp(-((xs - 5.3) ** 2 + (ys - 4.8) ** 2) / 2)
    edge = torch.exp(-((xs - 1.2) ** 2 + (ys - 4.8) ** 2) / 2)
    coords, score = hm.decode(torch.stack([blob, edge])[None])
    record_property("decoded", coords[0].tolist())
    assert coords[0, 0].tolist() == [5.25, 4.75]
    assert coords[0, 1].tolist() == [1.0, 4.75]  # x = 1: no shift along x
    assert torch.allclose(score[0], torch.stack([blob.max(), edge.max()]))
    exact, _ = hm.decode(torch.stack([blob, edge])[None], shift=0.0)
    assert exact[0, 0].tolist() == [5.0, 5.0]


def test_quarter_shift_lowers_the_error_of_blurred_heatmaps() -> None:
    """On Gaussians at random sub-pixel positions the shifted arg-max is closer on average than the plain one."""
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(200, 2, generator=g) * 8 + 3
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    heat = torch.exp(-((xs - mu[:, 0, None, None]) ** 2 + (ys - mu[:, 1, None, None]) ** 2) / 4)[None]
    shifted, _ = hm.decode(heat)
    plain, _ = hm.decode(heat, shift=0.0)
    assert (shifted[0] - mu).norm(dim=-1).mean() < 0.8 * (plain[0] - mu).norm(dim=-1).mean()


def test_flip_test_swaps_left_and_right() -> None:
    """Targets of the mirrored keypoints (x -> W - x, left and right swapped) brought back by ``flip_heatmaps``
    equal the targets of the original keypoints; ``flip_test`` of that oracle gives the plain heatmaps."""
    size, stride = (64, 48), 4
    pts = torch.tensor([[[10.3, 20.0], [30.9, 22.0], [25.0, 50.0]]])  # no x on a rounding tie (x / 4 - 0.5 = k + 0.5)
    vis = torch.full((1, 3), 2)
    flip_index = [1, 0, 2]  # keypoint 0 (left) becomes 1 (right) in the mirror image
    mirrored = pts.clone()
    mirrored[..., 0] = size[1] - mirrored[..., 0]
    mirrored = mirrored[:, flip_index]
    hs = (size[0] // stride, size[1] // stride)
    plain, _ = hm.encode(pts, vis, hs, stride)
    flipped, _ = hm.encode(mirrored, vis, hs, stride)
    assert torch.equal(hm.flip_heatmaps(flipped, flip_index), plain)
    assert not torch.equal(hm.flip_heatmaps(flipped, [0, 1, 2]), plain)
    oracle = {0: plain, 1: flipped}
    calls = []

    def forward(x):
        calls.append(x)
        return oracle[len(calls) - 1]

    x = torch.randn(1, 3, *size)
    assert torch.equal(hm.flip_test(forward, x, flip_index), plain)
    assert torch.equal(calls[1], x.flip(-1))


def test_shapes_flip_index_mirrors_corners() -> None:
    """The triangle's apex stays and its base corners swap, the square's right corners swap with its left ones; the arrow (pointing
    right) has no mirror image among the scenes' shapes: -1, no flip test for it."""
    cats = ("__background__", "triangle", "arrow", "square")
    idx = hm.shapes_flip_index(cats, torch.tensor([1, 2, 3]), 8)
    assert idx[0, :3].tolist() == [0, 2, 1] and idx[1, :3].tolist() == [-1, -1, -1] and idx[2, :4].tolist() == [3, 2, 1, 0]
    assert idx[[0, 2], 4:].tolist() == [[4, 5, 6, 7]] * 2


def test_top_down_crop_follows_the_keypoints() -> None:
    """A bright pixel inside a box is found in the crop where ``to_region`` puts it, and ``from_region`` inverts."""
    img = torch.zeros(3, 80, 100)
    img[:, 30, 41] = 1.0  # pixel (41, 30), centre (41.5, 30.5)
    box = torch.tensor([[30.0, 20.0, 60.0, 50.0]])
    region = hm.box_to_region(box, (64, 48))
    w, h = (region[0, 2:] - region[0, :2]).tolist()
    assert abs(w / h - 48 / 64) < 1e-6 and abs(h - 1.25 * 40) < 1e-4  # grown to 3:4, then padded by 1.25
    c = hm.crop([img], [region], (64, 48))
    y, x = divmod(int(c[0, 0].argmax()), 48)
    p = hm.to_region(torch.tensor([[[41.5, 30.5]]]), region, (64, 48))[0, 0]
    assert abs(x + 0.5 - p[0]) <= 1.0 and abs(y + 0.5 - p[1]) <= 1.0
    back = hm.from_region(p[None, None], region, (64, 48))
    assert torch.allclose(back, torch.tensor([[[41.5, 30.5]]]), atol=1e-5)


def test_heatmap_loss_is_joints_mse_with_intermediate_supervision() -> None:
    t = torch.rand(2, 3, 4, 4)
    w = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    o = torch.rand(2, 3, 4, 4)
    one = hm.heatmap_loss(o, t, w)
    assert torch.isclose(one, 0.5 * ((o - t) ** 2 * w[..., None, None]).mean())
    assert torch.isclose(hm.heatmap_loss([o, o], t, w), 2 * one)


def test_pose_task_trains_and_scores_oks_ap_and_pck() -> None:
    """A few Trainer steps of a pose net on the scenes' corners: finite loss, OKS AP (pycocotools) and PCK."""
    from paperzoo.tasks import get_task
    from paperzoo.train import TrainConfig, Trainer

    tr = ShapesDataset("train", size=8, kind="keypoints", image_size=64, rotate=False)
    te = ShapesDataset("val", size=4, kind="keypoints", image_size=64, rotate=False)
    torch.manual_seed(0)
    model = pz.create_model("pose_hrnet_w32", num_keypoints=8, input_size=(32, 32))
    task = get_task("pose", sigmas=tr.keypoint_sigmas, categories=tr.categories, flip=True)
    cfg = TrainConfig(model="pose_hrnet_w32", epochs=1, batch_size=4, lr=1e-3, optimizer="adam", log_every=10**9)
    row = Trainer(model, tr, te, cfg, task=task, quiet=True).fit()[-1]
    assert torch.isfinite(torch.tensor(row["train_loss"]))
    assert {"val_kp_map", "val_kp_map_50", "val_pck"} <= set(row) and 0 <= row["val_pck"] <= 1


def test_cli_train_and_predict_draws_keypoints(tmp_path: Path, capsys) -> None:
    from paperzoo.cli import main

    run = tmp_path / "run"
    main(["train", "--model", "pose_hrnet_w32", "--data", "shapes", "--epochs", "1", "--batch-size", "4", "--out", str(run),
          "data.size=4", "data.val_size=2", "model_args.input_size=[32,32]", "log_every=1"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_kp_map" in rows[-1]
    scene = tmp_path / "scene.png"
    image, _ = ShapesDataset("val", size=1, kind="keypoints", image_size=64)[0]
    Image.fromarray((image * 255).byte().permute(1, 2, 0).numpy()).save(scene)
    capsys.readouterr()
    main(["predict", "--model", "pose_hrnet_w32", "--weights", str(run / "model.safetensors"), "--image", str(scene),
          "--out", str(tmp_path / "p.png"), "--score-threshold", "0"])
    with Image.open(tmp_path / "p.png") as drawn:
        assert drawn.size == (64, 64)


def test_flip_index_from_coco_names() -> None:
    from paperzoo.tasks.pose import flip_index_from_names

    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder"]
    assert flip_index_from_names(names) == [0, 2, 1, 4, 3, 6, 5]


@pytest.mark.slow
def test_a_users_coco_keypoint_json_trains_as_is(tmp_path: Path) -> None:
    """The scenes written as a COCO keypoints json train the pose task from the command line (8 keypoints, no sigmas
    in the file: the default OKS constant)."""
    from paperzoo.cli import main
    from paperzoo.data.coco import export_coco

    path = export_coco(ShapesDataset("train", size=6, kind="keypoints", image_size=64, rotate=False), tmp_path / "coco")
    run = tmp_path / "run"
    main(["train", "--model", "pose_hrnet_w32", "--data", str(path), "--epochs", "1", "--batch-size", "3", "--out", str(run),
          "model_args.input_size=[32,32]"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_kp_map" in rows[-1] and "val_pck" in rows[-1]


def test_a_crop_size_the_strides_do_not_divide_is_one_clear_error(tmp_path: Path, capsys) -> None:
    from paperzoo.cli import main

    with pytest.raises(pz.PaperzooError, match="multiples of 32"):
        pz.create_model("pose_hrnet_w32", input_size=(50, 50))
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model", "hourglass_2stack", "--data", "shapes", "--out", str(tmp_path / "r"),
              "model_args.input_size=[40,40]"])
    assert exit_.value.code == 2 and "multiples of 64" in capsys.readouterr().err
