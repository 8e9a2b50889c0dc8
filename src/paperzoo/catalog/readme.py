"""The README's paper table, generated from the catalog (``python -m paperzoo.catalog`` rewrites it)."""
from __future__ import annotations

from . import CATEGORIES, STATUSES, counts, papers

START, END = "<!-- papers:start -->", "<!-- papers:end -->"


def render_table() -> str:
    c = counts()
    lines = [
        "| | slug | paper | arXiv | status |",
        "|---|---|---|---|---|",
    ]
    for p in papers():
        section = CATEGORIES[p.category].split(".")[0]
        lines.append(f"| {section} | `{p.slug}` | {p.title} ({p.year}) | [{p.arxiv}]({p.url}) | {p.status} |")
    lines.append("")
    lines.append("Status counts: " + ", ".join(f"{c[s]} {s}" for s in STATUSES) + ".")
    return "\n".join(lines)


def update_readme(text: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"README has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_table()}\n{END}{tail}"
