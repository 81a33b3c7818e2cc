"""`autoevol evolve` through the installed entry point, on the real embedded model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from autoevol.lm import LocalServer

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed.jsonl"


def test_evolve_five_rows_offline_and_leave_no_server(tmp_path, leftover_llama_servers):
    out = tmp_path / "evolved.jsonl"
    result = subprocess.run(
        ["autoevol", "evolve", str(EXAMPLE), "--out", str(out), "--limit", "5", "--max-output-tokens", "200"],
        capture_output=True, text=True, timeout=3600, env={**os.environ, "NO_COLOR": "1"},
    )  # the timeout only guards against a hang; a loaded 2-core machine takes many times the quiet time
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5
    assert len({row["id"] for row in rows}) == 5
    for row in rows:
        assert row["evol_model"] == "local:SmolLM2-135M-Instruct.Q4_1.gguf"
        assert row["failed"] or row["evolved"], row
        assert not row["failed"] or (row["rule"] and row["reason"]), row
    assert "evolve summary" in result.stderr
    assert not leftover_llama_servers()


def test_local_server_serves_openai_requests_and_stops(tmp_path, leftover_llama_servers):
    import urllib.request

    with LocalServer(log_path=tmp_path / "server.log") as server:
        with urllib.request.urlopen(f"{server.api_base}/models", timeout=10) as response:
            assert response.status == 200
        pid = server.pid
        assert pid is not None and Path(f"/proc/{pid}").exists()
        assert leftover_llama_servers() == {pid}  # the check the other tests rely on sees this test's server
    assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert (tmp_path / "server.log").stat().st_size > 0 and not leftover_llama_servers()
