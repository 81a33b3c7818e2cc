"""`autoevol compile` and `autoevol show` through the installed entry point, against a fake endpoint.

The fake OpenAI-compatible server answers like the scripted LMs of the optimizer tests: the evol
model fails an item (leaves it unchanged) when the item's number modulo 10 is below the method's
"tenths" (6 without a marker, 1 with "Marker CAREFUL.", 3 with "Marker BALANCED."), and the optimizer
proposes CAREFUL, BALANCED, then methods without a marker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoevol.testing.fake_openai import (
    ErrorReply,
    FakeOpenAIServer,
    message_text,
    parse_input_fields,
    parse_output_fields,
)

TENTHS = {"CAREFUL": 1, "BALANCED": 3}
PROPOSALS = ["CAREFUL", "BALANCED", "PLAIN"]


def method(marker: str) -> str:
    return f"Rewrite the instruction into a harder version of itself, keeping its task. Marker {marker}."


class World:
    """The fake models' behaviour; the server calls it from its single event-loop thread."""

    def __init__(self) -> None:
        self.analyses = 0

    def __call__(self, messages: list[dict], body: dict) -> str:
        wanted = parse_output_fields(messages)
        if not wanted:  # the answer role: a plain chat message
            return "A complete answer that covers every requirement with examples."
        inputs = parse_input_fields(messages)
        system = message_text(messages[0])
        instructions = system[system.find("your objective is:"):]
        if "evolved_instruction" in wanted:
            return fields(self.evolve(inputs["instruction"], instructions))
        if "verdict" in wanted:  # the evolution judge
            return fields({"verdict": "harder", "reason": "it adds a requirement"})
        if "issues" in wanted:
            self.analyses += 1
            issues = [{"case_id": "1", "category": "unimproved_complexity", "reason": "unchanged"}]
            return fields({"issues": json.dumps(issues), "feedback": f"use proposal {self.analyses - 1}"})
        number = int(re.search(r"proposal (\d+)", inputs["feedback"]).group(1))
        return fields({"improved_method": method(PROPOSALS[number % len(PROPOSALS)])})

    @staticmethod
    def evolve(text: str, instructions: str) -> dict[str, str]:
        tenths = next((value for marker, value in TENTHS.items() if f"Marker {marker}." in instructions), 6)
        number = int(re.search(r"#(\d+)", text).group(1))
        if number % 10 < tenths:
            return {"working_notes": "-", "evolved_instruction": text}
        return {"working_notes": "-", "evolved_instruction": f"{text} Also justify every step with an example."}


def fields(values: dict[str, str]) -> str:
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items()) + "[[ ## completed ## ]]"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=World()) as running:
        yield running


