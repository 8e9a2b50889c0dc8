"""Miniature reproductions: ``paperzoo reproduce SLUG`` runs ``paperzoo.reproduce.<slug>``.

A reproduction module defines

* ``Config`` — a dataclass whose defaults are the miniature experiment (under 10 minutes on 2 CPU cores);
* ``SMOKE`` — overrides that shrink it to seconds, used by the test suite to exercise the whole path;
* ``FULL`` (optional) — overrides for a paper-scale setting, for users with a GPU;
* ``run(cfg, out) -> Report`` — trains through the one ``Trainer`` and returns an honest ``Report``.

They are built from the kit (``_kit``: data, fit, cost, verdicts, plots); the report's verdict is the
``_kit.verdicts`` decision on the measured per-seed numbers. ``python -m paperzoo.reproduce.publish RUNS``
turns real runs' ``results.json`` into ``docs/reproductions.md``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from ..catalog import module_name, paper
from ..config import apply_overrides, to_dict
from ..errors import PaperzooError, unknown
from .report import Report

__all__ = ["Report", "available", "load", "run"]

NOT_PAPERS = ("report", "publish")  # modules of this package that are not a paper's reproduction


def available() -> list[str]:
    """Slugs that have a reproduction module."""
    from .. import reproduce

    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(reproduce.__path__)
                  if not m.name.startswith("_") and m.name not in NOT_PAPERS)


def load(slug: str) -> ModuleType:
    entry = paper(slug)  # unknown slugs fail here with a suggestion
    try:
        return importlib.import_module(f"{__name__}.{module_name(entry.slug)}")
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{module_name(entry.slug)}":
            raise unknown("reproduction", slug, available(), f"'{slug}' has no reproduction yet (status: {entry.status})") from None
        raise


def make_config(slug: str, overrides: Iterable[str] | dict = (), smoke: bool = False, full: bool = False):
    module = load(slug)
    cfg = module.Config()
    if smoke:
        apply_overrides(cfg, getattr(module, "SMOKE", {}))
    if full:
        if not hasattr(module, "FULL"):
            raise PaperzooError(f"the '{slug}' reproduction has no --full setting")
        apply_overrides(cfg, module.FULL)
    apply_overrides(cfg, overrides)
    return module, cfg


def run(slug: str, out: str | Path | None = None, overrides: Iterable[str] | dict = (), smoke: bool = False,
        full: bool = False) -> Report:
    """Run a reproduction and write ``report.md``, ``results.json`` and figures to ``out``."""
    module, cfg = make_config(slug, overrides, smoke=smoke, full=full)
    out = Path(out or Path("runs") / slug)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    report = module.run(cfg, out)
    report.wall_time_s = time.perf_counter() - t0
    report.date = started
    report.config = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    report.smoke = smoke
    report.write(out)
    return report
