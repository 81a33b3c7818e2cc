"""benchmarks/head_to_head.py end to end against a fake endpoint: every method of the verdict is
measured on the same held-out items and compared with e_0 and with the classic operations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_cli_compile_gepa import write_items

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "head_to_head.py"


def test_every_method_is_measured_and_compared_with_e0_and_the_classic_operations(tmp_path, server):
    data = write_items(tmp_path / "seeds.jsonl", 60)
    report_file = tmp_path / "h2h.json"
    command = [sys.executable, str(SCRIPT), "--lm", "openai/fake", "--api-base", server.url, "--seed-file", str(data),
               "--held-out", "10", "--dev-size", "10", "--candidates", "1", "--steps", "1", "--batch-size", "2",
               "--threads", "2", "--judge-lm", "none", "--json", str(report_file), "--work-dir", str(tmp_path / "w"),
               "--compile-arg", 'starts=["weak"]', "--gepa-max-metric-calls", "40",
               "--results-md", str(tmp_path / "RESULTS.md")]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-secret"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    keys = [method["key"] for method in report["methods"]]
    assert keys[:2] == ["e0", "evol-instruct"] and {"h2h-auto-evol", "h2h-gepa"} <= set(keys)
    assert all(method["items"] == 10 for method in report["methods"])
    compared = {(d["reference"], d["method"]) for d in report["differences"]}
    for key in keys[1:]:
        assert ("e0", key) in compared
    for key in keys[2:]:
        assert ("evol-instruct", key) in compared
    assert ("evol-instruct", "e0") not in compared  # e_0 against the classic operations once
    # GEPA found the CAREFUL method and confirmed it on the items it never saw
    gepa = report["compiles"]["gepa"]
    assert gepa["confirmation"]["items"] == 10 and gepa["confirmation"]["reference_only"] > 0
    # GEPA's LM-call budget defaults to what Auto Evol-Instruct's compile recorded
    assert gepa["gepa"]["max_lm_calls"] == sum(u["calls"] for u in report["compiles"]["auto-evol"]["usage"].values())
    carefully = next(m for m in report["methods"] if m["key"] == "h2h-gepa")
    e0 = next(m for m in report["methods"] if m["key"] == "e0")
    assert carefully["failed"] < e0["failed"]
    assert report["compiles"]["auto-evol"]["start_chosen"] in ("student", "starting method: weak")
    for later, method in enumerate(report["methods"]):  # a method measured already is not evaluated again
        if any(m["fingerprint"] == method["fingerprint"] for m in report["methods"][:later]):
            assert method["seconds"] == 0.0 and "(= " in method["label"], method["key"]
    assert "evol prompt tokens / item" in done.stdout and "minus Evol-Instruct operations" in done.stdout
    assert "sk-test-not-a-secret" not in report_file.read_text()
    results = (tmp_path / "RESULTS.md").read_text()
    assert "<!-- begin head_to_head-h2h -->" in results and "minus e_0" in results


def test_dry_run_plans_every_part_and_calls_nothing(tmp_path):
    data = write_items(tmp_path / "seeds.jsonl", 60)
    closed = "http://127.0.0.1:9/v1"  # nothing listens there: any call would fail the run
    command = [sys.executable, str(SCRIPT), "--lm", "openai/fake", "--api-base", closed, "--seed-file", str(data),
               "--held-out", "10", "--dev-size", "10", "--candidates", "2", "--steps", "2", "--batch-size", "2",
               "--judge-lm", "none", "--max-tokens", "300", "--compile-arg", 'starts=["weak", "deepen"]',
               "--work-dir", str(tmp_path / "w"), "--dry-run", "--decode-rate", "10"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "50 compile items, 10 held-out items" in out
    assert "Auto Evol-Instruct compile" in out and "GEPA compile" in out
    assert "held-out evaluations (5 methods x 10 items at most)" in out
    assert "nothing was sent to any LM" in out
    assert not any(line.startswith("  judge (") for line in out.splitlines())  # --judge-lm none: no judge calls
    whole = out.split("whole run: at most ")[1]
    planned = [int(line.split(": ")[1].split(" calls")[0]) for line in out.splitlines() if line.startswith("  total: ")]
    assert int(whole.split(" LM calls")[0]) == sum(planned)  # both compiles and the held-out part
    assert planned[2] == 2 * 5 * 10  # an evolution and its answer per held-out item and method
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*.jsonl"))  # no record written
