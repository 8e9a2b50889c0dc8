"""``python -m paperzoo.catalog [--check] [--merge]``: rewrite (or check) verification.json from the paper checks
that the last test run recorded (``.paperzoo/paper-checks.json``, written by the suite's plugin), and the README's
paper table from the catalog.

The file is written from the last full default run (``make test``); ``--merge`` also takes in the checks that
partial runs recorded since (a few test files, or ``-m slow``), which then replace the full run's record of
those tests (a later full run still has to agree with the file, or it fails as stale)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import MANIFEST, _load, _status
from .checks import RESULTS, manifest_entries
from .readme import update_readme


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[3]
    readme = root / "README.md"
    results = root / RESULTS
    check, merge = "--check" in argv, "--merge" in argv
    stale = []
    if not results.exists():
        print(f"error: no recorded test run at {results}; run `make test` first", file=sys.stderr)
        return 2
    run = json.loads(results.read_text())
    if not run.get("full"):
        print(f"error: {results} records no full run of the default suite; run `make test` first", file=sys.stderr)
        return 2
    records = {**run["full"], **(run.get("partial", {}) if merge else {})}
    entries = manifest_entries(records)
    manifest = json.dumps(entries, indent=1, sort_keys=True) + "\n"
    if not MANIFEST.exists() or MANIFEST.read_text() != manifest:
        stale.append(MANIFEST.name)
        if not check:
            MANIFEST.write_text(manifest)
    _load.cache_clear()
    _status.cache_clear()
    text = readme.read_text()
    new = update_readme(text)
    if new != text:
        stale.append(readme.name)
        if not check:
            readme.write_text(new)
    if check and stale:
        print(f"stale: {', '.join(stale)}; run `python -m paperzoo.catalog`", file=sys.stderr)
        return 1
    print("up to date" if not stale else f"rewrote {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
