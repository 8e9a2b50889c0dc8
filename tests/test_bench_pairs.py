"""``paperzoo bench --vs``: each pairing builds the reference with random weights, loads them into ours and times
both on the same inputs (the figures go to docs/benchmarks.md; nothing here is timed against a target)."""
import pytest
import torch

from paperzoo.bench import _dense_loss, bench, ratios
from paperzoo.errors import PaperzooError


def _check_pair(results, names, ref):
    assert [r.model for r in results] == [n for n in names for _ in (0, 1)]
    assert [r.impl for r in results] == ["paperzoo", ref] * len(names)
    for ours, theirs in zip(results[::2], results[1::2]):
        assert ours.params_m == theirs.params_m  # the same architecture (its weights were loaded strictly)
        assert ours.infer_img_s > 0 and theirs.train_img_s > 0
    assert set(ratios(results)) == set(names)


def test_detr_against_transformers() -> None:
    pytest.importorskip("transformers")
    results = bench(["detr_resnet50"], vs="transformers", batch_size=1, image_size=64, iters=1, rounds=1, memory=False)
    _check_pair(results, ["detr_resnet50"], "transformers")


def test_deformable_detr_against_transformers() -> None:
    """The Deformable DETR pair builds HF's Deformable DETR (not DETR) and times both."""
    results = bench(["deformable_detr_resnet50"], vs="transformers", batch_size=1, image_size=64, iters=1, rounds=1,
                    memory=False)
    _check_pair(results, ["deformable_detr_resnet50"], "transformers")


def test_fcn_against_torchvision() -> None:
    results = bench(["fcn_resnet50"], vs="torchvision", batch_size=1, image_size=64, iters=1, rounds=1, memory=False)
    _check_pair(results, ["fcn_resnet50"], "torchvision")
    assert results[0].gmacs == results[1].gmacs


@pytest.mark.slow
@pytest.mark.parametrize("name, ref, rows", [
    ("clip_vit_b32", "open_clip", ["clip_vit_b32"]),
    ("clipseg_rd64_refined", "transformers", ["clipseg_rd64_refined"]),
    ("sam_vit_b", "segment-anything", ["sam_vit_b (image encoder)", "sam_vit_b (prompt -> mask)"]),
    ("ssd300_vgg16", "torchvision", ["ssd300_vgg16"]),
])
def test_large_pairs(name, ref, rows) -> None:
    results = bench([name], vs=ref, batch_size=1, iters=1, rounds=1, memory=False)
    _check_pair(results, rows, ref)


def test_unknown_pairings_are_one_line_errors() -> None:
    with pytest.raises(PaperzooError, match="--vs supports"):
        bench(["resnet18"], vs="keras")
    with pytest.raises(PaperzooError, match="no counterpart of 'resnet18'"):
        bench(["resnet18"], vs="open_clip")


def test_dense_loss() -> None:
    """Per-pixel cross-entropy summed over a segmenter's outputs; a mean square for other dense outputs."""
    logits = torch.tensor([[[[2.0]], [[0.0]]]])  # (1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.int64)
    ce = torch.log1p(torch.exp(torch.tensor(-2.0)))
    assert torch.allclose(_dense_loss({"out": logits, "aux": logits}, target), 2 * ce)
    heat = torch.full((1, 3, 2, 2), 2.0)
    assert torch.allclose(_dense_loss(heat, target), torch.tensor(4.0))


def test_pose_nets_run_at_their_own_input_size() -> None:
    """A pose net is timmed at its 256 x 192 input (a square input once failed inside the model)."""
    results = bench(["pose_hrnet_w32"], batch_size=1, iters=1, rounds=1, memory=False)
    assert [r.impl for r in results] == ["paperzoo"] and results[0].train_img_s > 0
