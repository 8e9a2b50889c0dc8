"""Every reproduction runs end to end in its SMOKE setting and writes an honest report: the verdict it
records is what the kit's rule gives for the numbers it records, and the report states those numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperzoo.reproduce import available, run
from paperzoo.reproduce._kit.verdicts import consistent, rederive


def _decisions(record: dict) -> list[dict]:
    return [record] + [d for p in record.get("parts", []) for d in _decisions(p)]


@pytest.mark.parametrize("slug", available())
def test_reproduction_smoke(slug: str, tmp_path: Path) -> None:
    report = run(slug, tmp_path, smoke=True)
    text = (tmp_path / "report.md").read_text()
    assert "Smoke run" in text and "## Claim" in text and "## Verdict" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["slug"] == slug and data["smoke"] is True and data["rows"]
    decision = data["decision"]
    assert data["held"] == rederive(decision).held == report.held  # the rule's outcome for the recorded numbers
    assert consistent(decision)  # effect, margin and noise too, at every level of a combined claim
    assert data["outcome"] in text  # the verdict heading states the outcome
    for d in _decisions(decision):
        assert d["text"] in text  # each (sub-)claim's numbers, spread and seeds are stated in report.md
        if not d["parts"]:  # a leaf claim: per-seed values of its two arms, counted in "seeds"
            assert [len(v) for v in d["values"].values()] == d["seeds"]
    assert data["machine"]["torch_threads"] >= 1 and data["machine"]["torch"] and data["date"]
    assert data["wall_time_s"] > 0
    for fig in report.figures:
        assert (tmp_path / fig).stat().st_size > 1000


@pytest.mark.parametrize("slug", available())
def test_full_and_smoke_settings_name_real_config_keys(slug: str) -> None:
    """SMOKE and FULL override only keys the Config has (a stale key would fail only when someone runs --full)."""
    from paperzoo.reproduce import load, make_config

    make_config(slug, smoke=True)
    if hasattr(load(slug), "FULL"):
        make_config(slug, full=True)
