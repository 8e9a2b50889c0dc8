"""The paperzoo command: user mistakes print one line and exit 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import paperzoo as pz
from paperzoo.cli import main

def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_all_papers(capsys) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0 and "resnet" in out and "(of 76)" in out
    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert len(rows) == 76 and {r["status"] for r in rows} <= {"planned", "partial", "implemented", "verified"}
    assert next(r for r in rows if r["slug"] == "resnet")["status"] == "verified"


def test_show_card(capsys) -> None:
    code, out, _ = run(capsys, "show", "resnet")
    assert code == 0
    for text in ("arxiv.org/abs/1512.03385", "resnet50", "passed tests/models/test_resnet.py::test_equals_torchvision",
                 "paperzoo reproduce resnet", "models/classification/resnet.py",
                 "torchvision's weights (randomly initialised, perturbed) load strictly",  # what the check compares
                 "max_rel_err = "):  # and the figure it measured
        assert text in out, text


@pytest.mark.parametrize("args, message", [
    (("show", "resnett"), "unknown paper 'resnett' (did you mean resnet"),
    (("list", "--bogus"), "No such option"),
    (("list", "--status", "done"), "unknown status 'done'"),
    (("models", "zzz*"), "no model matches"),
    (("reproduce", "resnet", "epochz=1"), "unknown config key 'epochz' (did you mean epochs"),
    (("reproduce", "resnet", "epochs=many"), "config key 'epochs' expects int"),
    (("reproduce", "resnet", "stray"), "unexpected argument 'stray'"),
    (("train", "--model", "resnet20_cifar"), "train needs --out"),
    (("train", "--model", "resnet2_cifar", "--out", "/tmp/x"), "unknown model 'resnet2_cifar'"),
    (("train", "--resume", "/no/such/run"), "is not a run directory"),
    (("train", "--model", "resnet20_cifar", "--data", "shape", "--out", "/tmp/x"), "unknown dataset 'shape'"),
    (("train", "--model", "resnet20_cifar", "--data", "/no/dir", "--out", "/tmp/x"), "image folder not found"),
    (("train", "--model", "resnet20_cifar", "--out", "/tmp/x", "optimizer=sgdd"), "unknown optimizer 'sgdd'"),
    (("eval", "--model", "resnet20_cifar", "--weights", "/no/w.safetensors"), "weights file not found"),
    (("data", "shapez"), "unknown dataset 'shapez'"),
])
def test_user_errors_are_one_line_exit_2(capsys, args, message) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_paper_without_a_reproduction_is_one_line_exit_2(capsys, monkeypatch) -> None:
    """Every paper has a reproduction module now; hide one (as a paper not yet written would be) and the CLI must
    refuse it in one line before anything trains."""
    import importlib

    real = importlib.import_module

    def hide_resnet(name, *a, **k):
        if name == "paperzoo.reproduce.resnet":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", hide_resnet)
    code, _, err = run(capsys, "reproduce", "resnet")
    assert code == 2 and "'resnet' has no reproduction yet" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_then_eval(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--model", "resnet20_cifar", "--data", "digits", "--epochs", "1",
                            "--batch-size", "64", "--out", str(out), "data.image_size=16")
    assert code == 0, err
    assert (out / "model.safetensors").exists() and (out / "curves.png").exists()
    code, stdout, err = run(capsys, "eval", "--model", "resnet20_cifar", "--weights", str(out / "model.safetensors"),
                            "--data", "digits", "data.image_size=16", "--out", str(out))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["acc"] <= 1.0 and "loss" in metrics


def test_data_preview_and_bench(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "data", "shapes", "--preview", str(tmp_path / "p.png"), "--bench", "50", "--image-size", "32")
    assert code == 0, err
    assert (tmp_path / "p.png").exists() and "images/s" in out


def test_bare_command_prints_help(capsys) -> None:
    code, out, _ = run(capsys)
    assert code == 0 and "reproduce" in out
