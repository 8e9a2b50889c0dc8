"""The plugin that makes statuses earned (paperzoo/catalog/checks.py), run on small test suites of its own: a paper
check that is skipped, xfailed or asserts nothing fails; marks come from pytest itself (pytest.param, classes,
helper decorators), so slow checks are known as slow; outcomes and figures are recorded for the catalog."""
from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import pytest

slow_paper = pytest.mark.paper("demo")  # a mark given through a helper name


def check(fn):  # a helper decorator that adds the mark
    return pytest.mark.paper("demo")(fn)


@pytest.mark.paper("demo")
def test_asserts():
    assert 1 + 1 == 2


@pytest.mark.paper("demo")
def test_records(record_property):
    record_property("max_rel_err", 1e-7)


@pytest.mark.paper("demo")
def test_asserts_nothing():
    x = 1 + 1


@pytest.mark.paper("demo")
def test_skipped():
    pytest.skip("no reference here")


@pytest.mark.paper("demo")
@pytest.mark.xfail(reason="known bug")
def test_xfailed():
    assert False


@check
def test_via_helper():
    assert True


@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.slow)])
@slow_paper
def test_param(n):
    assert n


def test_unmarked_without_assert():
    pass
'''


def _run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n    paper(slug): a check\nenable_assertion_pass_hook = true\n")
    result = pytester.runpytest("-p", "paperzoo.catalog.checks", *args)
    return result, json.loads((pytester.path / ".paperzoo" / "paper-checks.json").read_text())


def test_checks_must_run_and_assert(pytester: pytest.Pytester) -> None:
    result, recorded = _run(pytester, "-m", "not slow")
    result.assert_outcomes(passed=5, failed=3, deselected=1)
    out = result.stdout.str()
    assert "test_asserts_nothing passed without a single passing assert" in out
    assert "test_skipped skipped" in out and "test_xfailed xfailed" in out
    records = recorded["partial"]  # a run of one file is partial
    outcome = {k.split("::")[1]: r["outcome"] for k, r in records.items()}
    assert outcome == {"test_asserts": "passed", "test_records": "passed", "test_asserts_nothing": "failed",
                       "test_skipped": "failed", "test_xfailed": "failed", "test_via_helper": "passed",
                       "test_param[1]": "passed"}
    assert records["test_suite.py::test_records"]["figures"] == {"max_rel_err": 1e-7}


def test_slow_marks_from_pytest_param_are_seen(pytester: pytest.Pytester) -> None:
    result, recorded = _run(pytester, "-m", "slow")
    result.assert_outcomes(passed=1, deselected=8)
    record = recorded["partial"]["test_suite.py::test_param[2]"]
    assert record["slow"] is True and record["outcome"] == "passed" and record["slugs"] == ["demo"]
