"""Repeatable replies from the embedded server: with one slot and no prompt cache, identical
temperature-0 requests get identical replies whatever the server did before them; ``--reproducible``
jobs get such a server or stop in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoevol.lm import LMSession, LocalModelError, LocalServer
from autoevol.lm.local import default_model_path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import local_determinism  # noqa: E402

pytestmark = pytest.mark.integration

PROMPTS = ["Write a haiku about rivers.", "List three prime numbers and say why each is prime.",
           "Explain what a hash table is to a child."]


def test_one_slot_without_prompt_cache_replies_the_same_to_the_same_request(leftover_llama_servers):
    trial = local_determinism.trial(default_model_path(), 1, False, PROMPTS, max_tokens=24)
    assert trial.identical == trial.prompts == len(PROMPTS)  # sent twice, in two orders
    assert not leftover_llama_servers()


def test_a_joined_server_keeps_its_prompt_cache_setting_and_the_benchmark_refuses_it():
    with LocalServer(slots=1, prompt_cache=False):
        joined = LocalServer(prompt_cache=True).start()
        try:
            assert not joined.started_here and joined.prompt_cache is False
        finally:
            joined.stop()
        with pytest.raises(SystemExit, match="another job runs a llama.cpp server"):
            local_determinism.trial(default_model_path(), 1, False, PROMPTS, max_tokens=8)


def test_a_reproducible_session_gets_one_slot_without_prompt_cache_and_the_same_replies():
    with LMSession(concurrency=4, reproducible=True) as session:
        lm = session.lm("local", role="evol", max_tokens=24)
        (server,) = session.servers
        assert server.slots == 1 and server.prompt_cache is False and server.reproducible
        first = lm(PROMPTS[0])
        lm(PROMPTS[1])  # another request in between: nothing of it may stay behind
        assert lm(PROMPTS[0]) == first  # ManagedLM keeps no cache of its own without a call cache
        sampler = session.lm("local", role="optimizer", temperature=1.0, max_tokens=24)
        assert sampler(PROMPTS[2], rollout_id=7) == sampler(PROMPTS[2], rollout_id=7)  # sampled calls repeat too


def test_a_reproducible_session_refuses_a_running_server_with_other_settings():
    with LocalServer(slots=2) as running:
        with LMSession(reproducible=True) as session:
            with pytest.raises(LocalModelError, match="already running .* 2 slots and the prompt cache on"):
                session.lm("local", role="evol")
            assert session.servers == []
        probe = LMSession()
        try:  # the running server lost nothing: its other user still gets answers
            assert probe.lm("local", role="evol", max_tokens=4)("Say OK.")
            assert probe.servers[0].pid == running.pid
        finally:
            probe.close()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed.jsonl"


def evolve(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["autoevol", "evolve", str(EXAMPLE), "--out", str(out), "--limit", "3",
                           "--max-output-tokens", "80", *extra], capture_output=True, text=True, timeout=900)


def test_reproducible_evolve_writes_the_same_rows_twice_and_refuses_a_shared_server(tmp_path, leftover_llama_servers):
    runs = [evolve(tmp_path / f"run{k}.jsonl", "--reproducible", "--concurrency", "3") for k in (1, 2)]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr[-2000:]
    rows = [[json.loads(line) for line in (tmp_path / f"run{k}.jsonl").read_text().splitlines()] for k in (1, 2)]
    fields = ("id", "evolved", "answer", "failed", "rule")  # rows are written as they finish: compared by id
    assert sorted([row.get(f) for f in fields] for row in rows[0]) == sorted([row.get(f) for f in fields]
                                                                            for row in rows[1])
    assert len(rows[0]) == 3
    with LocalServer(slots=2):  # every measuring command refuses to share it
        refused = [evolve(tmp_path / "refused.jsonl", "--reproducible")] + [subprocess.run(
            ["autoevol", *command, "--reproducible"], capture_output=True, text=True, timeout=300) for command in (
                ["compare", "e0", "deepen", "--data", str(EXAMPLE)],
                ["compile", str(EXAMPLE), "--out", str(tmp_path / "refused.json")],
                ["tune", str(EXAMPLE), "--trials", "1", "--storage", f"sqlite:///{tmp_path / 'study.db'}"])]
    for result in refused:
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "already running" in errors[0], result.stderr[-2000:]  # tune also logs its study
    assert not (tmp_path / "refused.jsonl").exists() and not (tmp_path / "refused.json").exists()
    assert not leftover_llama_servers()
