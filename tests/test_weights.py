"""load_weights: strict loading, clear errors, files of every kind, downloads from a (local) URL."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import paperzoo as pz
from paperzoo.errors import WeightsError


def _state(name: str = "resnet18") -> dict[str, torch.Tensor]:
    return pz.create_model(name).state_dict()


def test_roundtrip_paperzoo_state_dict() -> None:
    a, b = pz.create_model("resnet18"), pz.create_model("resnet18")
    pz.load_weights(b, a.state_dict())
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_missing_and_unexpected_keys_are_listed() -> None:
    state = _state()
    state.pop("fc.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as e:
        pz.load_weights(pz.create_model("resnet18"), state)
    msg = str(e.value)
    assert "missing from checkpoint: fc.weight" in msg and "not in model: extra.weight" in msg


def test_shape_mismatch_is_listed() -> None:
    state = _state()
    state["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(WeightsError, match=r"fc.weight \(10, 512\) vs \(1000, 512\)"):
        pz.load_weights(pz.create_model("resnet18"), state)


def test_failed_load_leaves_model_untouched() -> None:
    model = pz.create_model("resnet18")
    before = model.conv1.weight.clone()
    state = {k: torch.zeros_like(v) for k, v in _state().items()}
    state.pop("fc.bias")
    with pytest.raises(WeightsError):
        pz.load_weights(model, state)
    assert torch.equal(model.conv1.weight, before)


def test_old_checkpoints_without_bn_counters_load() -> None:
    state = {k: v for k, v in _state().items() if not k.endswith("num_batches_tracked")}
    pz.load_weights(pz.create_model("resnet18"), state)


def test_files_safetensors_and_torch(tmp_path: Path) -> None:
    src = pz.create_model("resnet20_cifar")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "w.safetensors")
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        dst = pz.load_weights(pz.create_model("resnet20_cifar"), tmp_path / f)
        assert torch.equal(dst.conv1.weight, src.conv1.weight)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="checkpoint not found"):
        pz.load_weights(pz.create_model("resnet18"), tmp_path / "nope.pth")
    src = pz.create_model("resnet20_cifar")
    torch.save(src.state_dict(), tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.pth: it is truncated or not a weights file"):
        pz.load_weights(pz.create_model("resnet20_cifar"), tmp_path / "cut.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        pz.load_weights(pz.create_model("resnet20_cifar"), tmp_path / "junk.safetensors")


def test_unknown_source() -> None:
    with pytest.raises(pz.PaperzooError, match="unknown weight source 'timmm'"):
        pz.load_weights(pz.create_model("resnet18"), {}, source="timmm")


@pytest.fixture
def local_server(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www (no internet needed)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pretrained_url_download_is_cached_and_hash_checked(local_server, tmp_path: Path, monkeypatch) -> None:
    import hashlib

    monkeypatch.setenv("PAPERZOO_HOME", str(tmp_path / "home"))
    www, base = local_server
    src = pz.create_model("resnet20_cifar")
    torch.save(src.state_dict(), www / "tmp.pth")
    digest = hashlib.sha256((www / "tmp.pth").read_bytes()).hexdigest()
    good = f"resnet20-{digest[:8]}.pth"
    (www / "tmp.pth").rename(www / good)
    model = pz.create_model("resnet20_cifar", pretrained=f"{base}/{good}")
    assert torch.equal(model.conv1.weight, src.conv1.weight)
    from paperzoo.weights import cache_path

    assert cache_path(f"{base}/{good}").exists() and cache_path(f"{base}/{good}").name == good
    # a file whose content does not match the hash prefix in its name is rejected
    (www / "bad-deadbeef.pth").write_bytes((www / good).read_bytes())
    with pytest.raises(WeightsError, match="corrupt"):
        pz.create_model("resnet20_cifar", pretrained=f"{base}/bad-deadbeef.pth")
    with pytest.raises(WeightsError, match="cannot download"):
        pz.create_model("resnet20_cifar", pretrained=f"{base}/missing.pth")


def test_download_cache_is_keyed_by_the_whole_url(local_server, tmp_path: Path, monkeypatch) -> None:
    """Two Hugging Face repositories both serve ``model.safetensors``: the second model must get its own file,
    not the first one's (the cache used to key files by the URL's last part)."""
    import hashlib

    from safetensors.torch import save_file

    monkeypatch.setenv("PAPERZOO_HOME", str(tmp_path / "home"))
    www, base = local_server
    a, b = pz.create_model("resnet20_cifar"), pz.create_model("resnet20_cifar")
    for name, model in (("a", a), ("b", b)):
        (www / name).mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(www / name / "model.safetensors"))
    first = pz.create_model("resnet20_cifar", pretrained=f"{base}/a/model.safetensors")
    second = pz.create_model("resnet20_cifar", pretrained=f"{base}/b/model.safetensors")
    assert torch.equal(first.conv1.weight, a.conv1.weight) and torch.equal(second.conv1.weight, b.conv1.weight)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)
    # a published full SHA-256 (``#sha256=``) is checked, on download and again on every later use of the cache
    digest = hashlib.sha256((www / "a" / "model.safetensors").read_bytes()).hexdigest()
    url = f"{base}/a/model.safetensors#sha256={digest}"
    assert torch.equal(pz.create_model("resnet20_cifar", pretrained=url).conv1.weight, a.conv1.weight)
    with pytest.raises(WeightsError, match="corrupt"):
        pz.create_model("resnet20_cifar", pretrained=f"{base}/b/model.safetensors#sha256={digest}")
    from paperzoo.weights import cache_path

    cached = cache_path(url)
    cached.write_bytes(cached.read_bytes()[:100])  # a damaged cache entry is fetched again, not loaded
    assert torch.equal(pz.create_model("resnet20_cifar", pretrained=url).conv1.weight, a.conv1.weight)


def test_pretrained_source_name_uses_published_url(local_server, tmp_path: Path, monkeypatch) -> None:
    """pretrained="torchvision" fetches the model's torchvision URL (redirected here to a local server)."""
    import dataclasses

    from paperzoo import registry

    monkeypatch.setenv("PAPERZOO_HOME", str(tmp_path / "home"))
    www, base = local_server
    import torchvision

    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), www / "resnet18-f37072fd.pth")
    entry = registry._REGISTRY["resnet18"]
    meta = dataclasses.replace(entry.meta, weights={"torchvision": f"{base}/resnet18-f37072fd.pth"})
    monkeypatch.setitem(registry._REGISTRY, "resnet18", registry._Entry(entry.builder, meta))
    # the hash prefix in the published name does not match our locally made file: detected
    with pytest.raises(WeightsError, match="corrupt"):
        pz.create_model("resnet18", pretrained="torchvision")
    import hashlib

    digest = hashlib.sha256((www / "resnet18-f37072fd.pth").read_bytes()).hexdigest()[:8]
    (www / "resnet18-f37072fd.pth").rename(www / f"resnet18-{digest}.pth")
    meta = dataclasses.replace(meta, weights={"torchvision": f"{base}/resnet18-{digest}.pth"})
    monkeypatch.setitem(registry._REGISTRY, "resnet18", registry._Entry(entry.builder, meta))
    model = pz.create_model("resnet18", pretrained="torchvision", num_classes=5)
    assert torch.equal(model.conv1.weight, ref.conv1.weight)
    assert model.fc.out_features == 5  # a new classifier for fine-tuning


