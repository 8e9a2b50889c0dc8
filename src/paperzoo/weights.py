"""Loading weights: ``load_weights`` (strict), per-source key maps, and published-weight downloads.

``load_weights(model, checkpoint, source=...)`` is how users bring public pretrained weights and how the
tests prove that our architectures equal the references: every reference tensor must be used, every
model tensor filled, every shape equal; otherwise the error lists the keys that did not match.

A family whose keys differ from a source's registers a converter::

    @register_converter("vit", "timm")
    def _from_timm(state_dict, model): return {...}

Families whose names already equal a source's register ``identity``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightsError, unknown

StateDict = dict[str, torch.Tensor]
Converter = Callable[[StateDict, nn.Module], StateDict]

SOURCES = ("paperzoo", "timm", "torchvision", "official", "transformers", "open_clip", "segment-anything", "lightnet")
_CONVERTERS: dict[tuple[str, str], Converter] = {}
_MAX_LISTED = 12


def identity(state_dict: StateDict, model: nn.Module) -> StateDict:
    return state_dict


def register_converter(family: str, *sources: str) -> Callable[[Converter], Converter]:
    """Register ``fn(state_dict, model) -> state_dict`` mapping ``sources``' keys to ``family``'s."""

    def wrap(fn: Converter) -> Converter:
        for source in sources:
            if source not in SOURCES:
                raise ValueError(f"unknown weight source '{source}'")
            _CONVERTERS[(family, source)] = fn
        return fn

    return wrap


def cache_dir() -> Path:
    """Where downloads go: ``$PAPERZOO_HOME/weights`` (default ``~/.cache/paperzoo/weights``)."""
    home = os.environ.get("PAPERZOO_HOME") or Path.home() / ".cache" / "paperzoo"
    return Path(home) / "weights"


def _published_hash(url: str) -> tuple[str, str | None, str | None]:
    """(URL to fetch, full SHA-256 from a ``#sha256=HEX`` suffix, SHA-256 prefix from a torchvision-style
    ``name-<hex>.pth`` file name)."""
    from torch.hub import HASH_REGEX

    base, _, fragment = url.partition("#")
    full = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else None
    match = HASH_REGEX.search(os.path.basename(base.split("?")[0]))
    return base, full, match.group(1) if match else None


def cache_path(url: str) -> Path:
    """The cache file of ``url``: a folder per URL (a hash of the whole URL), holding the file under its own
    name. Hugging Face serves every model as ``model.safetensors``; keying by the last path part alone
    would hand the second model the first one's weights."""
    import hashlib

    base = url.partition("#")[0]
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    return cache_dir() / key / (os.path.basename(base.split("?")[0]) or "weights")


def download(url: str, progress: bool = True) -> Path:
    """Download ``url`` into the cache once (atomic). A published checksum is checked: the full SHA-256 of a
    ``#sha256=HEX`` suffix, or the prefix in a torchvision-style ``-<hex>`` file name; a cached file is
    checked again before use, so a damaged cache is fetched anew rather than loaded."""
    import hashlib

    from torch.hub import download_url_to_file

    fetch, full, prefix = _published_hash(url)
    dst = cache_path(url)

    def intact(path: Path) -> bool:
        if full is None and prefix is None:
            return True
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
        return digest == full if full is not None else digest.startswith(prefix)

    if dst.exists() and intact(dst):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part-{os.getpid()}")
    try:
        download_url_to_file(fetch, str(tmp), hash_prefix=None, progress=progress)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot download {fetch}: {e}") from None
    if not intact(tmp):
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"download of {fetch} is corrupt (its SHA-256 does not match the published "
                           f"{'checksum' if full else 'hash prefix ' + str(prefix)}); try again")
    os.replace(tmp, dst)
    return dst


