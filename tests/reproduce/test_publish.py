"""The published table is generated from synthetic results.json files: one row per catalog paper, the
recorded verdicts and numbers, small copies of the main figures; smoke runs and tampered verdicts are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperzoo.catalog import papers
from paperzoo.errors import DataError
from paperzoo.reproduce._kit import all_of, beats, plots
from paperzoo.reproduce.publish import FIGURE_WIDTH, load_runs, main, publish
from paperzoo.reproduce.report import Report


def _write(runs: Path, slug: str, decision, smoke: bool = False, wide: bool = True) -> Path:
    out = runs / slug
    out.mkdir(parents=True)
    figure = plots.bars(out, "main.png", {"A": [80.0, 82.0, 81.0], "B": [70.0, 71.0, 72.0]}, "synthetic")
    report = Report(slug=slug, claim=f"claim of {slug}", setup="synthetic", columns=["arm"], rows=[{"arm": "A"}],
                    decision=decision, figures=[figure], wall_time_s=321.0, config={"seeds": [0, 1, 2]}, smoke=smoke,
                    date="2026-11-30T10:00:00+00:00")
    report.write(out)
    return out / "results.json"


def test_publish_writes_one_row_per_paper_with_the_recorded_numbers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    held = beats([80.0, 82.0, 81.0], [70.0, 71.0, 72.0], a_name="SE-ResNet", b_name="ResNet", metric="test acc (%)")
    mixed = all_of([held, beats([85.4], [85.0], a_name="x", b_name="y")], "both")
    _write(runs, "senet", held)
    _write(runs, "cbam", mixed)
    out = publish(runs, tmp_path / "docs" / "reproductions.md")
    text = out.read_text()
    entries = papers()
    table_rows = [line for line in text.splitlines() if line.startswith("| `") or line.startswith("| [`")]
    assert len(table_rows) == len(entries) == 76
    assert sum("not run yet" in line for line in table_rows) == len(entries) - 2
    senet = next(line for line in table_rows if "`senet`" in line)
    assert "**held**" in senet and "SE-ResNet 81 +- 1 vs ResNet 71 +- 1" in senet and "+10" in senet
    assert "0, 1, 2" in senet and "5.3 min" in senet and "2026-11-30" in senet and "torch" in senet
    cbam = next(line for line in table_rows if "`cbam`" in line)
    assert "**inconclusive**" in cbam
    assert "2 of 76 papers run: 1 held, 0 did not hold, 1 inconclusive; 74 not run yet." in text
    assert held.text in text  # the full decision of each run is listed below the tables
    from PIL import Image

    with Image.open(tmp_path / "docs" / "reproductions" / "senet.png") as image:
        assert image.width == FIGURE_WIDTH  # copied small (the original is wider)
    assert "![senet](reproductions/senet.png)" in text


def test_smoke_runs_are_refused(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    _write(runs, "senet", beats([80.0, 82.0], [70.0, 71.0]), smoke=True)
    with pytest.raises(DataError, match="smoke run"):
        load_runs(runs)
    assert main([str(runs), "--out", str(tmp_path / "r.md")]) == 2
    assert "smoke run" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_a_verdict_that_is_not_the_rules_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    path = _write(runs, "senet", beats([80.0, 82.0, 81.0], [70.0, 71.0, 72.0]))
    data = json.loads(path.read_text())
    data["decision"]["values"]["A"] = [70.5, 71.0, 71.5]  # numbers edited after the fact: "held" no longer follows
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="not what the kit's rule gives"):
        load_runs(runs)


def test_a_misplaced_results_file_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    path = _write(runs, "senet", beats([80.0, 82.0], [70.0, 71.0]))
    path.parent.rename(runs / "cbam")
    with pytest.raises(DataError, match="does not match its folder"):
        load_runs(runs)
