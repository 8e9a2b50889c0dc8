"""DenseNet (Huang et al., 2016) against torchvision and timm, and against the paper's CIFAR Table 2."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from helpers import n_params, perturb_, rel_err, strict_load

import paperzoo as pz
from paperzoo.models.classification.densenet import DenseNet, cifar_densenet

IMAGENET = ["densenet121", "densenet169", "densenet201", "densenet161"]


@pytest.fixture(scope="module")
def refs() -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's and timm's DenseNet-121 holding the same random, perturbed weights."""
    tv = perturb_(torchvision.models.densenet121()).eval()
    tm = timm.create_model("densenet121").eval()
    tm.load_state_dict(tv.state_dict())
    return tv, tm


@pytest.mark.paper("densenet")
@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_equals_reference(refs, source: str) -> None:
    ref = refs[source == "timm"]
    ours = pz.load_weights(pz.create_model("densenet121"), ref.state_dict(), source=source).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("densenet")
@pytest.mark.parametrize("name", IMAGENET)
def test_every_variant_has_the_reference_tensors(name: str, record_property) -> None:
    """Strict loading (names and shapes, on the meta device) from both references for all four networks."""
    with torch.device("meta"):
        strict_load(record_property, pz.create_model(name), getattr(torchvision.models, name)().state_dict(), source="torchvision")
        strict_load(record_property, pz.create_model(name), timm.create_model(name).state_dict(), source="timm")


def test_published_torchvision_key_names_load(refs) -> None:
    """torchvision's download files use the old 'norm.1' names inside dense layers; the converter maps them."""
    ref = refs[0]
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in ref.state_dict().items()}
    assert any(".norm.1." in k for k in legacy)
    ours = pz.load_weights(pz.create_model("densenet121"), legacy, source="torchvision").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5


@pytest.mark.paper("densenet")
@pytest.mark.parametrize("depth, k, bc, params_m", [
    (40, 12, False, 1.0), (100, 12, False, 7.0), (100, 24, False, 27.2),
    (100, 12, True, 0.8), (250, 24, True, 15.3), (190, 40, True, 25.6),
])
def test_cifar_params_match_paper_table2(depth: int, k: int, bc: bool, params_m: float) -> None:
    """Table 2: DenseNet (L, k) and DenseNet-BC (L, k) parameter counts on CIFAR-10."""
    with torch.device("meta"):
        model = cifar_densenet(depth, k, bc=bc, num_classes=10)
    assert round(n_params(model) / 1e6, 1) == params_m


@pytest.mark.paper("densenet")
def test_densenet201_has_20m_params() -> None:
    """Sec. 4.4: 'a DenseNet-201 with 20M parameters'."""
    with torch.device("meta"):
        assert round(n_params(pz.create_model("densenet201")) / 1e6) == 20


def test_layer_sees_all_earlier_maps() -> None:
    """Eq. 2: layer l of a block gets k0 + (l-1)k input channels, and the block outputs k0 + L*k."""
    model = DenseNet((3,), growth_rate=5, init_features=7, stem="cifar", num_classes=2)
    block = model.features.denseblock1
    assert [layer.norm1.num_features for layer in block.values()] == [7, 12, 17]
    assert block(torch.randn(1, 7, 4, 4)).shape[1] == 7 + 3 * 5


def test_features_equal_timm(refs) -> None:
    ref = refs[1]
    ours = pz.create_model("densenet121", features_only=True)
    pz.load_weights(ours, ref.state_dict(), source="timm")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=5, intermediates_only=True)
        got = ours.eval()(x)
    assert ours.feature_info.channels() == [64, 256, 512, 1024, 1024]
    assert ours.feature_info.reduction() == [2, 4, 8, 16, 32]
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and rel_err(a, b) < 1e-5


def test_cifar_model_and_kwargs() -> None:
    m = pz.create_model("densenet100_bc_cifar")
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    m = pz.create_model("densenet121", num_classes=3, in_chans=1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 3)
