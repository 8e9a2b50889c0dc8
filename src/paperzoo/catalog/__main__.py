"""``python -m paperzoo.catalog [--check]``: regenerate (or check) verification.json from the tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import MANIFEST
from .scan import scan_tests


def main(argv: list[str]) -> int:
    tests = Path(__file__).resolve().parents[3] / "tests"
    if not tests.is_dir():
        print(f"error: no tests directory at {tests}; run this from a source checkout", file=sys.stderr)
        return 2
    text = json.dumps(scan_tests(tests), indent=1, sort_keys=True) + "\n"
    if "--check" in argv:
        if not MANIFEST.exists() or MANIFEST.read_text() != text:
            print("verification.json is stale: run `python -m paperzoo.catalog`", file=sys.stderr)
            return 1
        return 0
    MANIFEST.write_text(text)
    print(f"wrote {MANIFEST}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
