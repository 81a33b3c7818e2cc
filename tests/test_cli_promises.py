"""What README promises, through the CLI: cost budgets, the judge, disabled rules, OPENAI_BASE_URL,
unreachable specs, parquet and folder outputs, a separate optimizer endpoint, and compile's crash-resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from autoevol.data import read_rows
from autoevol.testing.fake_openai import (
    FakeOpenAIServer,
    chat_adapter_responder,
    parse_input_fields,
    parse_output_fields,
    request_key,
)
from autoevol.testing.study import StudyWorld, chat_responder, seed_instructions

PROBE = "Reply with OK."
SLOW = ["--timeout", "60", "--retries", "2", "--backoff", "0.01"]


def cli(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real ``autoevol`` entry point in a subprocess (no OPENAI_BASE_URL unless given in ``env``)."""
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    full = {**base, "OPENAI_API_KEY": "test", "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from autoevol.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, env=full, timeout=timeout)


def usage(result: subprocess.CompletedProcess, column: str) -> float:
    """A column of the command's "LM usage" table, summed over its roles ("$0.0013" reads 0.0013)."""
    lines = result.stderr.split("LM usage", 1)[1].splitlines()
    names = [name.strip() for name in next(line for line in lines if column in line).strip(" ┃").split("┃")]
    rows = [[cell.strip() for cell in line.strip(" │").split("│")] for line in lines if line.startswith("│")]
    assert rows, result.stderr
    return sum(float(row[names.index(column)].lstrip("$").replace("-", "0") or 0) for row in rows)


def seed(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"Add {i} and {i + 1}, then explain."}) + "\n"
                            for i in range(n)))
    return path


# --------------------------------------------------------------------------- evolve


def test_max_cost_stops_at_the_price_of_a_known_model(tmp_path):
    with FakeOpenAIServer() as server:
        result = cli("evolve", seed(tmp_path / "seed.jsonl", 30), "-o", tmp_path / "out.jsonl",
                     "--evol-lm", "openai/gpt-4o-mini", "--api-base", server.url, "--max-cost", "0.001",
                     "--concurrency", "2", *SLOW)
        completions = server.stats.ok
    assert result.returncode == 3, result.stderr[-2000:]
    assert "cost budget" in result.stderr and "--resume" in result.stderr
    spent = usage(result, "cost")
    assert spent >= 0.001  # priced from DSPy's table: the fake server only reports tokens
    assert spent < 0.001 + 2 * 4 * 0.0001  # at most the calls in flight at the limit on top (each < $0.0001)
    assert completions < 2 * 30  # stopped well before the job's 60 calls
    assert not (tmp_path / "out.jsonl").exists()


def judge_lost_task_for_odd(messages: list[dict], body: dict) -> str:
    """A judge: the rewrite of an odd item lost its task, every other rewrite is harder."""
    if "verdict" not in parse_output_fields(messages):
        return chat_adapter_responder(messages, body)
    original = parse_input_fields(messages).get("original_instruction", "")
    odd = any(original.startswith(f"Add {i} and") for i in range(1, 20, 2))
    return (f"[[ ## verdict ## ]]\n{'lost_task' if odd else 'harder'}\n\n[[ ## reason ## ]]\n"
            f"{'It is no longer a task.' if odd else 'More steps.'}\n\n[[ ## completed ## ]]")


def test_judge_lm_reached_through_openai_base_url_fails_what_it_judges_and_can_be_disabled(tmp_path):
    data = seed(tmp_path / "seed.jsonl", 8)
    with FakeOpenAIServer() as evol, FakeOpenAIServer(responder=judge_lost_task_for_odd) as judge:
        env = {"OPENAI_BASE_URL": judge.url}  # the judge has no --api-base: it takes OPENAI_BASE_URL
        judged = cli("evolve", data, "-o", tmp_path / "judged.jsonl", "--evol-lm", "openai/fake",
                     "--api-base", evol.url, "--judge-lm", "openai/judge", *SLOW, env=env)
        assert judged.returncode == 0, judged.stderr[-2000:]
        judge_calls = judge.stats.ok
        rows = {row["id"]: row for row in read_rows(tmp_path / "judged.jsonl")}
        assert {i for i, row in rows.items() if row["failed"]} == {f"s{i}:r1" for i in (1, 3, 5, 7)}
        assert {row["rule"] for row in rows.values() if row["failed"]} == {"judge_lost_task"}
        assert judge_calls >= 8  # every row that passed the cheap rules was judged
        assert evol.stats.requests > 0 and "verdict" not in json.dumps(evol.stats.to_dict())

        judge.reset()
        disabled = cli("evolve", data, "-o", tmp_path / "disabled.jsonl", "--evol-lm", "openai/fake",
                       "--api-base", evol.url, "--judge-lm", "openai/judge", "--disable-rule", "judge", *SLOW,
                       env=env)
        assert disabled.returncode == 0, disabled.stderr[-2000:]
        assert not any(row["failed"] for row in read_rows(tmp_path / "disabled.jsonl"))
        assert judge.stats.ok - judge.stats.completions_by_key.get(request_key([{"role": "user", "content": PROBE}]),
                                                                    0) == 0  # nothing was sent to be judged