def test_published_urls_are_known() -> None:
    assert pz.model_meta("resnet50").weights["torchvision"] == "https://download.pytorch.org/models/resnet50-0676ba61.pth"


def test_pretrained_without_known_weights() -> None:
    with pytest.raises(WeightsError, match="no published weights are known for 'resnet20_cifar'"):
        pz.create_model("resnet20_cifar", pretrained=True)


def test_classifier_prefixes_name_every_head() -> None:
    """In one model of every classification family, the layers that output num_classes are exactly the
    declared (or found) classifier prefixes: a fine-tune re-initialises all heads and nothing else."""
    from torch import nn

    from paperzoo.weights import classifier_prefixes

    firsts: dict[str, str] = {}
    for name in pz.list_models():
        meta = pz.model_meta(name)
        if meta.task == "classification":
            firsts.setdefault(meta.family, name)
    firsts["deit"] = "deit_tiny_distilled_patch16_224"  # the family's two-headed variant
    for name in firsts.values():
        with torch.device("meta"):
            model = pz.create_model(name, num_classes=7)
        heads = {n for n, m in model.named_modules()
                 if isinstance(m, nn.Linear) and m.out_features == 7 or isinstance(m, nn.Conv2d) and m.out_channels == 7}
        assert heads and heads == set(classifier_prefixes(model)), name
