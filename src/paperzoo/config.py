"""Configuration as dataclasses, filled from a YAML recipe and ``key=value`` overrides.

``apply_overrides(cfg, ["lr=0.1", "sam.rho=0.05"])`` walks nested dataclasses by dotted key and converts
each value to the field's declared type; an unknown key or a value of the wrong type raises a
``ConfigError`` that names the key (the CLI prints it and exits 2).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, suggest

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(key, value, arg)
            except ConfigError as e:
                errors.append(e)
        raise errors[0] if errors else ConfigError(f"config key '{key}': cannot use {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(items, Iterable):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        inner = args[0] if args else str
        out = [_convert(key, v.strip() if isinstance(v, str) else v, inner) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}' expects {tp.__name__}, got {value!r}")
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(float(value)) if tp is int and isinstance(value, str) and "e" in value.lower() else tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' expects {tp.__name__}, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' expects a string, got {value!r}")
        return str(value)
    if tp is Any or tp is typing.Any:
        return _yaml_scalar(value)
    if origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"config key '{key}' expects a mapping, got {value!r}")
    return value


def _yaml_scalar(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def _fields(cls: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def set_key(cfg: Any, key: str, value: Any, prefix: str = "") -> None:
    """Set dotted ``key`` on a (nested) dataclass instance, converting ``value`` to the field's type."""
    head, _, rest = key.partition(".")
    fields = _fields(cfg)
    full = prefix + head
    if head not in fields:
        raise ConfigError(f"unknown config key '{full}'{suggest(head, fields)}")
    hint = _hints(type(cfg))[head]
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(current):
        if rest:
            set_key(current, rest, value, full + ".")
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                set_key(current, str(k), v, full + ".")
            return
        if "enabled" in _fields(current):  # a switchable group: `lookahead=true` sets lookahead.enabled
            set_key(current, "enabled", value, full + ".")
            return
        raise ConfigError(f"config key '{full}' is a group; set one of its keys, e.g. {full}.{next(iter(_fields(current)))}=...")
    if rest:
        if isinstance(current, dict):
            current[rest] = _yaml_scalar(value)
            return
        raise ConfigError(f"unknown config key '{key}': '{full}' has no sub-keys")
    setattr(cfg, head, _convert(full, value, hint))


def apply_overrides(cfg: Any, overrides: Iterable[str] | Mapping[str, Any]) -> Any:
    """Apply ``["key=value", ...]`` (or a mapping) to ``cfg`` in place and return it."""
    if isinstance(overrides, Mapping):
        for k, v in overrides.items():
            set_key(cfg, str(k), v)
        return cfg
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got '{item}'")
        set_key(cfg, key.strip(), value.strip())
    return cfg


def load_yaml(cfg: Any, path: str | Path) -> Any:
    """Apply a YAML recipe file (a mapping of keys, nested groups allowed) to ``cfg``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path} must hold a mapping of config keys")
    return apply_overrides(cfg, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        if isinstance(v, tuple):
            return list(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return {k: clean(v) for k, v in dataclasses.asdict(cfg).items()}


def dump_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
