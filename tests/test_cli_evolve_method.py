"""``autoevol evolve --method``: a dataset evolved with a named method (the classic operations, one
operation, e_0) instead of a compiled evolver, and the one-line errors around it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from autoevol.baselines import OPERATIONS, EvolInstructBaseline, method_names, named_program, operation_method
from autoevol.data import read_rows
from autoevol.export import export_rounds
from autoevol.programs.evolver import Evolver
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder
from tests.test_cli_evolve import assert_one_line_error, autoevol, seed


class RecordingResponder:
    """The default ChatAdapter replies; keeps every system message it was sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.system_messages: list[str] = []

    def __call__(self, messages: list[dict], body: dict) -> str:
        with self.lock:
            self.system_messages += [str(m.get("content", "")) for m in messages if m.get("role") == "system"]
        return chat_adapter_responder(messages, body)


@pytest.fixture
def recorded() -> Iterator[tuple[FakeOpenAIServer, RecordingResponder]]:
    responder = RecordingResponder()
    with FakeOpenAIServer(responder=responder) as fake:
        yield fake, responder


def operations_seen(system_messages: list[str]) -> set[str]:
    return {name for name in OPERATIONS for message in system_messages if OPERATIONS[name] in message}


def test_the_classic_operations_evolve_every_row_one_operation_each(tmp_path, recorded):
    server, responder = recorded
    data, out = seed(tmp_path / "seed.jsonl", 12), tmp_path / "out.jsonl"
    result = autoevol(data, "-o", out, "--method", "evol-instruct", url=server.url)
    assert result.returncode == 0, result.stderr
    rows = list(read_rows(out))
    assert len(rows) == 12
    assert {row["method_fingerprint"] for row in rows} == {EvolInstructBaseline(seed=0).fingerprint}
    baseline = EvolInstructBaseline(seed=0)
    expected = {baseline.operation_for(f"Add {i} and {i + 1}, then explain.") for i in range(12)}
    assert len(expected) > 1  # the seeded draw spreads 12 rows over several operations
    assert operations_seen(responder.system_messages) == expected
    assert not any(INITIAL_METHOD[:60] in message for message in responder.system_messages)
    assert all(row["operation"] == baseline.operation_for(row["original"]) for row in rows)  # lineage by operation
    export_rounds(out, tmp_path / "train.jsonl", mode="mixed", export_format="messages", lineage="column")
    lineage = {json.loads(row["lineage"])["id"]: json.loads(row["lineage"]) for row in read_rows(tmp_path / "train.jsonl")}
    evolved = {row["id"]: row["operation"] for row in rows if not row["failed"]}
    assert evolved and {key: record["operation"] for key, record in lineage.items()} == evolved


def test_one_operation_evolves_every_row_with_that_method(tmp_path, recorded):
    server, responder = recorded
    data, out = seed(tmp_path / "seed.jsonl", 4), tmp_path / "out.jsonl"
    result = autoevol(data, "-o", out, "--method", "deepen", url=server.url)
    assert result.returncode == 0, result.stderr
    assert {row["method_fingerprint"] for row in read_rows(out)} == {Evolver(operation_method("deepen")).fingerprint}
    assert operations_seen(responder.system_messages) == {"deepen"}
    assert {row["operation"] for row in read_rows(out)} == {None}  # one method for every row: no draw to record


def test_e0_by_name_is_the_default(tmp_path, recorded):
    server, _ = recorded
    data = seed(tmp_path / "seed.jsonl", 3)
    named = autoevol(data, "-o", tmp_path / "named.jsonl", "--method", "e0", url=server.url)
    default = autoevol(data, "-o", tmp_path / "default.jsonl", url=server.url)
    assert named.returncode == default.returncode == 0
    fingerprints = {row["method_fingerprint"] for name in ("named", "default")
                    for row in read_rows(tmp_path / f"{name}.jsonl")}
    assert fingerprints == {Evolver().fingerprint}


def test_an_unknown_method_fails_in_one_line_listing_the_names(tmp_path, recorded):
    server, _ = recorded
    out = tmp_path / "out.jsonl"
    result = autoevol(seed(tmp_path / "seed.jsonl", 3), "-o", out, "--method", "deeper", url=server.url)
    assert_one_line_error(result, "--method", "'deeper'", "evol-instruct", "in_breadth")
    assert result.returncode == 2 and not out.exists() and server.stats.requests == 0


def test_program_and_method_together_are_refused(tmp_path, recorded):
    server, _ = recorded
    program = tmp_path / "evolver.json"
    Evolver().save(program)
    result = autoevol(seed(tmp_path / "seed.jsonl", 3), "-o", tmp_path / "out.jsonl", "--program", program,
                      "--method", "deepen", url=server.url)
    assert_one_line_error(result, "--program and --method")
    assert server.stats.requests == 0


def test_the_classic_operations_on_ray_are_refused_before_ray_starts(tmp_path, recorded):
    server, _ = recorded
    result = autoevol(seed(tmp_path / "seed.jsonl", 3), "-o", tmp_path / "out.jsonl", "--method", "evol-instruct",
                      "--engine", "ray", url=server.url)
    assert_one_line_error(result, "--method evol-instruct", "local engine")
    assert server.stats.requests == 0


def test_dry_run_plans_the_classic_operations_prompts(tmp_path, recorded):
    server, _ = recorded
    data = seed(tmp_path / "seed.jsonl", 10)
    result = autoevol(data, "-o", tmp_path / "out.jsonl", "--method", "evol-instruct", "--dry-run", url=server.url)
    assert result.returncode == 0, result.stderr
    assert "20 calls" in result.stdout and server.stats.requests == 0  # 10 rows x (evolve + answer)


def test_every_name_builds_its_program():
    for name in method_names():
        program = named_program(name, seed=3)
        assert isinstance(program, EvolInstructBaseline if name == "evol-instruct" else Evolver)
    assert named_program("evol-instruct", seed=3).seed == 3
    with pytest.raises(ValueError, match="choose from"):
        named_program("E0")
