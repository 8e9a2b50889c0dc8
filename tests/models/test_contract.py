"""The contract every registered model keeps, checked once over ``list_models()`` instead of a copy per family
file: the common keyword arguments, ``features_only``, metadata that fits the model, and — on the smallest
variant of each family — a real forward and backward pass and ``torch.compile(fullgraph=True)``.

Structure checks run on the ``meta`` device (no memory, no arithmetic), so even ViT-H and ResNet-RS-420 cost
milliseconds; numerics are the family files' business (equivalence with the references)."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.registry import model_meta

ALL = pz.list_models()
CLASSIFIERS = [n for n in ALL if model_meta(n).task == "classification"]
DENSE = [n for n in ALL if model_meta(n).task != "classification"]
DETECTION_TASKS = ("detection", "instances", "keypoints")


def _input(name: str, batch: int = 2, size: int | None = None, in_chans: int | None = None) -> torch.Tensor:
    c, h, w = model_meta(name).input_size
    s = size or min(h, 224)
    return torch.empty(batch, in_chans or c, s, s if size else min(w, 224))


def _params_on_meta(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in pz.create_model(name).parameters())


def _smallest_per_family(names: list[str]) -> list[str]:
    best: dict[str, tuple[int, str]] = {}
    for n in names:
        fam = model_meta(n).family
        size = _params_on_meta(n)
        if fam not in best or size < best[fam][0]:
            best[fam] = (size, n)
    return sorted(n for _, n in best.values())


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_contract(name: str) -> None:
    """num_classes / in_chans / drop_path_rate are taken, the metadata follows them, and features_only returns maps
    with the channels and strides ``feature_info`` announces (on the meta device)."""
    meta = model_meta(name)
    assert meta.paper and meta.family and len(meta.mean) == len(meta.std) in (1, meta.input_size[0])
    with torch.device("meta"):
        model = pz.create_model(name, num_classes=3, in_chans=1)
        assert model(_input(name, in_chans=1)).shape == (2, 3)
        assert model.meta.num_classes == 3 and model.meta.input_size[0] == 1
        try:
            pz.create_model(name, drop_path_rate=0.1)
        except pz.PaperzooError as e:  # a family without residual branches may refuse, by name
            assert "drop_path_rate" in str(e)
        features = pz.create_model(name, features_only=True)
        x = _input(name)
        maps = features(x)
    info = features.feature_info
    assert [m.shape[1] for m in maps] == info.channels() == features.out_channels
    assert [x.shape[-1] // m.shape[-1] for m in maps] == info.reduction()
    for head in meta.classifier:
        assert model.get_submodule(head) is not None


@pytest.mark.parametrize("name", DENSE)
def test_dense_model_contract(name: str) -> None:
    """Dense-task models declare their task and classes; detectors have ``detect``; num_classes is taken."""
    meta = model_meta(name)
    assert meta.task in pz.tasks.task_names(), meta.task
    if meta.categories is not None:
        assert len(meta.categories) == meta.num_classes
    with torch.device("meta"):
        model = pz.create_model(name, num_classes=5)
    assert model.meta.num_classes == 5
    if meta.task in DETECTION_TASKS:
        assert callable(getattr(model, "detect", None))


@pytest.mark.parametrize("name", _smallest_per_family(CLASSIFIERS))
def test_forward_backward_and_compile(name: str) -> None:
    """The smallest variant of each family: finite logits, gradients reach every trainable parameter that takes
    part in the forward pass, and ``torch.compile(fullgraph=True)`` gives the same outputs."""
    model = pz.create_model(name, num_classes=4)
    size = max(32, 2 ** (model_meta(name).input_size[-1] // 224 + 5))
    x = torch.randn(2, model_meta(name).input_size[0], size, size)
    model.train()
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters without gradient: {unused[:5]}"
    model.eval()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
