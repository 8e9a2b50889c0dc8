"""SWideRNet: the scaling rules, the SAC equation and the Panoptic-DeepLab merge, each on a hand-made case."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.errors import PaperzooError
from paperzoo.models.segmentation.swidernet import SAC, PanopticDeepLab, panoptic_merge, stage_config


@pytest.mark.paper("swidernet")
@pytest.mark.parametrize("w1,w2,depth,stem,stages", [
    (1, 1, 1, 64, [(128, 3), (256, 3), (512, 6), (1024, 3), (2048, 1)]),
    (0.25, 0.25, 0.75, 16, [(32, 2), (64, 2), (128, 5), (256, 2), (512, 1)]),
    (1, 0.5, 4.5, 64, [(128, 14), (128, 14), (256, 27), (512, 14), (1024, 5)]),
])
def test_scaling_rules_on_hand_computed_configs(w1, w2, depth, stem, stages, record_property) -> None:
    assert stage_config(w1, w2, depth) == (stem, stages)
    with torch.device("meta"):
        net = PanopticDeepLab(4, w1, w2, depth).backbone
    assert net.stem[0].out_channels == stem
    built = [(s[0].conv2.weight.shape[0], len(s)) for s in net.stages]
    assert built == stages
    record_property("stages", str(built))


@pytest.mark.paper("swidernet")
def test_sac_equation_on_a_constructed_input(record_property) -> None:
    torch.manual_seed(0)
    sac = SAC(3, 4, rate=3)
    with torch.no_grad():
        for p in sac.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(1, 3, 9, 9)
    xp = x + F.conv2d(x.mean((2, 3), keepdim=True), sac.pre.proj.weight, sac.pre.proj.bias)
    a = F.conv2d(xp, sac.weight, padding=1)
    b = F.conv2d(xp, sac.weight + sac.delta, padding=3, dilation=3)

    def post(y):
        return y + F.conv2d(y.mean((2, 3), keepdim=True), sac.post.proj.weight, sac.post.proj.bias)

    ones, zeros = torch.ones(1, 1, 9, 9), torch.zeros(1, 1, 9, 9)
    torch.testing.assert_close(sac(x, switch=ones), post(a))
    torch.testing.assert_close(sac(x, switch=zeros), post(b))
    mix = torch.rand(1, 1, 9, 9)
    torch.testing.assert_close(sac(x, switch=mix), post(mix * a + (1 - mix) * b))
    s = F.conv2d(F.avg_pool2d(xp, 5, 1, 2, count_include_pad=False), sac.switch.weight, sac.switch.bias)
    torch.testing.assert_close(sac(x), post(s * a + (1 - s) * b))
    err = (sac(x, switch=mix) - post(mix * a + (1 - mix) * b)).abs().max().item()
    assert err < 1e-5
    record_property("max_abs_err_blend", err)


@pytest.mark.paper("swidernet")
def test_panoptic_merge_on_two_hand_made_instances() -> None:
    h, w = 6, 12
    sem = torch.full((h, w), 2)  # stuff class 2
    sem[1:5, 1:5] = 1  # thing class 1, left object
    sem[1:5, 7:11] = 1  # right object
    sem[1, 1] = 3  # one pixel voted as thing class 3: the majority (class 1) wins
    centers = [(2, 2), (3, 9)]
    heat = torch.zeros(h, w)
    heat[2, 2], heat[3, 9], heat[2, 3] = 0.9, 0.8, 0.5  # (2, 3) is suppressed by NMS
    heat[0, 6] = 0.05  # below the threshold
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    left = gx < 6
    cy = torch.where(left, torch.tensor(float(centers[0][0])), torch.tensor(float(centers[1][0])))
    cx = torch.where(left, torch.tensor(float(centers[0][1])), torch.tensor(float(centers[1][1])))
    offset = torch.stack([cy - gy, cx - gx]).float()
    pan = panoptic_merge(sem, heat, offset, thing_ids=[1, 3], label_divisor=1000)
    expected = torch.full((h, w), 2000)
    expected[1:5, 1:5] = 1001
    expected[1:5, 7:11] = 1002
    assert torch.equal(pan, expected)
    logits = F.one_hot(sem, 4).permute(2, 0, 1).float()
    assert torch.equal(panoptic_merge(logits, heat[None], offset, thing_ids=[1, 3]), expected)


def test_model_outputs_train_through_the_segmentation_task_and_bad_arguments_fail() -> None:
    from paperzoo.tasks import get_task

    torch.manual_seed(0)
    model = PanopticDeepLab(3, 0.0625, 0.0625, 0.34, decoder=16, instance_decoder=8)
    images, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    out = model(images)
    assert out["out"].shape == (2, 3, 32, 32) and out["center"].shape == (2, 1, 32, 32)
    assert out["offset"].shape == (2, 2, 32, 32)
    loss, _ = get_task("segmentation", num_classes=3).loss(model, (images, masks))
    loss.backward()
    assert model.backbone.stages[-1][0].conv1.delta.grad is not None
    with pytest.raises(PaperzooError):
        pz.create_model("swidernet_0_25_0_25_0_75", bogus=1)


def test_train_through_the_cli(tmp_path) -> None:
    """``paperzoo train`` runs the smallest SWideRNet with the panoptic task (semantic + center + offset losses) and reports PQ and mean IoU."""
    import json

    from paperzoo.cli import main

    main(["train", "--model", "swidernet_0_25_0_25_0_75", "--data", "shapes", "--epochs", "1", "--batch-size", "4",
          "data.image_size=32", "data.size=8", "data.val_size=4", "model_args.decoder=16",
          "model_args.instance_decoder=8", "--out", str(tmp_path)])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "epoch"][-1]
    assert "val_miou" in last and 0 <= last["val_pq"] <= 1, last
    assert "loss_center" in str(rows) and "loss_offset" in str(rows)
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "swidernet_0_25_0_25_0_75", "--data", "shapes", "model_args.w9=3",
              "--out", str(tmp_path / "b")])
    assert e.value.code == 2


@pytest.mark.paper("swidernet")
def test_instance_targets_merge_back_and_pq_from_torchmetrics(record_property) -> None:
    """Targets of two squares: heat 1 at their centers, offsets to them; merged back they give PQ 1 (torchmetrics);
    with the second center missing both squares become one 41-px segment that matches the 25-px square (IoU 25/41
    > 0.5; the 16-px one is a false negative): things PQ (25/41) / (1 + 0.5), stuff PQ 1, PQ their mean."""
    from torchmetrics.detection import PanopticQuality

    from paperzoo.models.segmentation.swidernet import instance_losses, instance_targets

    masks = torch.zeros(2, 12, 16, dtype=torch.bool)
    masks[0, 2:6, 1:5] = True  # center of mass (3.5, 2.5)
    masks[1, 6:11, 9:14] = True  # center (8, 11)
    heat, offset, fg = instance_targets(masks, sigma=2.0)
    assert heat[8, 11] == 1 and heat[4, 2] == 1  # rounded centers
    assert torch.allclose(offset[:, 2, 1], torch.tensor([1.5, 1.5])) and torch.allclose(offset[:, 10, 13], torch.tensor([-2.0, -2.0]))
    assert torch.equal(fg, masks.any(0)) and offset[:, ~fg].abs().sum() == 0
    sem = fg.long()  # class 1 = thing, 0 = stuff

    def pq(pan: torch.Tensor) -> float:
        def pair(p):
            return torch.stack([p // 1000, p % 1000], -1)[None]
        gt = sem * 1000 + (masks[0] * 1 + masks[1] * 2)
        metric = PanopticQuality(things={1}, stuffs={0})
        return float(metric(pair(pan), pair(gt)))

    good = pq(panoptic_merge(sem, heat, offset, thing_ids=[1], threshold=0.5))
    lost = heat.clone()
    lost[5:, 8:] = 0
    bad = pq(panoptic_merge(sem, lost, offset, thing_ids=[1], threshold=0.5))
    record_property("pq_perfect", good)
    record_property("pq_one_center_lost", bad)
    assert good == pytest.approx(1.0) and bad == pytest.approx((25 / 41 / 1.5 + 1) / 2)
    out = {"center": heat[None, None], "offset": offset[None]}
    zero = instance_losses(out, heat[None], offset[None], fg[None])
    assert float(zero["center"]) == 0 and float(zero["offset"]) == 0
    shifted = instance_losses({"center": out["center"], "offset": out["offset"] + 2}, heat[None], offset[None], fg[None])
    assert float(shifted["offset"]) == pytest.approx(0.01 * 4)  # |2| + |2| per instance pixel, weight 0.01
