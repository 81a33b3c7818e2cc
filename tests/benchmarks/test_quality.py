"""benchmarks/quality.py end to end against a fake endpoint: one compile, then e_0, the compiled
evolver and the classic operations measured on the same held-out items and compared with e_0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from tests.test_cli_compile_gepa import write_items

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality.py"



def test_the_compile_comes_first_and_every_method_is_compared_with_e0(tmp_path, server):
    data = write_items(tmp_path / "seeds.jsonl", 40)
    report_file, work = tmp_path / "quality.json", tmp_path / "w"
    command = [sys.executable, str(SCRIPT), "--lm", "openai/fake", "--api-base", server.url, "--seed-file", str(data),
               "--held-out", "10", "--dev-size", "10", "--candidates", "1", "--steps", "1", "--batch-size", "2",
               "--threads", "2", "--judge-lm", "none", "--json", str(report_file), "--work-dir", str(work)]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-secret"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    keys = [method["key"] for method in report["methods"]]
    assert keys[0] == "e0" and keys[-1] == "evol-instruct" and any(key.startswith("compiled") for key in keys)
    assert all(method["items"] == 10 for method in report["methods"])
    assert {d["method"] for d in report["differences"]} == set(keys[1:])
    assert {d["reference"] for d in report["differences"]} == {"e0"}
    # the compile ran before any held-out item was measured (an interrupted run has its compile first)
    compiled = next(work.rglob("*.compiled.json"))
    first_items = min(path.stat().st_mtime_ns for path in work.rglob("*.items.jsonl"))
    assert compiled.stat().st_mtime_ns <= first_items
    assert "sk-test-not-a-secret" not in report_file.read_text()
    assert not report["settings"]["reproducible"]
