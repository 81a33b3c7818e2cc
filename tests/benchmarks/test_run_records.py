"""benchmarks/run_records.py: a benchmark's record folder is committed as it grows, alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from run_records import GitCheckpoint  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@example.org"}.items():
        monkeypatch.setenv(key, value)
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def test_the_records_are_committed_when_due_and_nothing_else_is(repo: Path):
    records = repo / "benchmarks" / "runs" / "demo"
    checkpoint = GitCheckpoint(records, every_minutes=0, label="demo")
    (records / "a.items.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (repo / "code.py").write_text("x = 2\n")  # work in progress beside the run
    checkpoint.due_commit()
    assert git(repo, "log", "-1", "--format=%s").strip() == "demo: run records, 2 lines"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["benchmarks/runs/demo/a.items.jsonl"]
    assert git(repo, "status", "--porcelain").split() == ["M", "code.py"]
    commits = git(repo, "rev-list", "--count", "HEAD")
    checkpoint.final_commit()  # nothing changed: no empty commit
    assert git(repo, "rev-list", "--count", "HEAD") == commits


def test_records_are_not_committed_before_the_interval(repo: Path):
    records = repo / "runs"
    checkpoint = GitCheckpoint(records, every_minutes=60, label="demo")
    (records / "a.items.jsonl").write_text('{"id": 1}\n')
    checkpoint.due_commit()
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
    checkpoint.final_commit()
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"


def test_outside_a_checkout_nothing_is_committed_and_the_run_says_so(tmp_path: Path, capsys):
    checkpoint = GitCheckpoint(tmp_path / "records", every_minutes=0, label="demo")
    (tmp_path / "records" / "a.items.jsonl").write_text('{"id": 1}\n')
    checkpoint.final_commit()
    assert not checkpoint.enabled and "not in a git checkout" in capsys.readouterr().err
    assert not GitCheckpoint(tmp_path / "records", every_minutes=None, label="demo").enabled


def test_a_run_stopped_by_its_budget_exits_3_with_its_records_committed(repo: Path, monkeypatch, capsys):
    import argparse

    import quality

    from autoevol.lm import BudgetExceeded

    monkeypatch.setattr(quality, "RUNS_DIR", repo / "benchmarks" / "runs")

    def interrupted(args: argparse.Namespace, checkpoint: GitCheckpoint) -> None:
        assert args.resume  # --name resumes from its records
        (quality.RUNS_DIR / args.name / "e0.items.jsonl").write_text('{"id": 1}\n')
        raise BudgetExceeded("time budget of 1 min reached")

    args = argparse.Namespace(name="demo", resume=False, commit_every=30.0, no_commit=False)
    with pytest.raises(SystemExit) as stopped:
        quality.run_recorded(args, "quality.py", interrupted)
    assert stopped.value.code == quality.EXIT_BUDGET == 3
    assert "stopped: time budget of 1 min reached" in capsys.readouterr().err
    assert git(repo, "log", "-1", "--format=%s").strip() == "benchmarks/quality.py --name demo: run records, 1 lines"


def test_a_section_is_replaced_between_its_markers_and_the_rest_is_kept(tmp_path: Path):
    from run_records import replace_section

    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Other\n\nkept\n")
    replace_section(results, "demo", "## Demo\n\nfirst")
    replace_section(results, "demo", "## Demo\n\nsecond")
    text = results.read_text()
    assert text.count("<!-- begin demo -->") == 1 and "second" in text and "first" not in text
    assert text.startswith("# Results\n\n## Other\n\nkept\n") and text.endswith("<!-- end demo -->\n")
    results.write_text(text + "\n## Later\n\nalso kept\n")
    replace_section(results, "demo", "## Demo\n\nthird")
    assert results.read_text().endswith("third\n<!-- end demo -->\n\n## Later\n\nalso kept\n")


def test_a_terminated_run_commits_what_it_finished(repo: Path):
    import os
    import signal
    import time

    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    code = f"""
import argparse, sys, threading
from pathlib import Path
sys.path.insert(0, {str(benchmarks)!r})
import quality
quality.RUNS_DIR = Path({str(repo / "runs")!r})

def endless(args, checkpoint):
    (quality.RUNS_DIR / args.name / "e0.items.jsonl").write_text('{{"id": 1}}\\n')
    threading.Event().wait()  # until terminated

quality.run_recorded(argparse.Namespace(name="demo", resume=False, commit_every=30.0, no_commit=False),
                     "quality.py", endless)
"""
    process = subprocess.Popen([sys.executable, "-c", code], cwd=repo, env=os.environ.copy())
    record = repo / "runs" / "demo" / "e0.items.jsonl"
    deadline = time.monotonic() + 600  # a bound a loaded machine cannot reach, not a timing
    while time.monotonic() < deadline:  # until observed progress: the first line is on disk
        if (record.exists() and record.read_text().endswith("\n")) or process.poll() is not None:
            break
        time.sleep(0.1)
    assert record.exists() and record.read_text().endswith("\n"), "the run never wrote its first line"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert git(repo, "log", "-1", "--format=%s").strip() == "benchmarks/quality.py --name demo: run records, 1 lines"