def write_items(path: Path, count: int, start: int = 0) -> Path:
    rows = [{"id": f"t{n}", "instruction": f"Task #{n}: describe item {n} in detail."}
            for n in range(start, start + count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def autoevol(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "OPENAI_API_KEY": "sk-test-not-a-secret"}
    return subprocess.run(["autoevol", *args], capture_output=True, text=True, timeout=timeout, env=env)


def compile_args(server: FakeOpenAIServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["compile", str(data), "--out", str(out), "--evol-lm", "openai/fake", "--api-base", server.url,
            "--steps", "2", "--candidates", "3", "--batch-size", "4", "--dev-size", "20", "--confirm-size", "16",
            "--threads", "2",
            "--keep-unchanged", "--proposal-mode", "rewrite", *extra]


def test_compile_show_and_evolve_another_dataset_with_the_result(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 40)
    out = tmp_path / "evolver.json"
    result = autoevol(*compile_args(server, data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["method"] == method("CAREFUL")
    meta = document["metadata"]
    assert meta["models"] == {"evol": "openai/fake", "optimizer": "openai/fake", "judge": "openai/fake"}
    assert meta["hyperparameters"]["batch_size"] == 4 and meta["hyperparameters"]["racing"] is True
    assert meta["dataset"]["size"] == 40 and meta["initial_dev_failure_rate"] > meta["dev_failure_rate"]
    assert "sk-test-not-a-secret" not in out.read_text()
    assert sorted(p.name for p in (tmp_path / "evolver.run" / "steps").iterdir()) == ["step-001.json", "step-002.json"]
    summary = result.stderr
    assert "compile summary" in summary and "e_0" in summary and "result" in summary
    initial, final = (f"{100 * meta[key]:.1f}%" for key in ("initial_dev_failure_rate", "dev_failure_rate"))
    assert re.search(rf"dev failure rate\s*│\s*{re.escape(initial)}.*│\s*{re.escape(final)}", summary), summary

    shown = autoevol("show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "Marker CAREFUL." in shown.stdout and "steps" in shown.stdout and "incumbent kept" in shown.stdout

    other = write_items(tmp_path / "other.jsonl", 10, start=300)
    evolved = tmp_path / "evolved.jsonl"
    applied = autoevol("evolve", str(other), "--out", str(evolved), "--program", str(out),
                       "--evol-lm", "openai/fake", "--api-base", server.url)
    assert applied.returncode == 0, applied.stderr[-3000:]
    rows = [json.loads(line) for line in evolved.read_text().splitlines()]
    assert len(rows) == 10 and {row["method_fingerprint"] for row in rows} == {document["method_fingerprint"]}
    assert [row["id"] for row in rows if row["failed"]] == ["t300:r1"]  # CAREFUL fails numbers ending in 0


def test_rerunning_a_finished_compile_replays_its_run_directory_without_calls(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 40)
    out = tmp_path / "evolver.json"
    assert autoevol(*compile_args(server, data, out)).returncode == 0
    first = json.loads(out.read_text())
    server.reset()
    again = autoevol(*compile_args(server, data, out, "--overwrite"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.stats.ok == 3  # only the reachability probes (evol, optimizer, judge), which bypass the cache
    second = json.loads(out.read_text())
    assert second["method"] == first["method"] and second["metadata"]["history"] == first["metadata"]["history"]


def test_a_compile_killed_mid_phase_resumes_elsewhere_from_its_measurement_log(tmp_path):
    """SIGKILL while the starting method is measured, then resume with the call cache gone (as on
    another machine): the same result, every logged measurement kept and none measured again."""
    data = write_items(tmp_path / "train.jsonl", 40)
    # one thread: the World numbers the analyses as they arrive, so two in flight could swap candidates
    one_thread = ("--threads", "1")
    with FakeOpenAIServer(responder=World(), latency=0.02) as server:
        assert autoevol(*compile_args(server, data, tmp_path / "reference.json", *one_thread)).returncode == 0
        full_run = server.stats.ok
    reference = json.loads((tmp_path / "reference.json").read_text())

    out, run_dir = tmp_path / "evolver.json", tmp_path / "evolver.run"
    log = run_dir / "measurements.jsonl"
    with FakeOpenAIServer(responder=World(), latency=0.02) as server:
        process = subprocess.Popen(["autoevol", *compile_args(server, data, out, *one_thread)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "OPENAI_API_KEY": "sk-test"})
        give_up = time.monotonic() + 120
        while (not log.exists() or log.read_bytes().count(b"\n") < 6) and process.poll() is None \
                and time.monotonic() < give_up:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (run_dir / "start.json").exists() and not out.exists()  # killed inside the start's measurement
    before = log.read_text().splitlines(keepends=True)
    before = [line for line in before if line.endswith("\n")]
    assert len(before) >= 6
    for cache in run_dir.glob("calls.sqlite*"):
        cache.unlink()

    with FakeOpenAIServer(responder=World(), latency=0.02) as server:
        resumed = autoevol(*compile_args(server, data, out, *one_thread))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert server.stats.ok <= full_run - len(before)  # each logged item saved at least its evolution
    document = json.loads(out.read_text())
    assert document["method"] == reference["method"]
    def selections(history: list[dict]) -> list[dict]:  # without calls and seconds, which differ
        return [{key: value for key, value in step.items() if key not in ("calls", "seconds")} for step in history]

    assert selections(document["metadata"]["history"]) == selections(reference["metadata"]["history"])
    after = log.read_text().splitlines(keepends=True)
    assert after[:len(before)] == before
    keys = [tuple(json.loads(line)[key] for key in ("split", "method", "position")) for line in after]
    assert len(keys) == len(set(keys))


def test_bad_input_gives_one_line_errors_and_overwrites_nothing(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 12)
    out = tmp_path / "evolver.json"
    result = autoevol(*compile_args(server, data, out))
    assert result.returncode == 2
    assert "needs at least 40 distinct instructions" in result.stderr and "has 12" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    assert "checkpoints:" not in result.stdout + result.stderr and not out.with_suffix(".run").exists()

    out.write_text("keep me")
    result = autoevol(*compile_args(server, write_items(tmp_path / "big.jsonl", 40), out))
    assert result.returncode == 2 and "--overwrite" in result.stderr and out.read_text() == "keep me"

    bad_start = tmp_path / "bad.json"
    bad_start.write_text("{not json")
    result = autoevol(*compile_args(server, data, tmp_path / "new.json", "--from", str(bad_start)))
    assert result.returncode == 2 and "not an evolver file" in result.stderr

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("mine")
    result = autoevol(*compile_args(server, tmp_path / "big.jsonl", tmp_path / "new.json", "--run-dir", str(foreign)))
    assert result.returncode == 2 and "not a compile run directory" in result.stderr
    assert [p.name for p in foreign.iterdir()] == ["mine.txt"] and not (tmp_path / "new.json").exists()


def test_warm_start_from_a_compiled_evolver_and_no_racing(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 40)
    first = tmp_path / "first.json"
    assert autoevol(*compile_args(server, data, first, "--steps", "1", "--candidates", "2")).returncode == 0
    other = write_items(tmp_path / "other.jsonl", 40, start=1000)
    second = tmp_path / "second.json"
    result = autoevol(*compile_args(server, other, second, "--from", str(first), "--no-racing", "--steps", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads(second.read_text())["metadata"]
    assert meta["started_from"]["method_fingerprint"] == json.loads(first.read_text())["method_fingerprint"]
    assert meta["hyperparameters"]["racing"] is False and meta["history"][0]["dropped_candidates"] == 0
    assert "start" in result.stderr


def test_show_an_evolver_that_was_never_compiled(tmp_path):
    from autoevol.programs.evolver import Evolver

    path = Evolver("Make the instruction harder in one careful step.").save(tmp_path / "plain.json")
    shown = autoevol("show", str(path))
    assert shown.returncode == 0 and "not compiled" in shown.stdout
    assert "Make the instruction harder" in shown.stdout


class RepeatingOptimizer(World):
    """An optimizer that only ever proposes the current method again."""

    def __call__(self, messages: list[dict], body: dict) -> str:
        wanted = parse_output_fields(messages)
        if "improved_method" in wanted:
            return fields({"improved_method": parse_input_fields(messages)["current_method"]})
        return super().__call__(messages, body)


def test_a_compile_without_a_valid_candidate_exits_non_zero_and_writes_no_evolver(tmp_path):
    data = write_items(tmp_path / "train.jsonl", 40)
    out = tmp_path / "evolver.json"
    with FakeOpenAIServer(responder=RepeatingOptimizer()) as server:
        args = [arg for arg in compile_args(server, data, out, "--proposal-attempts", "2", "--max-demos", "0")
                if arg != "--keep-unchanged"]  # only method candidates, so none is valid
        result = autoevol(*args)
    assert result.returncode == 4, result.stderr[-3000:]
    assert not out.exists()
    message = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "no step produced a valid candidate" in message[0]
    assert "identical to the current one" in message[0] and "Traceback" not in result.stderr
    steps = sorted((tmp_path / "evolver.run" / "steps").glob("step-*.json"))
    assert len(steps) == 2  # both steps ran: a step without a valid candidate does not use up patience


class RefusingOptimizer(World):
    """An endpoint that refuses the trajectory analysis with 401, as for a revoked key."""

    def __call__(self, messages: list[dict], body: dict) -> str:
        if "issues" in parse_output_fields(messages):
            raise ErrorReply(401, "invalid api key")
        return super().__call__(messages, body)


def test_a_permanent_lm_error_stops_the_compile_at_once(tmp_path):
    data = write_items(tmp_path / "train.jsonl", 40)
    out = tmp_path / "evolver.json"
    with FakeOpenAIServer(responder=RefusingOptimizer()) as server:
        result = autoevol(*compile_args(server, data, out))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "permanent LM error" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "evolver.run" / "steps" / "step-001.json").exists()


def test_judge_lm_none_turns_the_judge_off(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 40)
    out = tmp_path / "evolver.json"
    result = autoevol(*compile_args(server, data, out, "--judge-lm", "none"))
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads(out.read_text())["metadata"]
    assert "judge" not in meta["models"] and "judge" not in meta["detector_rules"]
