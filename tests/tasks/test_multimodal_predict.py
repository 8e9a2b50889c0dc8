"""`paperzoo predict` for the vision-and-language models: zero-shot labels, a CLIPSeg mask for a prompt, a caption."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

import paperzoo as pz
from paperzoo.cli import main

CASES = {
    "clip_vit_b32": (dict(layers=1, text_layers=1, width=64, text_width=64, text_heads=2, vocab_size=64, patch_size=8,
                          image_size=32, embed_dim=32), ["--labels", "red star, blue circle,green square"], "star"),
    "clipseg_rd64_refined": (dict(layers=2, extract_layers=(0, 1), width=32, heads=2, image_size=32, vocab_size=64,
                                  text_width=32, text_heads=2, text_layers=1, embed_dim=16, reduce_dim=8, mlp_dim=16),
                             ["--prompt", "a red star"], "of the image"),
}


def _save(model, kwargs, tmp_path) -> None:
    """Weights as paperzoo's trainer writes them: the model's build arguments and input size in the metadata."""
    meta = {"model_args": json.dumps(kwargs), "image_size": "32", "categories": json.dumps(["object"])}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"), metadata=meta)


def _run(capsys, *args: str) -> tuple[int, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("name", list(CASES))
def test_predict_draws_a_png(name: str, tmp_path, capsys) -> None:
    kwargs, extra, expected = CASES[name]
    model = pz.create_model(name, **kwargs)
    _save(model, kwargs, tmp_path)
    Image.fromarray((np.random.rand(40, 40, 3) * 255).astype("uint8")).save(tmp_path / "x.png")
    code, out = _run(capsys, "predict", "--model", name, "--weights", str(tmp_path / "w.safetensors"), "--image",
                     str(tmp_path / "x.png"), "--out", str(tmp_path / "p.png"), *extra)
    assert code == 0, out
    assert (tmp_path / "p.png").stat().st_size > 100 and expected in out


def test_zero_shot_without_labels_is_a_clear_error(tmp_path, capsys) -> None:
    kwargs = CASES["clip_vit_b32"][0]
    model = pz.create_model("clip_vit_b32", **kwargs)
    _save(model, kwargs, tmp_path)
    Image.fromarray(np.zeros((40, 40, 3), "uint8")).save(tmp_path / "x.png")
    code, out = _run(capsys, "predict", "--model", "clip_vit_b32", "--weights", str(tmp_path / "w.safetensors"),
                     "--image", str(tmp_path / "x.png"), "--out", str(tmp_path / "p.png"))
    assert code == 2 and "--labels" in out
