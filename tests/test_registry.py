"""The registry and the fixed public API of DESIGN.md."""
from __future__ import annotations

import pytest
import torch

import paperzoo as pz
from paperzoo.errors import PaperzooError, UnknownNameError


def test_public_api_names() -> None:
    for name in ("create_model", "list_models", "load_weights", "papers", "paper"):
        assert callable(getattr(pz, name))


def test_list_models_pattern_and_paper() -> None:
    names = pz.list_models("resnet*")
    assert "resnet50" in names and "plain20_cifar" not in names and names == sorted(names)
    assert set(pz.list_models(paper="resnet")) >= {"resnet18", "plain110_cifar", "wide_resnet101_2"}
    assert pz.list_models("no_such_*") == []


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean resnet50"):
        pz.create_model("resnet5O")


def test_unsupported_kwarg_is_named() -> None:
    with pytest.raises(PaperzooError, match="does not take the argument 'bogus'"):
        pz.create_model("resnet18", bogus=1)


def test_metadata() -> None:
    m = pz.create_model("resnet50", num_classes=10)
    assert m.meta.name == "resnet50" and m.meta.paper == "resnet" and m.meta.family == "resnet"
    assert m.meta.num_classes == 10 and m.meta.input_size == (3, 224, 224)
    assert len(m.meta.mean) == 3 and m.meta.paper_gflops == 3.8
    assert pz.model_meta("resnet56_cifar").input_size == (3, 32, 32)


def test_features_only_indices() -> None:
    f = pz.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    outs = f(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == f.feature_info.channels() == [64, 128, 256, 512]
    assert f.feature_info.reduction() == [4, 8, 16, 32]
    last2 = pz.create_model("resnet18", features_only=True, out_indices=(-2, -1))
    assert last2.feature_info.channels() == [256, 512]
    early = pz.create_model("resnet18", features_only=True, out_indices=(0, 1))
    assert not hasattr(early.model, "layer2")  # later stages are pruned
    with pytest.raises(PaperzooError, match="out of range"):
        pz.create_model("resnet18", features_only=True, out_indices=(5,))
    with pytest.raises(PaperzooError, match="only applies with features_only"):
        pz.create_model("resnet18", out_indices=(1,))


def test_every_variant_is_a_plain_function() -> None:
    """Each registered name is a module-level ``def NAME(`` (grep finds it), never a generated closure."""
    import inspect
    import re
    import sys

    from paperzoo.registry import _REGISTRY

    generated = []
    for name in pz.list_models():
        builder = _REGISTRY[name].builder
        source = inspect.getsource(sys.modules[builder.__module__])
        plain = (builder.__qualname__ == name and getattr(sys.modules[builder.__module__], name, None) is builder
                 and re.search(rf"^def {name}\(", source, re.MULTILINE))
        if not plain:
            generated.append(name)
    assert not generated


def test_subpackages_are_lazy_attributes() -> None:
    """In a fresh interpreter: ``import paperzoo`` imports none of the subpackages, and each one is an attribute
    on first use (``pz.optim.SAM`` as ``timm.optim`` works), listed by dir(); an unknown name is an AttributeError."""
    import subprocess
    import sys

    code = """
import sys
import paperzoo as pz
subs = ("data", "explain", "layers", "models", "optim", "reproduce", "tasks", "train")
early = [s for s in subs if "paperzoo." + s in sys.modules]
assert not early, early
assert set(subs) <= set(dir(pz))
assert isinstance(pz.optim.SAM, type) and pz.optim.__name__ == "paperzoo.optim"
assert callable(pz.layers.DropPath) and callable(pz.tasks.ClassificationTask)
for s in subs:
    assert getattr(pz, s) is sys.modules["paperzoo." + s], s
try:
    pz.no_such_thing
except AttributeError as e:
    assert "no_such_thing" in str(e)
else:
    raise AssertionError("pz.no_such_thing did not raise")
"""
    import os
    from pathlib import Path

    src = str(Path(pz.__file__).resolve().parents[1])  # this checkout's paperzoo, however it was put on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
