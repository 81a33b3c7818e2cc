"""``autoevol evolve --answer-lm`` and ``autoevol export --format`` through the real entry point.

Two fake OpenAI servers play two models: the evol model (default replies) and the answer model
(:mod:`autoevol.testing.answer_model`, whose answers are tagged), so a test sees which model's
text lands in the export. One test SIGKILLs a job while it is answering (when the answer server
has answered a number of requests, observed through its counters) and resumes it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import datasets

from autoevol.data import read_rows
from autoevol.testing.answer_model import ANSWER_PREFIX
from autoevol.testing.fake_openai import (
    FakeOpenAIServer,
    request_key,
    serve_in_subprocess,
)

RESPONDER = "autoevol.testing.answer_model:answer_model_responder"
PROBE_KEY = request_key([{"role": "user", "content": "Reply with OK."}])
ENV = {**os.environ, "OPENAI_API_KEY": "test", "COLUMNS": "200"}
FAST = ["--timeout", "30", "--retries", "2", "--backoff", "0.01"]


def run(*args: object) -> subprocess.CompletedProcess[str]:
    command = [shutil.which("autoevol") or "autoevol", *map(str, args)]
    return subprocess.run(command, check=False, capture_output=True, text=True, env=ENV, timeout=120)


def models(evol_url: str, answer_url: str) -> list[str]:
    return ["--evol-lm", "openai/fake", "--api-base", evol_url, "--answer-lm", "openai/strong",
            "--answer-api-base", answer_url, *FAST]


def seed(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"Add {i} and {i + 1}, then explain."}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def test_the_answer_models_text_is_what_the_export_holds(tmp_path: Path) -> None:
    from autoevol.testing.answer_model import answer_model_responder

    data = seed(tmp_path / "seed.jsonl", 6)
    with FakeOpenAIServer() as evol, FakeOpenAIServer(responder=answer_model_responder) as strong:
        planned = run("evolve", data, "-o", tmp_path / "out.jsonl", *models(evol.url, strong.url), "--dry-run")
        assert planned.returncode == 0, planned.stderr
        assert "answer (openai/strong): 6 calls" in planned.stdout
        assert strong.stats.requests == 0 and evol.stats.requests == 0
        done = run("evolve", data, "-o", tmp_path / "out.jsonl", *models(evol.url, strong.url))
        assert done.returncode == 0, done.stderr
        evol_replies = evol.stats.ok
    usage = done.stderr.split("LM usage", 1)[1]
    assert any("answer" in line and "openai/strong" in line for line in usage.splitlines()), usage
    rows = list(read_rows(tmp_path / "out.jsonl"))
    assert all(not row["failed"] and row["answer_model"] == "openai/strong" for row in rows)
    assert evol_replies >= 2 * len(rows)  # the evol model still evolved and answered for detection
    exported = run("export", tmp_path / "out.jsonl", "--to", tmp_path / "chat.jsonl", "--mode", "mixed",
                   "--format", "messages")
    assert exported.returncode == 0, exported.stderr
    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "chat.jsonl"), split="train")
    by_id = {row["id"]: row for row in rows}
    assert sorted(loaded["id"]) == sorted(by_id)
    for row in loaded:
        user, assistant = row["messages"]
        assert user == {"role": "user", "content": by_id[row["id"]]["evolved"]}
        assert assistant["role"] == "assistant" and assistant["content"].startswith(ANSWER_PREFIX)
    lineage = list(read_rows(tmp_path / "chat.lineage.jsonl"))
    assert {row["answer_model"] for row in lineage} == {"openai/strong"}


def test_export_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "chat.jsonl").write_text(json.dumps({"id": "c", "conversations": [
        {"from": "human", "value": "Hi there, name a planet."}, {"from": "gpt", "value": "Mars."}]}) + "\n")
    with FakeOpenAIServer() as evol:
        done = run("evolve", tmp_path / "chat.jsonl", "-o", tmp_path / "out.jsonl", "--evol-lm", "openai/fake",
                   "--api-base", evol.url, *FAST)
        assert done.returncode == 0, done.stderr
    for args, fragment in ((["--format", "messages"], "--data"), (["--format", "tsv"], "--format must be one of"),
                           (["--format", "alpaca", "--include-seed"], "--include-seed")):
        result = run("export", tmp_path / "out.jsonl", "--to", tmp_path / "x.jsonl", "--mode", "mixed", *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr
    whole = run("export", tmp_path / "out.jsonl", "--to", tmp_path / "x.jsonl", "--mode", "mixed",
                "--format", "sharegpt", "--data", tmp_path / "chat.jsonl")
    assert whole.returncode == 0, whole.stderr
    assert "conversations: 1; turns evolved: 1; turns kept with their original text: 0" in whole.stderr
    (row,) = read_rows(tmp_path / "x.jsonl")
    assert [turn["from"] for turn in row["conversations"]] == ["human", "gpt"]


ROWS = 40
CONCURRENCY = 4
#: Answers (counted by the answer server over all runs) after which the two kills land.
KILL_WINDOWS = [(4, 14), (18, 30)]


def answered(server) -> int:
    return sum(n for key, n in server.stats().completions_by_key.items() if key != PROBE_KEY)


def test_a_job_killed_while_answering_resumes_without_losing_or_repaying_answers(tmp_path: Path) -> None:
    data = seed(tmp_path / "seed.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    rng = random.Random(16)
    with serve_in_subprocess(latency=0.01) as evol, serve_in_subprocess(latency=0.05, responder=RESPONDER) as strong:
        command = [shutil.which("autoevol") or "autoevol", "evolve", str(data), "-o", str(out),
                   *models(evol.url, strong.url), "--concurrency", str(CONCURRENCY)]
        for run_no, (low, high) in enumerate(KILL_WINDOWS):
            target = rng.randint(low, high)
            with open(tmp_path / f"run-{run_no}.log", "wb") as stderr:
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=ENV)
                give_up = time.monotonic() + 120
                while answered(strong) < target and process.poll() is None and time.monotonic() < give_up:
                    time.sleep(0.01)
                process.send_signal(signal.SIGKILL)
                process.wait()
            assert answered(strong) >= target, (tmp_path / f"run-{run_no}.log").read_text()[-2000:]
            assert not out.exists()  # killed mid-job, while the answer model was answering
        final = subprocess.run(command, check=False, capture_output=True, text=True, env=ENV, timeout=120)
        assert final.returncode == 0, final.stderr
        strong_stats, evol_stats = strong.stats(), evol.stats()
    rows = list(read_rows(out))
    assert sorted(row["id"] for row in rows) == sorted(f"s{i}:r1" for i in range(ROWS))
    assert all(row["answer"].startswith(ANSWER_PREFIX) and row["answer_model"] == "openai/strong" for row in rows)
    # only calls in flight at a kill may be paid again: every completed answer was a cache hit on resume
    for stats in (strong_stats, evol_stats):
        repeated = {key: n for key, n in stats.repeated_completions.items() if key != PROBE_KEY}
        assert sum(n - 1 for n in repeated.values()) <= len(KILL_WINDOWS) * CONCURRENCY, repeated
    assert not list(tmp_path.glob("out.jsonl.partial*"))