def unchanged_for_odd(messages: list[dict], body: dict) -> str:
    """Evolutions of odd items come back unchanged; everything else as the default responder."""
    text = chat_adapter_responder(messages, body)
    instruction = parse_input_fields(messages).get("instruction", "")
    if "[[ ## evolved_instruction ## ]]" in text and any(instruction.startswith(f"Add {i} and")
                                                         for i in range(1, 20, 2)):
        return text.replace(" Also explain each step and give two examples.", "")
    return text


def test_disable_rule_turns_a_cheap_rule_off(tmp_path):
    data = seed(tmp_path / "seed.jsonl", 6)
    with FakeOpenAIServer(responder=unchanged_for_odd) as server:
        on = cli("evolve", data, "-o", tmp_path / "on.jsonl", "--evol-lm", "openai/fake", "--api-base", server.url,
                 *SLOW)
        off = cli("evolve", data, "-o", tmp_path / "off.jsonl", "--evol-lm", "openai/fake", "--api-base", server.url,
                  "--disable-rule", "unchanged", *SLOW)
        bad = cli("evolve", data, "-o", tmp_path / "bad.jsonl", "--evol-lm", "openai/fake", "--api-base", server.url,
                  "--disable-rule", "no_such_rule")
    assert on.returncode == 0 and off.returncode == 0, on.stderr[-1500:] + off.stderr[-1500:]
    rules = {row["id"]: row["rule"] for row in read_rows(tmp_path / "on.jsonl")}
    assert {i for i, rule in rules.items() if rule} == {"s1:r1", "s3:r1", "s5:r1"}
    assert set(rules.values()) == {"unchanged", None}
    assert "unchanged" not in {row["rule"] for row in read_rows(tmp_path / "off.jsonl")}
    assert bad.returncode != 0 and "no_such_rule" in bad.stderr and "Traceback" not in bad.stderr


def test_openai_base_url_serves_the_evol_lm_without_api_base(tmp_path):
    with FakeOpenAIServer() as server:
        result = cli("evolve", seed(tmp_path / "seed.jsonl", 4), "-o", tmp_path / "out.jsonl",
                     "--evol-lm", "openai/fake", *SLOW, env={"OPENAI_BASE_URL": server.url})
        assert result.returncode == 0, result.stderr[-2000:]
        assert server.stats.ok >= 2 * 4  # every row's evolution and answer came from OPENAI_BASE_URL
    assert len(list(read_rows(tmp_path / "out.jsonl"))) == 4


@pytest.mark.parametrize("spec, api_base, fragment", [
    ("openai/fake", "http://127.0.0.1:1/v1", "evol LM 'openai/fake' is not usable"),  # nothing listens there
    ("not-a-model-string", None, "not-a-model-string"),
    ("local:/nowhere/model.gguf", None, "GGUF file not found"),
])
def test_a_spec_that_cannot_be_used_fails_before_any_row(tmp_path, spec, api_base, fragment):
    command = ["evolve", seed(tmp_path / "seed.jsonl", 3), "-o", tmp_path / "out.jsonl", "--evol-lm", spec,
               "--retries", "0"]
    result = cli(*command, *(["--api-base", api_base] if api_base else []))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seed.jsonl"]  # no output, journal or call cache


def test_an_unknown_rule_to_disable_fails_before_any_lm_is_contacted(tmp_path):
    with FakeOpenAIServer() as server:
        result = cli("evolve", seed(tmp_path / "seed.jsonl", 3), "-o", tmp_path / "out.jsonl", "--evol-lm",
                     "openai/fake", "--api-base", server.url, "--disable-rule", "no_such_rule")
        assert server.stats.requests == 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "no_such_rule" in lines[0] and "valid rules" in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seed.jsonl"]


