"""``autoevol evolve``: sample rows in the summary, the embedded-model hint, ``--structured-output``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from unittest import mock

import pytest

from autoevol.cli.evolve import EMBEDDED_HINT, _finish, pick_samples
from autoevol.data import read_rows
from autoevol.programs.pipeline import JobSummary
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder


def _row(index: int, failed: bool) -> dict:
    return {"id": f"r{index}", "original": f"Question {index}?", "evolved": None if failed else f"Harder {index}?",
            "failed": failed, "rule": "unchanged" if failed else None,
            "reason": "the rewrite is its parent" if failed else ""}


def test_samples_show_evolved_rows_and_one_failure_in_output_order():
    rows = [_row(0, True), _row(1, True), _row(2, False), _row(3, False), _row(4, False)]
    assert [row["id"] for row in pick_samples(iter(rows))] == ["r0", "r2", "r3"]
    assert [row["id"] for row in pick_samples(iter(rows[:2]))] == ["r0", "r1"]
    assert [row["id"] for row in pick_samples(iter(rows[2:]))] == ["r2", "r3", "r4"]
    assert pick_samples(iter([])) == []


def test_samples_stop_reading_once_they_are_chosen():
    def endless():
        index = 0
        while True:
            yield _row(index, failed=index % 2 == 0)
            index += 1

    assert len(pick_samples(endless())) == 3


def _finished(tmp_path: Path, rows: list[dict], evol_lm: str) -> str:
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    failed = sum(row["failed"] for row in rows)
    summary = JobSummary(rows=len(rows), evolved=len(rows) - failed, failed=failed,
                         failed_by_rule={"unchanged": failed} if failed else {}, output=str(out))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), mock.patch.dict("os.environ", {"COLUMNS": "200"}):
        _finish(summary, out, "the same command", evol_lm)
    return stderr.getvalue()


def test_summary_shows_rows_side_by_side_and_the_hint_when_the_embedded_model_fails(tmp_path):
    text = _finished(tmp_path, [_row(0, True), _row(1, True), _row(2, False)], "local")
    assert "sample rows" in text and "Harder 2?" in text and "unchanged" in text and "its parent" in text
    assert text.index("sample rows") < text.index("evolve summary")
    hint = " ".join(text.split())
    assert " ".join(EMBEDDED_HINT.split()) in hint
    assert "local:FILE.gguf" in hint and "ollama_chat/MODEL" in hint and "--api-base URL" in hint


@pytest.mark.parametrize("rows, evol_lm", [
    ([_row(0, True), _row(1, False), _row(2, False)], "local"),   # most rows evolved
    ([_row(0, True), _row(1, True), _row(2, False)], "ollama_chat/llama3"),  # a real model: its failures are real
])
def test_no_hint_when_it_does_not_apply(tmp_path, rows, evol_lm):
    assert "plumbing check" not in _finished(tmp_path, rows, evol_lm)


class SchemaResponder:
    """Answers a request that carries a JSON schema with an object of that schema; others in chat format."""

    def __init__(self) -> None:
        self.formats: list[dict | None] = []

    def __call__(self, messages: list[dict], body: dict) -> str:
        form = body.get("response_format")
        self.formats.append(form)
        if not form:
            return chat_adapter_responder(messages, body)
        properties = form["json_schema"]["schema"]["properties"]
        instruction = messages[-1]["content"].split("[[ ## instruction ## ]]")[-1].split("\n\n")[0].strip()
        values = {name: f"notes on {instruction}" for name in properties}
        values["evolved_instruction"] = f"{instruction} Answer in exactly three steps and justify each one."
        return json.dumps(values)


def test_structured_output_flag_sends_the_schema_to_an_openai_compatible_server(tmp_path):
    from autoevol.cli import main

    data = tmp_path / "seed.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"Add {i} and {i + 1}."}) + "\n"
                            for i in range(3)))
    out = tmp_path / "out.jsonl"
    responder = SchemaResponder()
    with FakeOpenAIServer(responder=responder) as server:
        argv = ["autoevol", "evolve", str(data), "--out", str(out), "--evol-lm", "hosted_vllm/fake",
                "--api-base", server.url, "--structured-output", "--timeout", "30", "--retries", "1"]
        with mock.patch("sys.argv", argv), contextlib.redirect_stderr(io.StringIO()) as stderr:
            with pytest.raises(SystemExit) as exit:
                main()
    assert exit.value.code in (0, None), stderr.getvalue()[-2000:]
    rows = list(read_rows(out))
    assert len(rows) == 3 and all(not row["failed"] for row in rows), rows
    assert all(row["evolved"].endswith("justify each one.") for row in rows)
    schemas = [form for form in responder.formats if form]
    assert len(schemas) >= 3 and all(form["type"] == "json_schema" for form in schemas)
    assert responder.formats[0] is None  # the probe is a plain chat call
