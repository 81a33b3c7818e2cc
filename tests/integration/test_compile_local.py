"""`autoevol compile` with the real embedded model at tiny settings, then `autoevol evolve --program`.

SmolLM2-135M follows formats poorly, so this checks structure (exit codes, files, metadata, rows),
not the quality of the method it finds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed.jsonl"
LOCAL_MODEL = "local:SmolLM2-135M-Instruct.Q4_1.gguf"


def run(*args: str) -> subprocess.CompletedProcess:
    # the timeout only guards against a hang: with both cores busy elsewhere this compile took
    # more than 25 minutes (a few on a quiet machine), so it is no time limit
    return subprocess.run(["autoevol", *args], capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})


def test_compile_with_the_embedded_model_then_evolve_another_file(tmp_path, leftover_llama_servers):
    """The compile ends with a better method (exit 0) or says it found none (exit 4, no file): never e_0 and 0."""
    out = tmp_path / "evolver.json"
    args = ["compile", str(EXAMPLE), "--out", str(out), "--steps", "1", "--candidates", "2", "--batch-size", "2",
            "--dev-size", "4", "--confirm-size", "2", "--evol-lm", "local", "--max-output-tokens", "160",
            "--threads", "2"]
    result = run(*args)
    run_dir = tmp_path / "evolver.run"
    if result.returncode == 4:
        assert "compile found no better method" in result.stderr and not out.exists()
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in result.stderr  # one message, no traceback
        again = run(*args, "--keep-unchanged")  # replays the run directory, then writes the unchanged evolver
        assert again.returncode == 0, again.stderr[-3000:]
    else:
        assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(out.read_text())
    meta = document["metadata"]
    assert meta["models"] == {"evol": LOCAL_MODEL, "optimizer": LOCAL_MODEL, "judge": LOCAL_MODEL}
    assert meta["dataset"]["size"] == 8 and meta["dataset"]["dev_size"] == 4
    assert meta["hyperparameters"]["num_candidates"] == 2 and meta["hyperparameters"]["batch_size"] == 2
    assert 0.0 <= meta["dev_failure_rate"] <= meta["initial_dev_failure_rate"] <= 1.0
    if result.returncode == 0:
        assert document["method_fingerprint"] != meta["initial_method_fingerprint"]
        assert meta["dev_failure_rate"] < meta["initial_dev_failure_rate"]
    if meta["stopped"] == "no_failures" and meta["steps"] == 0:  # e_0 already passed every dev item
        assert result.returncode == 4
    else:
        assert meta["steps"] == 1 and len(meta["history"][0]["candidate_failure_rates"]) == 2
        record = json.loads((run_dir / "steps" / "step-001.json").read_text())
        assert len(record["trajectory"]) == 2 and len(record["candidates"]) == 2
        assert all(c["invalid"] == (c["score"] is None) for c in record["candidates"])

    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": f"o{n}", "instruction": text}) + "\n" for n, text in enumerate([
        "Name two uses of copper.", "How many minutes are in three hours?", "Describe a rainy morning."])))
    evolved = tmp_path / "evolved.jsonl"
    applied = run("evolve", str(other), "--out", str(evolved), "--program", str(out), "--max-output-tokens", "160")
    assert applied.returncode == 0, applied.stderr[-3000:]
    rows = [json.loads(line) for line in evolved.read_text().splitlines()]
    assert len(rows) == 3 and {row["method_fingerprint"] for row in rows} == {document["method_fingerprint"]}
    assert all(row["failed"] or row["evolved"] for row in rows)
    assert not leftover_llama_servers()  # every server the commands started is gone
