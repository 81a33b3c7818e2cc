"""`autoevol compile --optimizer gepa` through the installed entry point, against a fake endpoint.

The evol model leaves an item unchanged (a failure) when the item's number modulo 10 is below the
method's "tenths": 6 without a marker, 1 with "Marker CAREFUL.". GEPA's reflection call (a JSON
answer with ``new_instruction``) proposes the CAREFUL method when its feedback names a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoevol.testing.fake_openai import FakeOpenAIServer, message_text, parse_input_fields, parse_output_fields

CAREFUL = "Rewrite the instruction into a harder version of itself, keeping its task. Marker CAREFUL."


class World:
    """The fake models; ``improve`` False makes the reflection LM propose a method as bad as e_0."""

    def __init__(self, improve: bool = True) -> None:
        self.improve = improve
        self.reflections: list[str] = []

    def __call__(self, messages: list[dict], body: dict) -> str:
        user = message_text(messages[-1])
        if "new_instruction" in user:  # GEPA's reflection, through DSPy's JSON adapter
            self.reflections.append(user)
            proposal = CAREFUL if self.improve and "Failure (unchanged)" in user else \
                "Rewrite the instruction; keep it short. Marker PLAIN."
            return json.dumps({"new_instruction": proposal})
        wanted = parse_output_fields(messages)
        if not wanted:  # the answer role: a plain chat message
            return "A complete answer that covers every requirement with examples."
        if "verdict" in wanted:  # the evolution judge
            return fields({"verdict": "harder", "reason": "it adds a requirement"})
        text = parse_input_fields(messages)["instruction"]
        tenths = 1 if "Marker CAREFUL." in message_text(messages[0]) else 6
        number = int(re.search(r"#(\d+)", text).group(1))
        evolved = text if number % 10 < tenths else f"{text} Also justify every step with an example."
        return fields({"working_notes": "-", "evolved_instruction": evolved})


def fields(values: dict[str, str]) -> str:
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in values.items()) + "[[ ## completed ## ]]"


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def server(world: World) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=world) as running:
        yield running


def write_items(path: Path, count: int, start: int = 0) -> Path:
    rows = [{"id": f"t{n}", "instruction": f"Task #{n}: describe item {n} in detail."}
            for n in range(start, start + count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def autoevol(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "OPENAI_API_KEY": "sk-test-not-a-secret"}
    return subprocess.run(["autoevol", *args], capture_output=True, text=True, timeout=timeout, env=env)


def gepa_args(server: FakeOpenAIServer, data: Path, out: Path, *extra: str) -> list[str]:
    return ["compile", str(data), "--out", str(out), "--optimizer", "gepa", "--evol-lm", "openai/fake",
            "--api-base", server.url, "--batch-size", "4", "--dev-size", "20", "--threads", "2",
            "--max-metric-calls", "80", *extra]


def test_gepa_compile_writes_an_evolver_that_show_report_and_evolve_read(tmp_path, server, world):
    data = write_items(tmp_path / "train.jsonl", 60)
    out = tmp_path / "evolver.json"
    result = autoevol(*gepa_args(server, data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["method"] == CAREFUL
    meta = document["metadata"]
    assert meta["optimizer"] == "gepa" and meta["hyperparameters"]["max_metric_calls"] == 80
    assert meta["initial_dev_failure_rate"] > 0.3 > meta["dev_failure_rate"]  # e_0 fails 6 in 10, CAREFUL 1 in 10
    assert meta["confirmed"] is True and meta["confirmation"]["items"] == 20  # and on 20 items GEPA never saw
    scores = meta["gepa"]["candidates"]
    assert scores[0]["dev_failure_rate"] == pytest.approx(meta["initial_dev_failure_rate"], abs=1e-4)
    assert scores[meta["gepa"]["best_idx"]]["dev_failure_rate"] == pytest.approx(meta["dev_failure_rate"], abs=1e-4)
    assert meta["gepa"]["total_metric_calls"] <= 80 + 20 + 2 * 3  # one full dev pass and a mini-batch past it
    assert any("Failure (unchanged)" in text for text in world.reflections)
    assert "sk-test-not-a-secret" not in out.read_text()
    assert (tmp_path / "evolver.run" / "gepa").is_dir() and (tmp_path / "evolver.run" / "steps").is_dir()

    shown = autoevol("show", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "Marker CAREFUL." in shown.stdout and "gepa" in shown.stdout and "steps" in shown.stdout

    report = tmp_path / "report.html"
    reported = autoevol("report", str(tmp_path / "evolver.run"), "--out", str(report), "--no-quality")
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert "Marker CAREFUL." in report.read_text()

    other = write_items(tmp_path / "other.jsonl", 10, start=300)
    evolved = tmp_path / "evolved.jsonl"
    applied = autoevol("evolve", str(other), "--out", str(evolved), "--program", str(out),
                       "--evol-lm", "openai/fake", "--api-base", server.url)
    assert applied.returncode == 0, applied.stderr[-3000:]
    rows = [json.loads(line) for line in evolved.read_text().splitlines()]
    assert [row["id"] for row in rows if row["failed"]] == ["t300:r1"]  # CAREFUL fails numbers ending in 0

    compared = autoevol("compare", "e0", str(out), "--data", str(other), "--evol-lm", "openai/fake",
                        "--api-base", server.url, "--no-quality", "--out", str(tmp_path / "compare.json"))
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "e0" in compared.stdout + compared.stderr and (tmp_path / "compare.json").exists()

    warm = tmp_path / "warm.json"
    again = autoevol(*gepa_args(server, write_items(tmp_path / "more.jsonl", 60, start=1000), warm,
                                "--from", str(out), "--keep-unchanged"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(warm.read_text())["metadata"]["started_from"]["method_fingerprint"] == \
        document["method_fingerprint"]


def test_rerunning_a_finished_gepa_compile_resumes_from_its_run_directory(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 60)
    out = tmp_path / "evolver.json"
    assert autoevol(*gepa_args(server, data, out)).returncode == 0
    first = json.loads(out.read_text())
    server.reset()
    again = autoevol(*gepa_args(server, data, out, "--overwrite"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert server.stats.ok == 3  # only the reachability probes (evol, optimizer, judge), which bypass the cache
    assert json.loads(out.read_text())["metadata"]["gepa"] == first["metadata"]["gepa"]


@pytest.mark.parametrize("world", [World(improve=False)])
def test_a_gepa_compile_that_found_nothing_exits_4_and_writes_no_evolver(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 60)
    out = tmp_path / "evolver.json"
    result = autoevol(*gepa_args(server, data, out))
    assert result.returncode == 4, result.stderr[-3000:]
    assert "found no better method" in result.stderr and not out.exists()
    kept = autoevol(*gepa_args(server, data, out, "--keep-unchanged"))
    assert kept.returncode == 0 and json.loads(out.read_text())["metadata"]["optimizer"] == "gepa"


def test_max_metric_calls_needs_the_gepa_optimizer(tmp_path):
    data = write_items(tmp_path / "train.jsonl", 60)
    result = autoevol("compile", str(data), "--out", str(tmp_path / "e.json"), "--max-metric-calls", "10")
    assert result.returncode == 2 and "--optimizer gepa" in result.stderr and "Traceback" not in result.stderr
    result = autoevol("compile", str(data), "--out", str(tmp_path / "e.json"), "--optimizer", "simba")
    assert result.returncode == 2 and "auto-evol, gepa" in result.stderr


def test_a_gepa_dry_run_plans_the_confirmation_and_confirm_size_0_turns_it_off(tmp_path, server):
    data = write_items(tmp_path / "train.jsonl", 60)
    planned = autoevol(*gepa_args(server, data, tmp_path / "evolver.json", "--dry-run"))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "then the start and the result on 20 confirmation items" in planned.stdout
    off = autoevol(*gepa_args(server, data, tmp_path / "evolver.json", "--dry-run", "--confirm-size", "0"))
    assert off.returncode == 0 and "confirmation" not in off.stdout
    unconfirmed = autoevol(*gepa_args(server, data, tmp_path / "evolver.json", "--confirm-size", "0"))
    assert unconfirmed.returncode == 0, unconfirmed.stderr[-2000:]
    meta = json.loads((tmp_path / "evolver.json").read_text())["metadata"]
    assert meta["confirmed"] is None and meta["hyperparameters"]["confirm_size"] == 0
