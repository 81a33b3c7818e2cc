"""The API key never reaches an output, a journal, a cache, a saved evolver, a report or a log."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from autoevol.testing.fake_openai import serve_in_subprocess

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed.jsonl"
SECRET = "sk-autoevol-test-7f3a9c"


def autoevol(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["autoevol", "--verbose", *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "OPENAI_API_KEY": SECRET, "NO_COLOR": "1"})


def files_containing_the_secret(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]


def test_no_file_or_log_holds_the_key(tmp_path):
    with serve_in_subprocess() as server:
        lm = ["--evol-lm", "openai/fake", "--api-base", server.url]
        stopped = autoevol("evolve", str(EXAMPLE), "--out", "out.jsonl", "--max-calls", "6", *lm, cwd=tmp_path)
        assert stopped.returncode == 3  # budget: journal, job file and call cache are on disk now
        assert files_containing_the_secret(tmp_path) == []
        finished = autoevol("evolve", str(EXAMPLE), "--out", "out.jsonl", *lm, cwd=tmp_path)
        compiled = autoevol("compile", str(EXAMPLE), "--out", "evolver.json", "--steps", "1", "--candidates", "2",
                            "--batch-size", "2", "--dev-size", "4", "--confirm-size", "2", "--keep-unchanged", *lm,
                            cwd=tmp_path)
        report = autoevol("report", "out.jsonl", "--out", "report.html", "--no-quality", cwd=tmp_path)
    for result in (finished, compiled, report):  # the budget stopped only the first run
        assert result.returncode == 0, result.stderr[-1500:]
    for result in (stopped, finished, compiled, report):
        assert SECRET not in result.stdout + result.stderr
    assert (tmp_path / "out.jsonl").exists() and (tmp_path / "evolver.json").exists()
    assert (tmp_path / "report.html").exists()
    assert files_containing_the_secret(tmp_path) == []
