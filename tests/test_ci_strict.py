"""tests/conftest.py: a test or module that skips fails the run under CI, and only under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
TESTS = '''
import pytest

def test_runs():
    pass

def test_needs_a_component():
    pytest.skip("needs unicorns")

@pytest.mark.xfail(reason="a known bug")
def test_known_bug():
    assert False
'''
#: The way every real component skips: a ``skipif`` marker (on a test or on a whole module), a skip while a
#: fixture is set up (PostgreSQL's server), and ``pytest.importorskip`` inside a fixture.
COMPONENTS = '''
import pytest

pytestmark = pytest.mark.skipif(True, reason="module needs a griffin")


@pytest.fixture(scope="module")
def server():
    pytest.skip("no dragon server here")


@pytest.fixture
def driver():
    return pytest.importorskip("autoevol_no_such_driver")


def test_marked():
    pass
'''
COMPONENT_TESTS = '''
import pytest


@pytest.mark.skipif(True, reason="needs a phoenix")
def test_marked():
    pass


@pytest.fixture(scope="module")
def server():
    pytest.skip("no dragon server here")


@pytest.fixture
def driver():
    return pytest.importorskip("autoevol_no_such_driver")


def test_uses_the_server(server):
    pass


def test_uses_the_server_again(server):
    pass


def test_uses_the_driver(driver):
    pass


@pytest.mark.xfail(reason="a known bug", run=False)
def test_known_bug_not_run():
    pass
'''
MODULE = '''
import pytest
pytest.importorskip("autoevol_no_such_module")

def test_never_collected():
    pass
'''


def run_suite(folder: Path, ci: str | None, *options: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``folder`` in a process of its own, with ``CI`` set to ``ci`` (or unset) and ``options``."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *options,
                           str(folder)], capture_output=True, text=True, env=env, cwd=folder, timeout=120)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_items.py").write_text(TESTS)
    return tmp_path


def test_outside_ci_a_skip_is_shown_with_its_reason(suite: Path) -> None:
    result = run_suite(suite, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in result.stdout
    assert "needs unicorns" in result.stdout


def test_under_ci_a_skipped_test_fails_with_its_reason(suite: Path) -> None:
    result = run_suite(suite, "true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 xfailed" in result.stdout  # the expected failure stays expected
    assert "skipped under CI (needs unicorns)" in result.stdout


def test_under_ci_a_skipped_module_fails_the_run_after_the_others_ran(suite: Path) -> None:
    (suite / "test_module.py").write_text(MODULE)
    assert run_suite(suite, "false").returncode == 0
    (suite / "test_items.py").write_text(TESTS.replace('pytest.skip("needs unicorns")', "pass"))
    result = run_suite(suite, "true")
    assert result.returncode == 1, result.stdout
    assert "2 passed" in result.stdout  # the rest of the suite still ran
    assert "autoevol_no_such_module" in result.stdout.split("modules skipped under CI")[1]


def test_under_ci_skips_from_markers_and_fixture_setup_fail_with_their_reasons(suite: Path) -> None:
    (suite / "test_items.py").write_text(COMPONENT_TESTS)
    (suite / "test_marked_module.py").write_text(COMPONENTS)
    outside = run_suite(suite, None)
    assert outside.returncode == 0, outside.stdout
    assert "5 skipped, 1 xfailed" in outside.stdout
    result = run_suite(suite, "true")
    assert result.returncode == 1, result.stdout
    assert "1 xfailed, 5 errors" in result.stdout  # refused in set-up: errors; an expected failure stays expected
    for reason in ("needs a phoenix", "module needs a griffin", "no dragon server here",
                   "could not import 'autoevol_no_such_driver'"):
        assert f"skipped under CI ({reason}" in result.stdout, reason
    assert result.stdout.count("skipped under CI (no dragon server here)") == 2  # every test of the fixture
