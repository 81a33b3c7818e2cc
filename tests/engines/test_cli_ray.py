"""`autoevol evolve --engine ray` through the installed entry point gives the local engine's rows, its
dataset card and its ``--structured-output``, with the work done by Ray actors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoevol.engines import ray_available
from autoevol.testing.fake_openai import chat_adapter_responder, serve_in_subprocess

pytestmark = pytest.mark.skipif(not ray_available(), reason="ray[data] is not installed: pip install 'autoevol[ray]'")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed.jsonl"


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short temporary folder for Ray's session files (``RAY_TMPDIR``): the paths of Ray's sockets in
    it must stay under 108 bytes, too short for pytest's own temporary folders."""
    folder = Path(tempfile.mkdtemp(prefix="ray-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def evolve(out: Path, url: str, ray_tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["autoevol", "evolve", str(EXAMPLE), "--out", str(out), "--evol-lm", "openai/fake", "--api-base", url,
         "--rounds", "2", *extra],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "OPENAI_API_KEY": "x", "NO_COLOR": "1", "RAY_TMPDIR": str(ray_tmp)})


def rows(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def actors_started(ray_tmp: Path) -> list[str]:
    """The class of every actor Ray started a worker process for, read from its sessions' worker logs
    (Ray writes ``:actor_name:CLASS`` at the top of an actor's log)."""
    sessions = [folder for folder in (ray_tmp / "ray").glob("session_*") if not folder.is_symlink()]
    return [line.removeprefix(":actor_name:") for session in sessions for log in session.glob("logs/worker-*.out")
            for line in log.read_text().splitlines() if line.startswith(":actor_name:")]


def test_ray_engine_from_the_cli_matches_the_local_engine(tmp_path, ray_tmp):
    with serve_in_subprocess() as server:
        local = evolve(tmp_path / "local.jsonl", server.url, ray_tmp)
        assert not (ray_tmp / "ray").exists()  # the local engine starts no Ray
        ray = evolve(tmp_path / "ray.jsonl", server.url, ray_tmp, "--engine", "ray", "--actors", "1",
                     "--concurrency", "4")
    assert local.returncode == 0, local.stderr[-2000:]
    assert ray.returncode == 0, ray.stderr[-2000:]
    # Ray did the work: one evolve actor ran in a Ray worker process, and the job kept its shards of both rounds
    assert actors_started(ray_tmp).count("EvolveActor") == 1  # --actors 1 (Ray Data adds actors of its own)
    shards = tmp_path / "ray.jsonl.shards"
    assert sorted(path.name for path in shards.glob("round-*/*.done")) == ["shard-00000.done"] * 2
    local_rows, ray_rows = rows(tmp_path / "local.jsonl"), rows(tmp_path / "ray.jsonl")
    assert len(local_rows) == 16 and set(ray_rows) == set(local_rows)
    for row_id, row in local_rows.items():
        assert {k: ray_rows[row_id][k] for k in row} == row


def test_ray_engine_refuses_retry_failed(tmp_path):
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text("")
    result = subprocess.run(["autoevol", "evolve", "--out", str(tmp_path / "o.jsonl"), "--retry-failed", str(earlier),
                             "--engine", "ray"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "local engine only" in result.stderr and "Traceback" not in result.stderr


#: What :func:`schema_responder` appends to an instruction it rewrites under a JSON schema.
SCHEMA_SUFFIX = "Answer in exactly three steps and justify each one."


def schema_responder(messages: list[dict], body: dict) -> str:
    """The fake server's answers: a request with a JSON schema gets an object of it, others chat format."""
    form = body.get("response_format")
    if not form:
        return chat_adapter_responder(messages, body)
    instruction = messages[-1]["content"].split("[[ ## instruction ## ]]")[-1].split("\n\n")[0].strip()
    values = {name: f"notes on {instruction}" for name in form["json_schema"]["schema"]["properties"]}
    values["evolved_instruction"] = f"{instruction} {SCHEMA_SUFFIX}"
    return json.dumps(values)


def test_ray_engine_writes_the_card_and_carries_structured_output(tmp_path, ray_tmp):
    import datasets

    out = tmp_path / "evolved"
    with serve_in_subprocess(responder="tests.engines.test_cli_ray:schema_responder") as server:
        result = evolve(out, server.url, ray_tmp, "--engine", "ray", "--actors", "1", "--concurrency", "4",
                        "--structured-output")
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = datasets.load_from_disk(str(out))
    assert len(loaded) == 16
    # the actors' LMs sent the schema: every rewrite is the schema answer (round 2 rewrites round 1's)
    assert all(row["evolved"].endswith(SCHEMA_SUFFIX) for row in loaded if not row["failed"])
    assert any(not row["failed"] for row in loaded)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "autoevol" in card.split("\n---\n")[0]
    for text in ("## How the data was made", "## Evolving method", "| evol | `openai/fake` |", "| engine | `ray` |",
                 "| actors | `1` |", "| structured_output | `True` |", "| rounds | `2` |", "| root_id |"):
        assert text in card, text
