"""tests/conftest.py: a run that writes into the repository fails and names the files; every test starts
from the same logging, DSPy and environment settings, whatever ran before it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_ci_strict import CONFTEST, run_suite

IN_TMP = '''
def test_writes_under_its_own_folder(tmp_path):
    (tmp_path / "out.txt").write_text("mine")
'''
INTO_CHECKOUT = '''
from pathlib import Path


def test_writes_next_to_the_code():
    Path("studies.db").write_text("oops")


def test_rewrites_an_ignored_file():
    Path("artifacts", "old.json").write_text("{}")
'''
SETTINGS = '''
import logging
import os

import dspy


def test_a_changes_process_settings():
    logging.getLogger().addHandler(logging.StreamHandler())  # what logging.basicConfig does outside pytest
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("dspy").setLevel(logging.ERROR)
    dspy.configure(adapter=dspy.JSONAdapter(), track_usage=True)
    os.environ["AUTOEVOL_TEST_LEFTOVER"] = "1"


def test_b_finds_them_as_they_were():
    assert not [handler for handler in logging.getLogger().handlers if type(handler) is logging.StreamHandler]
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("dspy").level != logging.ERROR
    assert dspy.settings.adapter is None and dspy.settings.track_usage is False
    assert "AUTOEVOL_TEST_LEFTOVER" not in os.environ
'''


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout holding the suite's conftest.py, a test file of its own, and an ignored file."""
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / ".gitignore").write_text("artifacts/\n")
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "old.json").write_text('{"kept": true}')
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def test_a_run_that_writes_only_under_its_temporary_folders_passes(checkout: Path) -> None:
    (checkout / "test_tmp.py").write_text(IN_TMP)
    result = run_suite(checkout, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed" in result.stdout and "files written into the repository" not in result.stdout


def test_a_run_that_writes_into_the_checkout_fails_and_names_the_files(checkout: Path) -> None:
    (checkout / "test_tmp.py").write_text(IN_TMP)
    (checkout / "test_checkout.py").write_text(INTO_CHECKOUT)
    result = run_suite(checkout, None)
    assert result.returncode == 1, result.stdout
    assert "3 passed" in result.stdout  # every test passed: the run fails on the files alone
    written = result.stdout.split("files written into the repository")[1]
    assert "studies.db" in written and "artifacts/old.json" in written
    assert "out.txt" not in written and "__pycache__" not in written


INTO_ENVIRONMENT = '''
import sys
from pathlib import Path


def test_a_package_writes_into_its_environment():
    Path(sys.prefix, "lib", "written-at-run-time.bin").write_bytes(b"model cache")


def test_writes_next_to_the_code():
    Path("studies.db").write_text("oops")
'''


def test_the_environment_inside_the_checkout_is_not_the_repository(checkout: Path) -> None:
    # README's commands install into .venv inside the checkout; what packages write there is not the tests'
    (checkout / ".gitignore").write_text("artifacts/\n.venv/\n")
    venv = checkout / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    (checkout / "test_environment.py").write_text(INTO_ENVIRONMENT)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(checkout)], capture_output=True, text=True, cwd=checkout, timeout=120,
                            env={k: v for k, v in os.environ.items() if k != "CI"})
    assert result.returncode == 1, result.stdout  # the file next to the code still fails the run
    written = result.stdout.split("files written into the repository")[1]
    assert "studies.db" in written and "written-at-run-time.bin" not in written and ".venv" not in written


def test_process_settings_a_test_changes_are_put_back_before_the_next(tmp_path: Path) -> None:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_settings.py").write_text(SETTINGS)
    result = run_suite(tmp_path, None, "-p", "no:randomly")  # in file order: a, then b
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout
