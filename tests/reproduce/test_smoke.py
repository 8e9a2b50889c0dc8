"""Every reproduction runs end to end in its SMOKE setting and writes an honest report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperzoo.reproduce import available, run


@pytest.mark.parametrize("slug", available())
def test_reproduction_smoke(slug: str, tmp_path: Path) -> None:
    report = run(slug, tmp_path, smoke=True)
    text = (tmp_path / "report.md").read_text()
    assert "Smoke run" in text and "## Claim" in text and "## Verdict" in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["slug"] == slug and data["smoke"] is True and data["rows"]
    assert data["held"] in (True, False, None)
    for fig in report.figures:
        assert (tmp_path / fig).stat().st_size > 1000
