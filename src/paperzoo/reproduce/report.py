"""The one report format: ``report.md`` (claim, setup, results table, verdict with its deciding numbers,
differences, figures, the run) and ``results.json`` (the same numbers, the decision with its inputs, the
machine, the date and the wall time — what ``paperzoo.reproduce.publish`` builds the published table from).

The verdict is never typed by hand: ``held`` is the outcome of the report's ``decision``, which
``_kit.verdicts`` computed from the measured per-seed values.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ._kit.verdicts import Decision


def machine() -> dict[str, Any]:
    """Where a run ran: platform, CPUs, torch threads and version."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "usable_cpus": usable, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_line(m: dict[str, Any]) -> str:
    """The machine in a few words, e.g. "x86_64, 2 CPUs, 2 torch threads, torch 2.5.1"."""
    gpu = f", {m['cuda']}" if m.get("cuda") else ""
    threads = m.get("torch_threads", "?")
    return (f"{m.get('machine', '?')}, {m.get('usable_cpus') or m.get('cpu_count', '?')} CPUs, "
            f"{threads} torch thread{'' if threads == 1 else 's'}, torch {m.get('torch', '?')}{gpu}")


def _bullets(d: Decision, depth: int = 0):
    yield "  " * depth + "- " + d.text
    for p in d.parts:
        yield from _bullets(p, depth + 1)


@dataclass
class Report:
    slug: str
    claim: str  # the paper's claim, in one sentence
    setup: str  # the miniature experiment, in a few sentences
    columns: list[str]
    rows: list[dict[str, Any]]
    decision: Decision  # the verdict: computed by _kit.verdicts from the measured per-seed values
    discussion: str = ""  # what the numbers behind the decision mean (prose, beside the decision's own text)
    differences: list[str] = field(default_factory=list)  # how the miniature differs from the paper
    figures: list[str] = field(default_factory=list)  # PNG files written beside the report; the first is the main one
    results: dict[str, Any] = field(default_factory=dict)  # extra numbers for results.json
    tables: list[dict[str, Any]] = field(default_factory=list)  # further tables: {"title", "columns", "rows"}
    wall_time_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    smoke: bool = False
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def held(self) -> bool | None:
        """Did the claim hold in miniature (None: inconclusive)."""
        return self.decision.held

    @property
    def verdict(self) -> str:
        """The decision's account of its numbers, then the discussion."""
        return " ".join(t for t in (*(line.strip() for line in self.decision.lines()), self.discussion) if t)

    def _table(self, columns: list[str] | None = None, rows: list[dict[str, Any]] | None = None) -> str:
        columns = self.columns if columns is None else columns
        rows = self.rows if rows is None else rows

        def fmt(v: Any) -> str:
            if isinstance(v, float):
                return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
            return str(v)

        head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        return head + "".join("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |\n" for r in rows)

    def markdown(self, run_machine: dict[str, Any] | None = None) -> str:
        from ..catalog import paper

        p = paper(self.slug)
        outcome = f"**{self.decision.outcome}**"
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
        lines += [f"## Verdict: {outcome} in miniature", ""]
        lines += list(_bullets(self.decision))
        lines += ["", "The rule (`paperzoo.reproduce._kit.verdicts`): an effect counts only beyond max(stated margin, "
                  "2 x the standard error of the difference of the arms' seed means); one seed per arm gives no noise "
                  "estimate.", ""]
        if self.discussion:
            lines += [self.discussion, ""]
        if self.figures:
            lines += ["## Figures", ""] + [f"![{f}]({f})" for f in self.figures] + [""]
        if self.differences:
            lines += ["## How this differs from the paper", ""] + [f"- {d}" for d in self.differences] + [""]
        m = run_machine or machine()
        lines += [
            "## Run", "",
            f"Wall time {self.wall_time_s:.0f} s on {machine_line(m)} ({m['platform']}), {self.date}. "
            f"Re-run with `paperzoo reproduce {self.slug}`; the configuration used:", "",
            "```json", json.dumps(self.config, indent=1), "```", "",
        ]
        return "\n".join(lines)

    def to_dict(self, run_machine: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "slug": self.slug, "held": self.held, "outcome": self.decision.outcome, "claim": self.claim,
            "verdict": self.verdict, "decision": self.decision.to_dict(), "setup": self.setup,
            "columns": self.columns, "rows": self.rows, "tables": self.tables, "results": self.results,
            "figures": self.figures, "wall_time_s": self.wall_time_s, "date": self.date,
            "machine": run_machine or machine(), "config": self.config, "smoke": self.smoke,
        }

    def write(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        m = machine()
        (out / "report.md").write_text(self.markdown(m))
        (out / "results.json").write_text(json.dumps(self.to_dict(m), indent=1, default=float))
        return out / "report.md"
