"""The one report format: ``report.md`` (claim, setup, results table, verdict, differences, figures) and
``results.json`` (the same numbers, machine-readable)."""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Report:
    slug: str
    claim: str  # the paper's claim, in one sentence
    setup: str  # the miniature experiment, in a few sentences
    columns: list[str]
    rows: list[dict[str, Any]]
    held: bool | None  # did the claim hold in miniature (None: inconclusive)
    verdict: str  # why: the measured numbers behind ``held``
    differences: list[str] = field(default_factory=list)  # how the miniature differs from the paper
    figures: list[str] = field(default_factory=list)  # PNG files written beside the report
    results: dict[str, Any] = field(default_factory=dict)  # extra numbers for results.json
    tables: list[dict[str, Any]] = field(default_factory=list)  # further tables: {"title", "columns", "rows"}
    wall_time_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False

    def _table(self, columns: list[str] | None = None, rows: list[dict[str, Any]] | None = None) -> str:
        columns = self.columns if columns is None else columns
        rows = self.rows if rows is None else rows

        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
            return str(v)

        head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)

    def markdown(self) -> str:
        from ..catalog import paper

        p = paper(self.slug)
        outcome = {True: "**held**", False: "**did not hold**", None: "**inconclusive**"}[self.held]
        lines = [
            f"# {p.title} — reproduction in miniature",
            "",
            f"[arXiv:{p.arxiv}]({p.url}) · slug `{self.slug}` · {p.year}",
            "",
        ]
        if self.smoke:
            lines += ["> **Smoke run**: shrunk to seconds to test the code path. These numbers are not evidence.", ""]
        lines += [
            "## Claim", "", self.claim, "",
            "## Setup", "", self.setup, "",
            "## Results", "", self._table(),
        ]
        for t in self.tables:
            lines += [f"### {t['title']}", "", self._table(t["columns"], t["rows"])]
        lines += [
            f"## Verdict: the claim {outcome} in miniature", "", self.verdict, "",
        ]
        if self.figures:
            lines += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        if self.differences:
            lines += ["## How this differs from the paper", ""] + [f"- {d}" for d in self.differences] + [""]
        lines += [
            "## Run", "",
            f"Wall time {self.wall_time_s:.0f} s on {platform.machine()} with {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}. Re-run with `paperzoo reproduce {self.slug}`; the configuration used:", "",
            "```json", json.dumps(self.config, indent=1), "```", "",
        ]
        return "\n".join(lines)

    def write(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(self.markdown())
        data = {
            "slug": self.slug, "held": self.held, "claim": self.claim, "verdict": self.verdict,
            "columns": self.columns, "rows": self.rows, "tables": self.tables, "results": self.results, "figures": self.figures,
            "wall_time_s": self.wall_time_s, "config": self.config, "smoke": self.smoke,
        }
        (out / "results.json").write_text(json.dumps(data, indent=1, default=float))
        return out / "report.md"