def test_parquet_and_folder_outputs_hold_the_jsonl_rows(tmp_path):
    data = seed(tmp_path / "seed.jsonl", 5)
    outputs = {"jsonl": tmp_path / "out.jsonl", "parquet": tmp_path / "out.parquet", "folder": tmp_path / "out"}
    with FakeOpenAIServer(responder=unchanged_for_odd) as server:
        for out in outputs.values():
            result = cli("evolve", data, "-o", out, "--evol-lm", "openai/fake", "--api-base", server.url,
                         "--rounds", "2", *SLOW)
            assert result.returncode == 0, result.stderr[-2000:]
    assert outputs["parquet"].read_bytes()[:4] == b"PAR1"
    assert (outputs["folder"] / "dataset_info.json").is_file()  # datasets' save_to_disk
    rows = {kind: {row["id"]: row for row in read_rows(out)} for kind, out in outputs.items()}
    assert len(rows["jsonl"]) == 5 + 3  # the 3 evolved rows of round 1 go on to round 2
    assert rows["parquet"] == rows["jsonl"] and rows["folder"] == rows["jsonl"]


# --------------------------------------------------------------------------- compile


class Recorder:
    """Wraps a responder; counts the output fields asked for and the deterministic requests completed."""

    def __init__(self, responder):
        self.responder = responder
        self.fields: Counter[str] = Counter()
        self.deterministic: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict], body: dict) -> str:
        text = self.responder(messages, body)
        with self._lock:
            self.fields.update(parse_output_fields(messages))
            if not body.get("temperature") and PROBE not in json.dumps(messages):
                self.deterministic[request_key(messages)] += 1  # temperature 0: the same request, the same call
        return text


def compile_command(data: Path, out: Path, evol: FakeOpenAIServer, optimizer: FakeOpenAIServer, *extra: str) -> list:
    return ["compile", data, "--out", out, "--evol-lm", "openai/evol", "--api-base", evol.url,
            "--optimizer-lm", "openai/optimizer", "--optimizer-api-base", optimizer.url, "--candidates", "2",
            "--batch-size", "2", "--dev-size", "6", "--threads", "2", "--timeout", "60", "--keep-unchanged", *extra]


def world_servers(latency: float = 0.0) -> tuple[Recorder, Recorder, FakeOpenAIServer, FakeOpenAIServer]:
    world = StudyWorld(seed=3)
    evol, optimizer = Recorder(chat_responder(world, "evol")), Recorder(chat_responder(world, "optimizer"))
    return (evol, optimizer, FakeOpenAIServer(responder=evol, latency=latency),
            FakeOpenAIServer(responder=optimizer, latency=latency))


def write_world_seed(path: Path) -> Path:
    path.write_text("".join(json.dumps({"instruction": text}) + "\n" for text in seed_instructions(30)))
    return path


def test_compile_sends_each_role_to_its_own_endpoint(tmp_path):
    evol, optimizer, evol_server, optimizer_server = world_servers()
    with evol_server, optimizer_server:
        result = cli(*compile_command(write_world_seed(tmp_path / "seed.jsonl"), tmp_path / "e.json", evol_server,
                                      optimizer_server, "--steps", "1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert evol.fields["evolved_instruction"] > 0  # the evol role's work went to --api-base
    proposals = {"improved_method", "new_rules", "issues"}
    assert sum(optimizer.fields[name] for name in proposals) > 0  # analysis and proposals to --optimizer-api-base
    assert not any(evol.fields[name] for name in proposals)  # and none of them to the evol endpoint
    assert optimizer.fields["evolved_instruction"] == 0
    assert (tmp_path / "e.json").is_file()


def test_compile_killed_mid_run_resumes_without_repeating_a_completed_call(tmp_path):
    evol, optimizer, evol_server, optimizer_server = world_servers(latency=0.05)
    data, out = write_world_seed(tmp_path / "seed.jsonl"), tmp_path / "e.json"
    steps = tmp_path / "e.run" / "steps"
    with evol_server, optimizer_server:
        command = [sys.executable, "-c", "from autoevol.cli import main; main()",
                   *map(str, compile_command(data, out, evol_server, optimizer_server, "--steps", "3",
                                             "--patience", "3"))]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"} | {"OPENAI_API_KEY": "test"}
        with open(tmp_path / "first.log", "wb") as log:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
            give_up = time.monotonic() + 240
            # observed progress: the first step is on disk (the run goes on into step 2)
            while not (steps.is_dir() and any(steps.iterdir())) and process.poll() is None \
                    and time.monotonic() < give_up:
                time.sleep(0.01)
            still_running = process.poll() is None
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert still_running and steps.is_dir() and any(steps.iterdir()), (tmp_path / "first.log").read_text()[-2000:]
        assert not out.exists()
        before = Counter(evol.deterministic) + Counter(optimizer.deterministic)
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert out.is_file()
    after = Counter(evol.deterministic) + Counter(optimizer.deterministic)
    repeated = {key: n for key, n in after.items() if n > 1}
    # only calls in flight at the kill (answered, not yet in the run's call cache) may be paid twice
    assert sum(n - 1 for n in repeated.values()) <= 2 * 2, repeated  # 2 threads, each role
    assert sum(after.values()) > sum(before.values())  # the rerun did go on with new work
