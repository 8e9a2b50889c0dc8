"""The pytest plugin that makes a paper's ``verified`` status something a test run earns.

A test marked ``@pytest.mark.paper("slug")`` is a *check*: a comparison with a reference implementation or
with the paper's numbers. This plugin (loaded by the test suite's conftest) holds every check to three rules:

* it must **run**: a check that is skipped or xfailed at run time fails the run instead;
* it must **assert something**: a check that passes without a single passing ``assert`` statement and without
  recording a measured figure (``record_property``) fails — it could not have failed;
* its outcome is **recorded**: every check's outcome and figures go to ``.paperzoo/paper-checks.json`` in the
  checkout — a full default run (``make test``) replaces the file's ``full`` record, a partial run (some files,
  ``-k``, ``-m slow``) updates its ``partial`` record. After a full default run the committed
  ``catalog/verification.json`` must list exactly the default-suite checks that passed, or the run fails as stale;
  ``python -m paperzoo.catalog`` rewrites it from the recorded full run.

Marks are read by pytest itself (``pytest.param(..., marks=...)``, class and module marks, marks added by helper
decorators), so a slow check (``@pytest.mark.slow``, not in the default run) is known as slow wherever its mark
came from; slow checks are listed but never make a paper ``verified``.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(".paperzoo") / "paper-checks.json"


def _doc(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def _figure(value: Any) -> Any:
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def manifest_entries(results: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{slug: [check, ...]}`` for verification.json from a run's records: every check with its first docstring
    paragraph, whether it is slow, whether it passed in that run, and its recorded figures."""
    out: dict[str, list[dict[str, Any]]] = {}
    for node, r in sorted(results.items()):
        for slug in r["slugs"]:
            entry = {"test": node, "doc": r["doc"], "slow": r["slow"], "passed": r["outcome"] == "passed"}
            if r["figures"]:
                entry["figures"] = r["figures"]
            out.setdefault(slug, []).append(entry)
    return dict(sorted(out.items()))


def passed_default_checks(manifest: dict[str, list[dict[str, Any]]]) -> set[tuple[str, str]]:
    return {(slug, c["test"]) for slug, checks in manifest.items() for c in checks if c["passed"] and not c["slow"]}


class PaperChecks:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, dict[str, Any]] = {}
        self.asserts: Counter[str] = Counter()

    # ------------------------------------------------------------------ which tests are checks
    def _record(self, item: pytest.Item, outcome: str) -> None:
        slugs = sorted({m.args[0] for m in item.iter_markers("paper") if m.args})
        if not slugs:
            return
        self.records[item.nodeid] = {"slugs": slugs, "slow": item.get_closest_marker("slow") is not None,
                                     "doc": _doc(item), "outcome": outcome, "figures": {}}

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self._record(item, "not run")

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            self._record(item, "deselected")

    # ------------------------------------------------------------------ the rules
    def pytest_assertion_pass(self, item: pytest.Item, lineno: int, orig: str, expl: str) -> None:
        self.asserts[item.nodeid] += 1

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        outcome = yield
        report = outcome.get_result()
        record = self.records.get(item.nodeid)
        if record is None:
            return
        if report.skipped:  # skipped, or xfailed (which reports as skipped with ``wasxfail``)
            why = getattr(report, "wasxfail", None)
            reason = f"xfailed ({why})" if why is not None else f"skipped ({report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr})"
            report.outcome = "failed"
            report.longrepr = (f"paper check {item.nodeid} {reason}: a check that verifies "
                               f"{', '.join(record['slugs'])} must run and pass; mark it slow instead of skipping it")
            record["outcome"] = "failed"
            return
        if report.when != "call":
            if report.failed:
                record["outcome"] = "failed"
            return
        if report.passed and not self.asserts[item.nodeid] and not item.user_properties:
            report.outcome = "failed"
            report.longrepr = (f"paper check {item.nodeid} passed without a single passing assert and without a "
                               "recorded figure (record_property): it cannot fail, so it verifies nothing")
        record["outcome"] = report.outcome
        record["figures"] = {k: _figure(v) for k, v in item.user_properties}

    # ------------------------------------------------------------------ the record
    def _full_default_run(self) -> bool:
        opt = self.config.option
        rootdir = Path(self.config.rootpath)
        testpaths = [str(rootdir / p) for p in self.config.getini("testpaths")]
        args = [str((Path(self.config.invocation_params.dir) / a).resolve()) for a in self.config.args]
        default_paths = not self.config.invocation_params.args or sorted(args) == sorted(testpaths)
        return default_paths and not opt.keyword and opt.markexpr == "not slow" and not getattr(opt, "lf", False) \
            and not getattr(opt, "maxfail", 0) and not getattr(opt, "deselect", None)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.records or hasattr(self.config, "workerinput"):
            return
        root = Path(self.config.rootpath)
        results = root / RESULTS
        results.parent.mkdir(exist_ok=True)
        saved = json.loads(results.read_text()) if results.exists() else {}
        full = self._full_default_run()
        if full:
            payload = {"full": self.records, "partial": {}}
        else:
            ran = {k: r for k, r in self.records.items() if r["outcome"] not in ("deselected", "not run")}
            payload = {"full": saved.get("full", {}), "partial": {**saved.get("partial", {}), **ran}}
        results.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        if not full or exitstatus != 0:
            return
        from . import MANIFEST, load_manifest

        if passed_default_checks(load_manifest()) != passed_default_checks(manifest_entries(self.records)):
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            message = (f"{MANIFEST} does not list exactly the paper checks that passed in this run: the catalog's "
                       "statuses would not be earned by it. Rewrite it from this run with `python -m paperzoo.catalog`.")
            if reporter is not None:
                reporter.write_line(message, red=True, bold=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(PaperChecks(config), "paperzoo-paper-checks")