def read_checkpoint(path: str | os.PathLike) -> StateDict:
    """Tensors from a ``.safetensors`` file or a torch checkpoint (unwrapping 'state_dict'/'model'/'ema')."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many types for a damaged file
        raise WeightsError(f"cannot read checkpoint {path}: it is truncated or not a weights file ({type(e).__name__})") from None
    return _unwrap(obj, path)


def _unwrap(obj: Any, origin: Any) -> StateDict:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                return _unwrap(obj[key], origin)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise WeightsError(f"{origin} holds no state dict of tensors")


def _resolve(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> StateDict:
    if isinstance(checkpoint, Mapping):
        return _unwrap(checkpoint, "the given mapping")
    text = str(checkpoint)
    if text.startswith(("http://", "https://", "file://")):
        return read_checkpoint(download(text))
    return read_checkpoint(text)


def _inner(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Unwrap features_only/DDP/compiled wrappers; return the model and pruned key prefixes."""
    pruned: list[str] = []
    while True:
        if hasattr(model, "pruned") and hasattr(model, "model"):  # FeatureExtractor
            pruned += model.pruned
            model = model.model
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model, pruned


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def load_weights(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    source: str = "paperzoo",
    *,
    strict: bool = True,
    skip: tuple[str, ...] = (),
) -> nn.Module:
    """Load ``checkpoint`` (a path, URL or state dict from ``source``) into ``model``, strictly.

    ``skip`` lists key prefixes to leave untouched on both sides (e.g. a classifier being re-trained).
    BatchNorm's ``num_batches_tracked`` counters may be absent from old checkpoints; they are not weights.
    Returns the model.
    """
    if source not in SOURCES:
        raise unknown("weight source", source, SOURCES)
    target, pruned = _inner(model)
    state = _resolve(checkpoint)
    meta = getattr(target, "meta", None) or getattr(model, "meta", None)
    if source != "paperzoo":
        family = getattr(meta, "family", None)
        conv = _CONVERTERS.get((family, source))
        if conv is None:
            raise WeightsError(f"no key map from {source} weights to the '{family}' family is registered")
        state = conv(dict(state), target)

    def kept(key: str) -> bool:
        return not any(key == p or key.startswith(p + ".") for p in (*pruned, *skip))

    own = {k: v for k, v in target.state_dict().items() if kept(k)}
    given = {k: v for k, v in state.items() if kept(k)}
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in given and given[k].shape != v.shape]
    if strict and (missing or unexpected or shapes):
        name = getattr(meta, "name", type(target).__name__)
        parts = []
        if missing:
            parts.append(f"missing from checkpoint: {_listing(missing)}")
        if unexpected:
            parts.append(f"not in model: {_listing(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch (checkpoint vs model): {_listing(shapes)}")
        raise WeightsError(f"{source} weights do not fit '{name}': " + "; ".join(parts))
    with torch.no_grad():
        for k, v in own.items():
            if k in given and given[k].shape == v.shape:
                v.copy_(given[k])
    return model


def load_pretrained(model: nn.Module, pretrained: str | bool) -> nn.Module:
    """``create_model(pretrained=...)``: a path, a URL, a source name, or True for the first source."""
    meta = model.meta
    sources = meta.weights
    source = "paperzoo"
    if pretrained is True or pretrained in sources:
        if not sources:
            raise WeightsError(f"no published weights are known for '{meta.name}'; pass a checkpoint path")
        source = next(iter(sources)) if pretrained is True else str(pretrained)
        location = sources[source]
    elif isinstance(pretrained, str) and pretrained in SOURCES:
        raise WeightsError(f"no {pretrained} weights are known for '{meta.name}' (known: {', '.join(sources) or 'none'})")
    else:
        location = str(pretrained)
        if "::" in location:  # "timm::/path/ckpt.pth" names the source of a local file
            source, location = location.split("::", 1)
    state = _resolve(location)
    if source != "paperzoo":
        conv = _CONVERTERS.get((meta.family, source))
        if conv is None:
            raise WeightsError(f"no key map from {source} weights to the '{meta.family}' family is registered")
        state = conv(dict(state), model)
    heads = classifier_prefixes(model)
    own = model.state_dict()
    skip: tuple[str, ...] = ()
    if any(k.startswith(h + ".") and k in own and v.shape != own[k].shape for h in heads for k, v in state.items()):
        skip = heads  # fine-tuning to a new number of classes: keep the new classifier(s)
        state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
    return load_weights(model, state, "paperzoo", skip=skip)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes of the model's classification head(s): ``meta.classifier`` where the model
    declares them (a distilled DeiT has ``head`` and ``head_dist``), else the one linear layer named
    ``fc``, ``head``, ``classifier`` or ``head.fc``."""
    declared = getattr(getattr(model, "meta", None), "classifier", ())
    if declared:
        return tuple(declared)
    for name in ("fc", "head", "classifier", "head.fc"):
        module = model.get_submodule(name) if _has(model, name) else None
        if isinstance(module, nn.Linear):
            return (name,)
    return ()


def _has(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False
