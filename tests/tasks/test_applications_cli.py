"""Section J models through the one command line: a few training steps on the built-in data, and bad input as one
clear line with exit status 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperzoo.cli import main


def _epochs(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]


def test_c5_trains_on_the_scenes_as_synthetic_cameras(tmp_path: Path) -> None:
    run = tmp_path / "c5"
    main(["train", "--model", "c5", "--data", "shapes", "--epochs", "1", "--batch-size", "8", "--out", str(run),
          "data.size=16", "data.val_size=8", "data.image_size=16", "model_args.m=3", "model_args.bins=16"])
    last = _epochs(run)[-1]
    assert 0 < last["val_angular_error"] < 90 and "val_median" in last


def test_c5_wrong_input_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "c5", "--data", "shapes", "--out", str(tmp_path / "r"), "model_args.bins=20"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "divisible" in err[0]


def test_pilotnet_trains_on_road_frames_over_the_scenes(tmp_path: Path) -> None:
    """`paperzoo train --model pilotnet --data shapes`: the scenes become the scenery of rendered road frames."""
    run = tmp_path / "pilotnet"
    main(["train", "--model", "pilotnet", "--data", "shapes", "--epochs", "1", "--batch-size", "8", "--out", str(run),
          "data.size=8", "data.val_size=8"])
    last = _epochs(run)[-1]
    assert 0 < last["val_rmse"] < 1 and "val_mae" in last


def test_ebm_trains_with_the_contrastive_energy_on_the_scenes(tmp_path: Path) -> None:
    run = tmp_path / "ebm"
    main(["train", "--model", "ebm_classifier", "--data", "shapes", "--epochs", "1", "--batch-size", "16", "--out", str(run),
          "data.size=32", "data.val_size=16"])
    assert 0 <= _epochs(run)[-1]["val_acc"] <= 1


def test_crop_locator_trains_on_the_scenes_with_lens_traces(tmp_path: Path) -> None:
    run = tmp_path / "crop"
    main(["train", "--model", "crop_locator", "--data", "shapes", "--epochs", "1", "--batch-size", "8", "--out", str(run),
          "data.size=8", "data.val_size=8", "model_args.patch_backbone=small", "model_args.global_backbone=small",
          "model_args.width=4"])
    last = _epochs(run)[-1]
    assert 0 <= last["val_location_acc"] <= 1 and 0 <= last["val_crop_acc"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["--model", "c5", "model_args.m=3", "model_args.bins=16", "data.image_size=16", "--batch-size", "4"],
    ["--model", "pilotnet", "--batch-size", "4"],
    ["--model", "ebm_classifier", "--batch-size", "4"],
    ["--model", "crop_locator", "model_args.patch_backbone=small", "model_args.global_backbone=small",
     "model_args.width=4", "--batch-size", "4"],
], ids=["c5", "pilotnet", "ebm", "crop"])
def test_killed_run_resumes_to_identical_weights(args, tmp_path: Path) -> None:
    """Each section-J task, SIGKILLed after its step-3 checkpoint and resumed, ends with the weights of an unkilled run."""
    import torch
    from helpers import kill_and_resume

    common = ["--data", "shapes", "--epochs", "2", "data.size=16", "data.val_size=4", "--checkpoint-every", "3"]
    a, b = kill_and_resume([*args, *common], tmp_path, kill_at=5)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
