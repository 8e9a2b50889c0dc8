"""The catalog and the code must agree; status is computed from what exists and which tests are marked."""
from __future__ import annotations

import re
from pathlib import Path


import paperzoo as pz
from paperzoo.catalog import CATEGORIES, STATUSES, load_manifest, resolves
from paperzoo.registry import _REGISTRY, list_models
from paperzoo.reproduce import available

ROOT = Path(__file__).resolve().parents[1]
PAPERS_MD = ROOT / "docs" / "PAPERS.md"  # a verbatim copy of the project's shared/PAPERS.md, kept in the repository


def _shared_papers_md() -> Path | None:
    """The original shared/PAPERS.md beside the checkout (or beside a folder of worktrees above it), if any."""
    for folder in ROOT.parents:
        if (folder / "shared" / "PAPERS.md").is_file():
            return folder / "shared" / "PAPERS.md"
    return None


def test_all_76_papers_with_their_fields() -> None:
    entries = pz.papers()
    assert len(entries) == 76 and len({p.slug for p in entries}) == 76
    for p in entries:
        assert re.fullmatch(r"\d{4}\.\d{4,5}", p.arxiv), p.slug
        assert p.category in CATEGORIES and p.title and p.summary and p.verify and p.reproduce
        assert 1990 < p.year <= 2026 and p.status in STATUSES
        assert p.models or p.objects, f"{p.slug} lists no entry point"
        assert len(p.summary) < 400, f"{p.slug}: the summary should be one or two sentences"


def test_catalog_matches_papers_md() -> None:
    """The catalog has exactly the (slug, arXiv id) rows of docs/PAPERS.md."""
    rows = re.findall(r"^\| ([a-z0-9-]+) \| (\d{4}\.\d{4,5}) \|", PAPERS_MD.read_text(), re.M)
    assert len(rows) == 76
    assert {(p.slug, p.arxiv) for p in pz.papers()} == set(rows)


def test_papers_md_copy_equals_the_shared_original() -> None:
    """Where the original shared/PAPERS.md is beside the checkout, docs/PAPERS.md is a verbatim copy of it (a
    stale copy fails here); a clean clone, without the original, has the copy alone to check against."""
    original = _shared_papers_md()
    if original is not None:
        assert PAPERS_MD.read_text() == original.read_text(), f"docs/PAPERS.md differs from {original}: copy it again"


def test_marked_slugs_exist() -> None:
    slugs = {p.slug for p in pz.papers()}
    assert set(load_manifest()) <= slugs


def test_papers_with_checks_are_fully_implemented() -> None:
    """A paper with verification tests must have every entry point it lists."""
    for slug, checks in load_manifest().items():
        missing = pz.paper(slug).missing()
        assert not missing, f"{slug} has marked tests but these entry points do not resolve: {missing}"


def test_every_registered_model_is_in_its_papers_entry() -> None:
    for name in list_models():
        meta = _REGISTRY[name].meta
        entry = pz.paper(meta.paper)
        assert name in entry.models, f"model {name} says paper '{meta.paper}' but the catalog does not list it"


def test_every_reproduction_has_a_catalog_entry() -> None:
    slugs = {p.slug for p in pz.papers()}
    assert set(available()) <= slugs


def test_status_rules() -> None:
    for p in pz.papers():
        missing = p.missing()
        if p.status == "planned":
            assert len(missing) == len(p.entry_points)
        elif p.status == "partial":
            assert 0 < len(missing) < len(p.entry_points)
        else:
            assert not missing
        if p.status == "verified":
            assert any(c.passed and not c.slow for c in p.checks)
        else:
            assert not any(c.passed and not c.slow for c in p.checks) or missing


def test_resnet_is_verified() -> None:
    assert pz.paper("resnet").status == "verified"


def test_resolves() -> None:
    assert resolves("resnet50") and resolves("paperzoo.layers.DropPath") and resolves("paperzoo.reproduce.resnet")
    assert not resolves("nonexistent_model") and not resolves("paperzoo.layers.Nope") and not resolves("paperzoo.nope.X")


def test_readme_table_is_generated_from_the_catalog() -> None:
    from paperzoo.catalog.readme import render_table

    text = (ROOT / "README.md").read_text()
    start, end = "<!-- papers:start -->", "<!-- papers:end -->"
    assert start in text and end in text
    assert text.split(start)[1].split(end)[0].strip() == render_table().strip(), (
        "README paper table is stale: run `python -m paperzoo.catalog`")
