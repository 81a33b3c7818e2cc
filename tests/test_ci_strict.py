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
MODULE = '''
import pytest
pytest.importorskip("autoevol_no_such_module")

def test_never_collected():
    pass
'''


def run_suite(folder: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=120)


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
