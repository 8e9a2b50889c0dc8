"""The catalog of the 76 papers: ``pz.papers()`` and ``pz.paper(slug)``.

Each paper's status is computed, never written by hand:

* ``planned``     — none of its entry points (models, objects, reproduction) exists yet;
* ``partial``     — some exist, some do not;
* ``implemented`` — every entry point resolves;
* ``verified``    — implemented, and at least one check — a test marked ``@pytest.mark.paper("slug")``,
  comparing the code with a reference implementation or with the paper's reported numbers — ran in the
  default (non-slow) suite and passed.

``verification.json`` records every check with what it compares (its docstring), whether it is slow, whether it
passed in the last full default run, and the figures it measured. ``python -m paperzoo.catalog`` writes it from
the run that ``make test`` records (``checks.py``, the suite's pytest plugin, which also fails a check that is
skipped or asserts nothing); a full run whose passing checks differ from the file fails as stale.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import unknown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).parent
PAPERS_TOML = HERE / "papers.toml"
MANIFEST = HERE / "verification.json"
STATUSES = ("planned", "partial", "implemented", "verified")
CATEGORIES = {
    "cnn-backbones": "A. Convolutional backbones",
    "transformer-backbones": "B. Transformer-era backbones",
    "training": "C. Training techniques and explanation",
    "detection": "D. Object detection",
    "segmentation": "E. Segmentation and matting",
    "pose": "F. Human pose estimation",
    "generative": "G. Generative models",
    "vision-language": "H. Vision and language",
    "distillation-ssl": "I. Representation learning and distillation",
    "applications": "J. Other applications and analysis",
}


@dataclass(frozen=True)
class Check:
    """One check (a marked test): its node id, what it compares (docstring), whether it is slow (not in the
    default run), whether it passed in the last full default run, and the figures it measured there."""

    test: str
    doc: str = ""
    slow: bool = False
    passed: bool = False
    figures: tuple[tuple[str, object], ...] = ()

    @property
    def earns(self) -> bool:
        """Whether this check earns its paper the ``verified`` status (it ran in the default suite and passed)."""
        return self.passed and not self.slow


@dataclass(frozen=True)
class Paper:
    slug: str
    arxiv: str
    title: str
    year: int
    category: str
    summary: str
    verify: str
    reproduce: str
    models: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    checks: tuple[Check, ...] = field(default=(), compare=False)

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"

    @property
    def reproduction(self) -> str:
        """Import path of the miniature reproduction module."""
        return f"paperzoo.reproduce.{module_name(self.slug)}"

    @property
    def entry_points(self) -> tuple[str, ...]:
        return (*self.models, *self.objects, self.reproduction)

    def missing(self) -> list[str]:
        """Entry points that do not resolve in the code."""
        return [ep for ep in self.entry_points if not resolves(ep)]

    @property
    def status(self) -> str:
        return _status(self)


def module_name(slug: str) -> str:
    return slug.replace("-", "_")


def resolves(entry_point: str) -> bool:
    """A registered model name, or an importable ``package.module.attr`` / module path."""
    from ..registry import is_model

    if "." not in entry_point:
        return is_model(entry_point)
    try:
        if importlib.util.find_spec(entry_point) is not None:
            return True
    except (ImportError, ValueError):
        pass
    module, _, attr = entry_point.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


@functools.cache
def _status(p: Paper) -> str:
    missing = p.missing()
    if len(missing) == len(p.entry_points):
        return "planned"
    if missing:
        return "partial"
    return "verified" if any(c.earns for c in p.checks) else "implemented"


@functools.cache
def _load() -> dict[str, Paper]:
    with PAPERS_TOML.open("rb") as f:
        entries = tomllib.load(f)["paper"]
    manifest = load_manifest()
    out: dict[str, Paper] = {}
    for e in entries:
        checks = tuple(Check(test=c["test"], doc=c.get("doc", ""), slow=c.get("slow", False), passed=c.get("passed", False),
                             figures=tuple(c.get("figures", {}).items())) for c in manifest.get(e["slug"], []))
        out[e["slug"]] = Paper(
            slug=e["slug"], arxiv=e["arxiv"], title=e["title"], year=int(e["year"]), category=e["category"],
            summary=e["summary"], verify=e["verify"], reproduce=e["reproduce"],
            models=tuple(e.get("models", ())), objects=tuple(e.get("objects", ())), checks=checks,
        )
    return out


def load_manifest() -> dict[str, list[dict]]:
    if not MANIFEST.exists():
        return {}
    return json.loads(MANIFEST.read_text())


def papers(category: str | None = None, status: str | None = None) -> list[Paper]:
    """Catalog entries in PAPERS.md order, optionally filtered by category or computed status."""
    return [p for p in _load().values()
            if (category is None or p.category == category) and (status is None or p.status == status)]


def paper(slug: str) -> Paper:
    """One catalog entry by slug; an unknown slug raises an error suggesting close slugs."""
    entries = _load()
    if slug not in entries:
        raise unknown("paper", slug, entries, "see `paperzoo list`")
    return entries[slug]


def counts() -> dict[str, int]:
    result = dict.fromkeys(STATUSES, 0)
    for p in papers():
        result[p.status] += 1
    return result
