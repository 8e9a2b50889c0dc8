"""Every registered variant of sections A and B with a reference in timm or torchvision: the reference's
weights (random, perturbed) load through ``load_weights`` and give the same logits at a small input.

The family test files compare outputs for one variant per code path and check every variant's tensors; this
slow sweep runs the output comparison for all of them (``pytest -m slow tests/models/test_every_variant.py``)."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from helpers import perturb_, rel_err

import paperzoo as pz

SECTIONS = {"vgg", "bag-of-tricks", "densenet", "mobilenet", "mobilenetv2", "mobilenetv3", "senet", "efficientnet",
            "efficientnetv2", "bit", "resnet-rs", "assembled-cnn", "antialias-resnet", "resnet", "vit", "deit"}
TRANSFORMERS = {"vit", "deit"}  # position embeddings sized to the small input on both sides
SIZE = 64
# Where the two references differ, ours follows torchvision and the builder's knob gives timm's variant: timm's
# EfficientNet/EfficientNetV2 use BatchNorm eps 1e-5 where torchvision's use 1e-3 (``bn_eps``); timm's tf_*
# ports of TensorFlow weights keep 1e-3, as our models of those names do.
TIMM_KWARGS = {"efficientnet": {"bn_eps": 1e-5}, "efficientnetv2": {"bn_eps": 1e-5}}
# timm's VGG computes FC-6 as a 7x7 convolution, equal to our linear layer on a 7x7 map: 224 px input.
TIMM_SIZE = {"vgg": 224}


def _cases() -> list[tuple[str, str]]:
    metas = {name: pz.model_meta(name) for name in pz.list_models()}
    return [(name, source) for name, meta in metas.items() if meta.paper in SECTIONS
            for source in ("timm", "torchvision") if source in meta.reference]


@pytest.mark.slow
@pytest.mark.parametrize("name, source", _cases())
def test_variant_equals_reference(name: str, source: str) -> None:
    meta = pz.model_meta(name)
    ref_name = meta.reference[source]
    size = 56 if "patch14" in name else TIMM_SIZE.get(meta.paper, SIZE) if source == "timm" else SIZE
    kwargs = {"img_size": size} if meta.paper in TRANSFORMERS else {}
    if source == "timm":
        ref = timm.create_model(ref_name, num_classes=1000, **kwargs)
    else:
        ref = torchvision.models.get_model(ref_name, **({"image_size": size} if kwargs else {}))
    ref = perturb_(ref).eval()
    knobs = TIMM_KWARGS.get(meta.paper, {}) if source == "timm" and not ref_name.startswith("tf_") else {}
    ours_kwargs = dict(kwargs, **knobs)
    ours = pz.load_weights(pz.create_model(name, **ours_kwargs), ref.state_dict(), source=source).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    assert rel_err(out, expected) < 1e-4, (name, source, rel_err(out, expected))
