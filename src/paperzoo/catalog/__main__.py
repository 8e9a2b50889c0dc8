"""``python -m paperzoo.catalog [--check]``: regenerate (or check) verification.json and the README's
paper table from the test sources and the catalog."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import MANIFEST, _load, _status
from .readme import update_readme
from .scan import scan_tests


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[3]
    tests, readme = root / "tests", root / "README.md"
    if not tests.is_dir():
        print(f"error: no tests directory at {tests}; run this from a source checkout", file=sys.stderr)
        return 2
    manifest = json.dumps(scan_tests(tests, root), indent=1, sort_keys=True) + "\n"
    check = "--check" in argv
    stale = []
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
