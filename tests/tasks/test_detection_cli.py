"""A detector through the whole command line, as a user runs it: train on the built-in scenes and on a COCO json,
eval with COCO's table, predict into a PNG, resume exactly after SIGKILL, and one clear line for broken files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, kill_and_resume
from PIL import Image

from paperzoo.cli import main
from paperzoo.data import ShapesDataset
from paperzoo.data.coco import export_coco

MODEL = "fasterrcnn_mobilenet_v3_large_320_fpn"
SMALL = ["model_args.min_size=64", "model_args.max_size=64", "model_args.rpn_pre_nms_top_n_train=200",
         "model_args.rpn_post_nms_top_n_train=100", "model_args.box_batch_size_per_image=64", "log_every=1"]
ARGS = ["--model", MODEL, "--epochs", "2", "--batch-size", "4", "data.image_size=64", *SMALL]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_eval_predict_on_the_scenes(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    main(["train", *ARGS, "--data", "shapes", "--out", str(run), "data.size=12", "data.val_size=4"])
    epochs = [r for r in _rows(run) if r["kind"] == "epoch"]
    steps = [r for r in _rows(run) if r["kind"] == "step"]
    assert len(epochs) == 2 and {"val_map", "val_map_50", "val_map_small"} <= set(epochs[-1])
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(steps[0])
    weights = run / "model.safetensors"
    capsys.readouterr()
    main(["eval", "--model", MODEL, "--weights", str(weights), "--data", "shapes", "data.val_size=4", "data.image_size=64",
          *SMALL[:2]])
    out = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in out and "map_50" in out
    scene = tmp_path / "scene.png"
    image, _ = ShapesDataset("val", size=1, kind="detection", image_size=64)[0]
    Image.fromarray((image * 255).byte().permute(1, 2, 0).numpy()).save(scene)
    main(["predict", "--model", MODEL, "--weights", str(weights), "--image", str(scene), "--out", str(tmp_path / "p.png"),
          "--score-threshold", "0"])
    assert "detections with score >= 0" in capsys.readouterr().out
    with Image.open(tmp_path / "p.png") as drawn:
        assert drawn.size == (64, 64)


def test_train_on_a_coco_json(tmp_path: Path) -> None:
    """The scenes written as a COCO json (images + annotations.json) train as a user's own data would."""
    path = export_coco(ShapesDataset("train", size=16, kind="detection", image_size=64, max_objects=3), tmp_path / "coco")
    run = tmp_path / "run"
    main(["train", *ARGS, "--data", str(path), "--out", str(run)])
    epochs = [r for r in _rows(run) if r["kind"] == "epoch"]
    assert "val_map" in epochs[-1]
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), "pt") as f:
        categories = json.loads(f.metadata()["categories"])
    assert categories == ["__background__", *ShapesDataset("train", size=1).classes]  # names read from the json


def _broken(tmp_path: Path, case: str) -> tuple[Path, str]:
    path = export_coco(ShapesDataset("train", size=4, kind="detection", image_size=32, max_objects=2), tmp_path / case)
    data = json.loads(path.read_text())
    if case == "truncated":
        path.write_text(path.read_text()[:200])
        return path, "invalid JSON"
    if case == "missing_image":
        (path.parent / data["images"][1]["file_name"]).unlink()
        return path, data["images"][1]["file_name"]
    if case == "not_an_image":
        (path.parent / data["images"][2]["file_name"]).write_text("hello")
        return path, data["images"][2]["file_name"]
    ann = data["annotations"][0]
    if case == "zero_box":
        ann["bbox"][2] = 0
    elif case == "unknown_category":
        ann["category_id"] = 77
    elif case == "unknown_image":
        ann["image_id"] = 999
    path.write_text(json.dumps(data))
    return path, f"annotation {ann['id']}"


@pytest.mark.parametrize("case", ["truncated", "missing_image", "not_an_image", "zero_box", "unknown_category", "unknown_image"])
def test_broken_coco_files_are_one_line_and_write_nothing(tmp_path: Path, case: str) -> None:
    path, culprit = _broken(tmp_path, case)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "paperzoo", "train", *ARGS, "--data", str(path), "--out", str(run)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and culprit in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not run.exists()


def test_detector_killed_and_resumed_ends_with_identical_weights(tmp_path: Path) -> None:
    """SIGKILL in the middle of a detector's training (two steps after its last checkpoint), then --resume: the final
    weights equal an uninterrupted run's, bit for bit (the samplers' randomness is checkpointed with the rest)."""
    args = [*ARGS, "--epochs", "3", "--data", "shapes", "data.size=8", "data.val_size=4", "--checkpoint-every", "2"]
    a, b = kill_and_resume(args, tmp_path, kill_at=3)
    assert a.keys() == b.keys() and len(a) > 100
    for k in a:
        assert torch.equal(a[k], b[k]), k
