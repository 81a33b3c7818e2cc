"""Evolve with a separate answer LM, then export in every training layout and load it back with ``datasets``.

Round trips on small inputs of our own in each layout (plain, ShareGPT, messages): the rows are
evolved with a scripted evol LM and answered by a different scripted answer LM; every export is
loaded with ``datasets.load_dataset`` / ``load_from_disk`` and checked field by field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import dspy
import pytest

from autoevol.data import DataError, read_rows
from autoevol.export import export_rounds, write_dataset_card
from autoevol.export.layouts import ConversationInput, fields
from autoevol.programs.evolver import Evolver
from autoevol.programs.pipeline import EvolveJob
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

HARDER = " Justify every step and add one worked example."


def evol_model(request: ScriptedRequest) -> dict[str, str]:
    """Evolves by appending a constraint, except instructions marked KEEP (left unchanged: a failure)."""
    if "evolved_instruction" in request.outputs:
        text = request.inputs["instruction"]
        return {"working_notes": "plan", "evolved_instruction": text if "KEEP" in text else text + HARDER}
    return {"answer": "Evol model reply, written for failure detection, with every detail in place."}


def answer_model(request: ScriptedRequest) -> dict[str, str]:
    return {"answer": f"Strong answer to: {request.inputs['instruction']}"}


def answer_of(evolved: str) -> str:
    return f"Strong answer to: {evolved}"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


PLAIN = [{"id": "p1", "instruction": "Add 2 and 3."}, {"id": "p2", "instruction": "KEEP this as it is."},
         {"id": "p3", "instruction": "Name three rivers."}]
SHAREGPT = [
    {"id": "c1", "conversations": [
        {"from": "human", "value": "What is a prime number?"}, {"from": "gpt", "value": "A number with two divisors."},
        {"from": "human", "value": "KEEP: list the first three."}, {"from": "gpt", "value": "2, 3 and 5."}]},
    {"id": "c2", "conversations": [
        {"from": "system", "value": "You are terse."}, {"from": "human", "value": "Define entropy."},
        {"from": "gpt", "value": "Disorder."}]},
    {"id": "c3", "conversations": [{"from": "human", "value": "KEEP all of it."}, {"from": "gpt", "value": "Fine."}]},
]
MESSAGES = [
    {"id": "m1", "messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "Explain recursion."}]},
        {"role": "assistant", "content": "A function calling itself."},
        {"role": "user", "content": "KEEP: and iteration?"}, {"role": "assistant", "content": "Loops."},
        {"role": "user", "content": "Compare both briefly."}]},
]


def evolve(seed: Path, out: Path, *, separate_answers: bool = True, rounds: int = 1) -> tuple[Any, Any]:
    evol = scripted_lm(evol_model)
    answers = scripted_lm(answer_model, model="openai/strong", role="answer") if separate_answers else None
    job = EvolveJob(Evolver(), concurrency=2, evol_model="scripted-evol", answer_lm=answers)
    with dspy.context(lm=evol):
        job.run(seed, out, rounds=rounds)
    return evol, answers


def load(path: Path) -> list[dict[str, Any]]:
    """Load an export as a trainer would: load_from_disk for a folder, load_dataset for a file."""
    if path.is_dir():
        return list(datasets.load_from_disk(str(path)))
    kind = "json" if path.suffix == ".jsonl" else "parquet"
    return list(datasets.load_dataset(kind, data_files=str(path), split="train"))


def test_the_answer_lm_writes_the_answers_and_is_recorded(tmp_path: Path) -> None:
    seed = write_jsonl(tmp_path / "plain.jsonl", PLAIN)
    evol, answers = evolve(seed, tmp_path / "out.jsonl")
    rows = {row["id"]: row for row in read_rows(tmp_path / "out.jsonl")}
    assert rows["p1:r1"]["answer"] == answer_of("Add 2 and 3." + HARDER)
    assert rows["p1:r1"]["answer_model"] == "openai/strong" and rows["p1:r1"]["evol_model"] == "scripted-evol"
    assert rows["p2:r1"]["failed"] and rows["p2:r1"]["answer"] is None
    # the answer LM is asked only about evolutions that passed; the evol LM still answers for detection
    assert sorted(r.inputs["instruction"] for r in answers.engine.requests) == sorted(
        row["evolved"] for row in rows.values() if not row["failed"])
    assert any(r.plain for r in evol.engine.requests)
    assert answers.usage.role == "answer" and answers.usage.calls >= 2


def test_without_an_answer_lm_the_detection_answer_is_kept_with_no_extra_call(tmp_path: Path) -> None:
    seed = write_jsonl(tmp_path / "plain.jsonl", PLAIN)
    evol, _ = evolve(seed, tmp_path / "out.jsonl", separate_answers=False)
    rows = [row for row in read_rows(tmp_path / "out.jsonl") if not row["failed"]]
    assert rows and all(row["answer"].startswith("Evol model reply") for row in rows)
    assert all(row["answer_model"] == "scripted-evol" for row in rows)
    plain = [r.inputs["instruction"] for r in evol.engine.requests if r.plain]
    assert sorted(set(plain)) == sorted(row["evolved"] for row in rows)  # one answer per evolution, no second


def test_a_failing_answer_fails_the_row_and_keeps_the_evolution(tmp_path: Path) -> None:
    seed = write_jsonl(tmp_path / "plain.jsonl", PLAIN[:1])
    answers = scripted_lm(lambda request: {"answer": "   "}, model="openai/strong", role="answer")
    with dspy.context(lm=scripted_lm(evol_model)):
        EvolveJob(Evolver(), answer_lm=answers).run(seed, tmp_path / "out.jsonl")
    (row,) = read_rows(tmp_path / "out.jsonl")
    assert row["failed"] and row["rule"] == "no_answer" and row["evolved"].endswith(HARDER)
    assert row["answer"] is None


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ""])
def test_plain_input_round_trips_through_every_layout(tmp_path: Path, suffix: str) -> None:
    seed = write_jsonl(tmp_path / "plain.jsonl", PLAIN)
    evolve(seed, tmp_path / "out.jsonl")
    expected = {f"{item['id']}:r1": item["instruction"] + HARDER for item in PLAIN if "KEEP" not in item["instruction"]}
    for layout in ("messages", "sharegpt", "alpaca", "raw"):
        target = tmp_path / f"{layout}{suffix}"
        result = export_rounds(tmp_path / "out.jsonl", target, mode="mixed", export_format=layout)
        loaded = load(target)
        # the evolve output's order (rows finish in any order with concurrency); failed rows left out
        assert [row["id"] for row in loaded] == [row["id"] for row in read_rows(tmp_path / "out.jsonl")
                                                 if not row["failed"]]
        assert sorted(row["id"] for row in loaded) == sorted(expected)
        for row in loaded:
            evolved = expected[row["id"]]
            if layout == "messages":
                assert row["messages"] == [{"role": "user", "content": evolved},
                                           {"role": "assistant", "content": answer_of(evolved)}]
            elif layout == "sharegpt":
                assert row["conversations"] == [{"from": "human", "value": evolved},
                                                {"from": "gpt", "value": answer_of(evolved)}]
            elif layout == "alpaca":
                assert (row["instruction"], row["input"], row["output"]) == (evolved, "", answer_of(evolved))
            else:
                assert (row["instruction"], row["answer"], row["answer_model"]) == (
                    evolved, answer_of(evolved), "openai/strong")
            if layout != "raw":
                assert set(row) == {"id", *fields(layout, "file")}
        if layout != "raw":
            (side,) = result.lineage_files
            assert side.parent == tmp_path and side.name == f"{layout}.lineage.jsonl"
            lineage = {row["id"]: row for row in read_rows(side)}
            assert set(lineage) == set(expected)
            assert lineage["p1:r1"]["original"] == "Add 2 and 3." and lineage["p1:r1"]["parent_id"] == "p1"
            assert lineage["p1:r1"]["answer_model"] == "openai/strong"


@pytest.mark.parametrize("name, seed_rows, column", [("sharegpt", SHAREGPT, "conversations"),
                                                     ("messages", MESSAGES, "messages")])
def test_conversations_come_back_whole_in_their_order(tmp_path: Path, name: str, seed_rows: list, column: str) -> None:
    seed = write_jsonl(tmp_path / f"{name}.jsonl", seed_rows)
    evolve(seed, tmp_path / "out.parquet")
    source = ConversationInput(seed)
    for layout, target in (("messages", tmp_path / "chat.jsonl"), ("sharegpt", tmp_path / "chat"),
                           ("messages", tmp_path / "chat.parquet")):
        result = export_rounds(tmp_path / "out.parquet", target, mode="mixed", export_format=layout,
                               lineage="column", conversations=source)
        loaded = load(target)
        assert not result.lineage_files
        turns_key, role, text = ("messages", "role", "content") if layout == "messages" else ("conversations", "from", "value")
        user, assistant = ("user", "assistant") if layout == "messages" else ("human", "gpt")
        chats = {row["id"]: [(turn[role], turn[text]) for turn in row[turns_key]] for row in loaded}
        if name == "sharegpt":
            first = "What is a prime number?" + HARDER
            entropy = "Define entropy." + HARDER
            assert list(chats) == ["c1:r1", "c2:r1"]  # c3: no turn evolved
            assert chats["c1:r1"] == [(user, first), (assistant, answer_of(first)),
                                      (user, "KEEP: list the first three."), (assistant, "2, 3 and 5.")]
            assert chats["c2:r1"] == [("system", "You are terse."), (user, entropy), (assistant, answer_of(entropy))]
            assert (result.conversations.conversations, result.conversations.evolved_turns,
                    result.conversations.kept_turns) == (2, 2, 1)
        else:
            first, last = "Explain recursion." + HARDER, "Compare both briefly." + HARDER
            assert chats == {"m1:r1": [("system", "Be kind."), (user, first), (assistant, answer_of(first)),
                                       (user, "KEEP: and iteration?"), (assistant, "Loops."),
                                       (user, last), (assistant, answer_of(last))]}
            assert (result.conversations.evolved_turns, result.conversations.kept_turns) == (2, 1)
        lineage = json.loads(loaded[0]["lineage"])
        assert lineage["round"] == 1 and lineage["answer_model"] == "openai/strong"
        assert [turn["turn"] for turn in lineage["turns"]] == ([0] if name == "sharegpt" else [0, 2])
    # alpaca has no conversations: each evolved turn is one pair
    export_rounds(tmp_path / "out.parquet", tmp_path / "pairs.jsonl", mode="mixed", export_format="alpaca")
    pairs = load(tmp_path / "pairs.jsonl")
    assert all(row["output"] == answer_of(row["instruction"]) for row in pairs) and len(pairs) == 2


def test_conversations_need_the_input_and_the_card_names_format_models_and_columns(tmp_path: Path) -> None:
    seed = write_jsonl(tmp_path / "sharegpt.jsonl", SHAREGPT)
    evolve(seed, tmp_path / "out.jsonl", rounds=2)
    with pytest.raises(DataError, match="--data"):
        export_rounds(tmp_path / "out.jsonl", tmp_path / "x.jsonl", export_format="messages")
    with pytest.raises(DataError, match="no conversation with id"):
        export_rounds(tmp_path / "out.jsonl", tmp_path / "x.jsonl", export_format="messages",
                      conversations=ConversationInput(write_jsonl(tmp_path / "other.jsonl", SHAREGPT[1:])))
    result = export_rounds(tmp_path / "out.jsonl", tmp_path / "hub", mode="separate", export_format="sharegpt",
                           conversations=ConversationInput(seed))
    assert [p.name for p in result.files] == ["round-1.parquet", "round-2.parquet"]
    assert [p.name for p in result.lineage_files] == ["hub.round-1.lineage.jsonl", "hub.round-2.lineage.jsonl"]
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["round-1.parquet", "round-2.parquet"]
    card = write_dataset_card(tmp_path / "hub", tmp_path / "out.jsonl", splits=result.splits, quality=False,
                              fields=fields("sharegpt", "file"), export_format="sharegpt",
                              conversations=result.conversations).read_text(encoding="utf-8")
    assert "## Format" in card and "`sharegpt`" in card
    assert "| evol | `scripted-evol` |" in card and "| answer | `openai/strong` |" in card
    assert "| conversations |" in card and "| id |" in card
    kept = result.conversations.kept_turns
    assert f"human turns kept with their original text (their evolution failed, or was not in this round): {kept}" in card
    loaded = datasets.load_dataset(str(tmp_path / "hub"))  # the card's configs name the round files
    assert set(loaded) == {"round_1", "round_2"} and loaded["round_2"][0]["id"].endswith(":r2")
