"""YOLOv2 (arXiv 1612.08242): Darknet-19's 5.58 billion operations at 224 px and its 19 conv / 5 pool layout
(Table 6); the detector's 13 x 13 x 125 output at 416 px and 19 x 19 x 125 at 608 px, the passthrough's 26 x 26 x 512
-> 13 x 13 x 2048; the k-means distance 1 - IoU by hand and k-means' fixed point; direct location prediction
(bounded centres, exp sizes on the priors); the region loss on a hand-made case; multi-scale training sizes; lightnet
(PyPI, test-only) as the oracle for Darknet-19 and for the released cfg's YOLOv2 (Darknet's reorg included)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import paperzoo as pz
from paperzoo.cost import macs
from paperzoo.models.detection.yolov2 import decode_region, iou_wh, kmeans_anchors, mean_best_iou, region_loss


@pytest.mark.paper("yolov2")
def test_darknet19_operations_and_layers(record_property) -> None:
    """5.58 billion operations (a multiply-add counted as two) at 224 x 224; 19 conv layers and 5 max pools."""
    with torch.device("meta"):
        model = pz.create_model("darknet19")
        ops = 2 * macs(model, 224) / 1e9
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    record_property("gflops_at_224", ops)
    assert abs(ops - 5.58) / 5.58 < 0.005, ops
    assert len(convs) == 19 and sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert [c.kernel_size[0] for c in convs].count(1) == 7  # six 1x1 reductions and the 1x1 classifier


@pytest.mark.paper("yolov2")
def test_output_shapes_and_passthrough(record_property) -> None:
    """13 x 13 x 5(5 + 20) at 416 px, 19 x 19 x 125 at 608 px; the passthrough turns 26 x 26 x 512 into
    13 x 13 x 2048, joined to the 1024 channels before the second-to-last conv (the cfg's variant: 64 -> 256)."""
    seen = {}
    with torch.device("meta"):
        model = pz.create_model("yolov2")
        model.head2.register_forward_hook(lambda m, i, o: seen.__setitem__("joined", i[0].shape))
        model.stage1.register_forward_hook(lambda m, i, o: seen.__setitem__("fine", o.shape))
        out416 = model(torch.empty(1, 3, 416, 416))
        shapes = dict(seen)
        out608 = model(torch.empty(1, 3, 608, 608))
        cfg = pz.create_model("yolov2", passthrough_channels=64, num_classes=80)
        cfg.head2.register_forward_hook(lambda m, i, o: seen.__setitem__("joined_cfg", i[0].shape))
        out_cfg = cfg(torch.empty(1, 3, 416, 416))
    record_property("output_416", str(tuple(out416.shape)))
    assert tuple(out416.shape) == (1, 13, 13, 125) and tuple(out608.shape) == (1, 19, 19, 125)
    assert tuple(shapes["fine"]) == (1, 512, 26, 26) and tuple(shapes["joined"]) == (1, 1024 + 2048, 13, 13)
    assert tuple(seen["joined_cfg"]) == (1, 1024 + 256, 13, 13) and tuple(out_cfg.shape) == (1, 13, 13, 5 * 85)


@pytest.mark.paper("yolov2")
def test_kmeans_distance_and_fixed_point(record_property) -> None:
    """d = 1 - IoU of centre-aligned shapes by hand; k-means with that distance ends at its fixed point and finds
    three planted box shapes (tall, wide, square) within IoU 0.95."""
    d = 1 - iou_wh(torch.tensor([[2.0, 3.0], [1.0, 1.0]]), torch.tensor([[3.0, 2.0], [2.0, 2.0]]))
    # (2,3) vs (3,2): overlap 2 x 2 = 4, union 6 + 6 - 4 = 8; (1,1) vs (2,2): 1 / 4; (2,3) vs (2,2): 4 / 6
    torch.testing.assert_close(d, torch.tensor([[0.5, 1 - 4 / 6], [1 - 1 / 6, 0.75]]))
    g = torch.Generator().manual_seed(0)
    planted = torch.tensor([[0.1, 0.4], [0.4, 0.1], [0.2, 0.2]])  # tall, wide, square
    wh = (planted.repeat(100, 1) * (1 + 0.1 * torch.randn(300, 2, generator=g))).double()
    anchors = kmeans_anchors(wh, 3, seed=1).double()
    assign = (1 - iou_wh(wh, anchors)).argmin(1)
    for j in range(3):  # a fixed point: each centroid is the mean shape of the boxes nearest to it by 1 - IoU
        torch.testing.assert_close(anchors[j], wh[assign == j].mean(0), rtol=1e-5, atol=1e-6)
    found = iou_wh(planted.double(), anchors).amax(1)
    record_property("planted_shape_iou", found.min().item())
    assert (found > 0.95).all(), found
    assert mean_best_iou(wh, anchors) > mean_best_iou(wh, anchors[:1].repeat(3, 1))


@pytest.mark.paper("yolov2")
def test_direct_location_prediction() -> None:
    """b = sigma(t_xy) + c, p e^{t_wh}: zero outputs put each box at its cell's centre with its prior's size; any
    t_x keeps the centre inside its cell; t_w = log 2 doubles the width."""
    anchors = torch.tensor([[1.0, 2.0], [3.0, 1.5]])
    head = torch.zeros(1, 4, 4, 2 * (5 + 3))
    boxes, obj, probs, _ = decode_region(head, anchors)
    torch.testing.assert_close(boxes[0, 1, 2, 1], torch.tensor([2.5 / 4, 1.5 / 4, 3.0 / 4, 1.5 / 4]))
    assert torch.allclose(obj, torch.full_like(obj, 0.5)) and torch.allclose(probs.sum(-1), torch.ones(1, 4, 4, 2))
    head[..., 0] = 100.0  # t_x of anchor 0, huge
    head[..., 2] = math.log(2)
    boxes, *_ = decode_region(head, anchors)
    assert float(boxes[0, 3, 3, 0, 0]) <= 1.0 and float(boxes[0, 0, 1, 0, 0]) <= 2 / 4
    torch.testing.assert_close(boxes[0, 0, 0, 0, 2], torch.tensor(2.0 / 4))


def test_region_loss_by_hand() -> None:
    """One object on a 2 x 2 grid with zero outputs: it goes to the anchor of best shape; xy, wh, object and class
    terms by hand; every other prediction with IoU < 0.6 counts as no-object."""
    anchors = torch.tensor([[0.5, 0.5], [1.0, 1.6]])  # in cells; the object is 1.0 x 1.6 cells
    head = torch.zeros(1, 2, 2, 2 * (5 + 2), requires_grad=True)
    gt = torch.tensor([[0.5, 0.1, 1.0, 0.9]])  # centre (0.75, 0.5): cell (row 1, col 1), w 0.5 h 0.8 of the image
    losses = region_loss(head, anchors, torch.tensor([0]), gt, torch.tensor([1]))
    scale = 2 - 0.5 * 0.8
    # offsets in the cell: (1.5 - 1, 1.0 - 1) = (0.5, 0.0) against sigma(0) = 0.5
    assert abs(float(losses["loss_xy"].detach()) - scale * (0.0 + 0.25)) < 1e-6
    # log(1.0 / 1.0) and log(1.6 / 1.6): the prior fits exactly
    assert abs(float(losses["loss_wh"].detach())) < 1e-10
    # the prediction is the prior box at the cell centre (1.5, 1.5) cells: [1.0, 0.7, 2.0, 2.3] / 2 vs the object
    # [1.0, 0.2, 2.0, 1.8] / 2 (in cells): overlap 1.0 x 1.1, union 1.6 + 1.6 - 1.1
    iou = 1.1 / 2.1
    assert abs(float(losses["loss_obj"].detach()) - 5 * (0.5 - iou) ** 2) < 1e-6
    assert abs(float(losses["loss_class"].detach()) - (0.25 + 0.25)) < 1e-6
    assert abs(float(losses["loss_noobj"].detach()) - 7 * 0.25) < 1e-6  # 8 predictions, one responsible, none >= 0.6


def test_multiscale_training_sizes_and_detect() -> None:
    """In training the input size changes every 10 batches among 320, 352, ..., 608; eval stays at 416."""
    model = pz.create_model("yolov2", num_classes=3, width=1 / 32).train()
    sizes = []
    model.stage1.register_forward_pre_hook(lambda m, i: sizes.append(i[0].shape[-1]))
    target = [{"boxes": torch.tensor([[2.0, 2.0, 20.0, 30.0]]), "labels": torch.tensor([1])}]
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(30):
            model([torch.rand(3, 40, 50)], target)
    assert all(s in range(320, 609, 32) for s in sizes)
    assert len(set(sizes[:10])) == 1 and len(set(sizes)) > 1 and sizes[9] == sizes[0] and sizes[10] == sizes[19]
    dets = model.detect([torch.rand(3, 40, 50)])
    assert sizes[-1] == 416 and model.training and (dets[0]["boxes"][:, 2] <= 50).all()


@pytest.mark.paper("yolov2")
def test_passthrough_stacks_adjacent_features() -> None:
    """The passthrough moves each 2 x 2 block of the fine map into channels: channel 4c + 2i + j at (y, x) is fine
    channel c at (2y + i, 2x + j), concatenated before the coarse features."""
    model = pz.create_model("yolov2", num_classes=3, width=1 / 32).eval()
    seen = {}
    model.stage1.register_forward_hook(lambda m, i, o: seen.__setitem__("fine", o))
    model.head2.register_forward_pre_hook(lambda m, i: seen.__setitem__("joined", i[0]))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    fine, joined = seen["fine"], seen["joined"]
    c = fine.shape[1]
    for ch, i, j, y, x in [(0, 0, 0, 0, 0), (c - 1, 1, 0, 0, 1), (2, 1, 1, 1, 0), (5, 0, 1, 1, 1)]:
        assert float(joined[0, 4 * ch + 2 * i + j, y, x]) == float(fine[0, ch, 2 * y + i, 2 * x + j])
    assert joined.shape[1] == 4 * c + model.head1[-1][0].out_channels


def _lightnet():
    pytest.importorskip("brambox")  # lightnet imports it
    return pytest.importorskip("lightnet")


@pytest.mark.paper("yolov2")
def test_darknet_reorg_equals_lightnet_and_is_not_space_to_depth() -> None:
    """Darknet's reorg (ours from the C layer's index arithmetic) gives lightnet's ``Reorg(2)`` exactly, at the released
    cfg's 64 x 26 x 26 and on an odd small case; it is not ``pixel_unshuffle``, which the paper's description gives."""
    ln = _lightnet()
    from paperzoo.models.detection.yolov2 import darknet_reorg, space_to_depth

    for shape in [(2, 64, 26, 26), (1, 8, 4, 6)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        assert torch.equal(darknet_reorg(x), ln.network.layer.Reorg(2)(x))
        assert not torch.equal(darknet_reorg(x), space_to_depth(x))
    with pytest.raises(pz.errors.ConfigError):
        darknet_reorg(torch.zeros(1, 6, 4, 4))


@pytest.mark.paper("yolov2")
def test_darknet19_equals_lightnet(record_property) -> None:
    """lightnet's ``Darknet19`` (perturbed, BN in eval) loaded with ``source="lightnet"`` gives the same logits."""
    ln = _lightnet()
    from helpers import perturb_, rel_err

    torch.manual_seed(0)
    ref = perturb_(ln.models.Darknet19(10), seed=1).eval()
    ours = pz.load_weights(pz.create_model("darknet19", num_classes=10), ref.state_dict(), source="lightnet").eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        err = rel_err(ours(x), ref(x))
    record_property("rel_err_vs_lightnet", err)
    assert err < 1e-5, err


@pytest.mark.paper("yolov2")
def test_released_cfg_yolov2_equals_lightnet(record_property) -> None:
    """The released cfg's YOLOv2 (``passthrough_channels=64, reorg="darknet"``) loaded from lightnet's ``YoloV2``
    (perturbed) gives its raw head at 96 px (3 x 3 cells x 5 anchors x 25); with the paper's space-to-depth instead
    of the reorg the outputs differ, so the passthrough is exercised."""
    ln = _lightnet()
    from helpers import perturb_, rel_err

    torch.manual_seed(0)
    ref = perturb_(ln.models.YoloV2(20), seed=2).eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = ref(x).permute(0, 2, 3, 1)
        errs = {}
        for reorg in ("darknet", "space_to_depth"):
            ours = pz.create_model("yolov2", num_classes=20, passthrough_channels=64, reorg=reorg)
            ours = pz.load_weights(ours, ref.state_dict(), source="lightnet").eval()
            errs[reorg] = rel_err(ours(x), expected)
    record_property("rel_err_vs_lightnet", errs)
    assert expected.shape == (2, 3, 3, 125)
    assert errs["darknet"] < 1e-5 and errs["space_to_depth"] > 1e-3, errs


def test_priors_keep_their_image_fraction_at_every_input_size() -> None:
    """The priors are in cells of the built image_size's grid; at another input size (multi-scale training, or
    detecting after image_size was changed) a zero offset still gives the same box as a fraction of the image."""
    model = pz.create_model("yolov2", num_classes=3, width=0.125, image_size=128).eval()
    for size in (96, 128, 160):
        with torch.no_grad():
            head = model.head(torch.zeros(1, 3, size, size))
        boxes, *_ = decode_region(torch.zeros_like(head), model._anchors(head))
        assert head.shape[1] == size // 32
        assert torch.allclose(boxes[0, 0, 0, :, 2:], model.anchors_cells / 4)


@pytest.mark.paper("yolov2")
def test_region_loss_equals_lightnet_regionloss(record_property) -> None:
    """Our region loss against lightnet's ``RegionLoss`` (Darknet's region layer) on a random head, three images with
    one to three objects (two in the same cell): the coordinate terms (sigmoid offsets and log sizes weighted by
    2 - w h) and the objectness terms (IoU target for the responsible anchor, object scale 5, no-object below IoU
    0.6) agree up to lightnet's 1/2 of the squared error. The class term is left out: lightnet uses cross-entropy,
    Darknet (and ours) the squared error of the softmax. An ignore threshold of 0.2 or an object scale of 1 changes the objectness term."""
    ln = _lightnet()
    from paperzoo.models.detection.yolov2 import region_loss

    a, c, s, stride = 3, 4, 5, 32
    cells = torch.tensor([[1.0, 1.5], [2.5, 2.0], [4.0, 3.5]])
    ref = ln.network.loss.RegionLoss(c, ln.util.Anchors.from_darknet(stride, cells.tolist()), stride, class_scale=0.0)
    out = torch.randn(3, a * (5 + c), s, s, generator=torch.Generator().manual_seed(0)) * 0.8
    pad = [-1, 0, 0, 0, 0]
    gt = torch.tensor([[[0, 0.3, 0.4, 0.2, 0.3], [2, 0.71, 0.65, 0.5, 0.4], pad],
                       [[1, 0.5, 0.5, 0.6, 0.7], [3, 0.12, 0.81, 0.1, 0.15], [2, 0.9, 0.2, 0.15, 0.3]],
                       [[1, 0.44, 0.52, 0.3, 0.2], [0, 0.41, 0.58, 0.25, 0.35], pad]])
    ref(out, gt)
    valid = gt[..., 0] >= 0
    g, image = gt[valid], torch.arange(3)[:, None].expand(3, 3)[valid]
    xyxy = torch.cat([g[:, 1:3] - g[:, 3:5] / 2, g[:, 1:3] + g[:, 3:5] / 2], 1)
    head = out.permute(0, 2, 3, 1)
    ours = region_loss(head, cells, image, xyxy, g[:, 0].long())
    coord, conf = ours["loss_xy"] + ours["loss_wh"], ours["loss_obj"] + ours["loss_noobj"]
    errs = {"coord": abs(coord.item() / 2 - ref.loss_coord.item()) / ref.loss_coord.item(),
            "conf": abs(conf.item() / 2 - ref.loss_conf.item()) / ref.loss_conf.item()}
    record_property("rel_err_vs_lightnet", errs)
    assert errs["coord"] < 1e-5 and errs["conf"] < 1e-5, errs
    for planted in (dict(ignore_thresh=0.2), dict(object_scale=1.0)):
        wrong = region_loss(head, cells, image, xyxy, g[:, 0].long(), **planted)
        assert abs((wrong["loss_obj"] + wrong["loss_noobj"]).item() / 2 - ref.loss_conf.item()) > 1e-3, planted
