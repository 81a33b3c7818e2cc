"""Suite-wide rules: under CI (``CI=true``) no test may skip.

Tests that need a real component (the embedded llama.cpp model, PostgreSQL, headless Chromium, Ray)
skip with a reason on a machine that lacks it. Under CI every one of those components is installed
(``.ci/run`` does it), so a skip there means a test silently did not run: it is reported as a
failure instead, with the skip's reason, and a green CI means every test ran.
"""

from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _reason(longrepr: object) -> str:
    """The message of a skip report (pytest stores it as a (path, line, message) tuple)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refuse(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI ({_reason(report.longrepr)}); with CI=true every test must run: "
                       "install the missing component (bash .ci/run installs all of them)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        _refuse(report)


_refused_modules: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:  # a whole module skipped at import (pytest.importorskip at top level)
        # failing the collector would stop the whole run before any test; the run fails at the end instead
        _refused_modules.append(f"{report.nodeid}: {_reason(report.longrepr)}")


def pytest_terminal_summary(terminalreporter: object) -> None:
    if _refused_modules:
        terminalreporter.section("modules skipped under CI (refused: every test must run)")  # type: ignore[attr-defined]
        for line in _refused_modules:
            terminalreporter.write_line(line)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _refused_modules and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
