"""Training layouts of an export: chat messages, ShareGPT, Alpaca, or autoevol's own rows.

``raw`` is what :func:`autoevol.export.export_rows` makes (one row per successful evolution, with
its lineage columns). The other layouts are the ones fine-tuning tools read as they are:

* ``messages``: ``[{"role": "user", ...}, {"role": "assistant", ...}]`` (chat-template trainers:
  TRL's SFTTrainer, axolotl's ``chat_template``, LLaMA-Factory's OpenAI layout);
* ``sharegpt``: ``conversations`` of ``{"from": "human" | "gpt", "value": ...}`` turns;
* ``alpaca``: ``instruction`` / ``input`` (empty) / ``output``.

Each row also has an ``id``; its lineage (ids, round, models, the text it was evolved from) goes
to a side file or a ``lineage`` column holding a JSON object (see :data:`LINEAGE_MODES`).

A conversation input (ShareGPT or messages) had its human turns evolved one by one. In the
``messages`` and ``sharegpt`` layouts its conversations are put back together from the input, in
their original order: an evolved turn replaces the human turn and its answer replaces the reply
that followed it; a turn whose evolution failed keeps its original text and reply. A round's file
holds the conversations with at least one turn evolved in that round.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from autoevol.data import DataError, is_human_turn, iter_conversations, turn_text

ExportFormat = Literal["raw", "messages", "sharegpt", "alpaca"]
LineageMode = Literal["file", "column", "none"]
EXPORT_FORMATS: tuple[str, ...] = ("raw", "messages", "sharegpt", "alpaca")
#: ``file``: ``<export>.lineage.jsonl`` beside the data; ``column``: a ``lineage`` JSON column;
#: ``none``: only the ``id``.
LINEAGE_MODES: tuple[str, ...] = ("file", "column", "none")

_ASSISTANT_SPEAKERS = frozenset({"gpt", "assistant", "chatgpt", "bard", "bing", "model"})
_TO_SHAREGPT = {"user": "human", "assistant": "gpt"}

_TURN = {"messages": pa.struct([("role", pa.string()), ("content", pa.string())]),
         "sharegpt": pa.struct([("from", pa.string()), ("value", pa.string())])}

#: What each column of a layout holds (the dataset card's "Fields" table).
FORMAT_FIELDS: dict[str, dict[str, str]] = {
    "messages": {"id": "row id (the lineage key)",
                 "messages": "the chat: `role` (system, user, assistant) and `content` of each message"},
    "sharegpt": {"id": "row id (the lineage key)",
                 "conversations": "the chat: `from` (system, human, gpt) and `value` of each turn"},
    "alpaca": {"id": "row id (the lineage key)", "instruction": "the evolved instruction",
               "input": "always empty (the evolved instruction is self-contained)",
               "output": "the answer model's answer"},
}
LINEAGE_FIELD = ("lineage", ("a JSON object: id, root_id, parent_id, round, original, method_fingerprint, "
                             "evol_model, answer_model, operation (conversations: turns instead of parent_id and original)"))
#: How each layout is described in the dataset card.
FORMAT_DESCRIPTIONS: dict[str, str] = {
    "raw": "autoevol's rows: one row per successful evolution, with its lineage columns.",
    "messages": "chat messages (`messages`: a list of `{role, content}`), the layout chat-template "
                "trainers read (TRL SFTTrainer, axolotl `chat_template`, LLaMA-Factory).",
    "sharegpt": "ShareGPT (`conversations`: a list of `{from: human/gpt, value}`).",
    "alpaca": "Alpaca (`instruction`, `input`, `output`).",
}


@dataclass
class ConversationCounts:
    """What putting conversations back together did (per export file, added up in the card)."""

    conversations: int = 0
    evolved_turns: int = 0
    kept_turns: int = 0

    def add(self, other: ConversationCounts) -> None:
        self.conversations += other.conversations
        self.evolved_turns += other.evolved_turns
        self.kept_turns += other.kept_turns


@dataclass(frozen=True)
class ConversationInput:
    """Where the conversations of a ShareGPT or messages input are read from (the input evolve read)."""

    path: Path
    column: str | None = None
    id_column: str | None = None


def check_format(export_format: str, lineage: str) -> None:
    """Raise ``ValueError`` for an unknown layout or lineage mode."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {export_format!r}")
    if lineage not in LINEAGE_MODES:
        raise ValueError(f"lineage must be one of {', '.join(LINEAGE_MODES)}, not {lineage!r}")


def schema(export_format: str, lineage: str) -> pa.Schema | None:
    """The Arrow schema of a layout's rows (``None`` for ``raw``: inferred, as before)."""
    if export_format == "raw":
        return None
    fields: list[tuple[str, pa.DataType]] = [("id", pa.string())]
    if export_format == "alpaca":
        fields += [("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]
    else:
        fields.append(("messages" if export_format == "messages" else "conversations", pa.list_(_TURN[export_format])))
    if lineage == "column":
        fields.append(("lineage", pa.string()))
    return pa.schema(fields)


def fields(export_format: str, lineage: str) -> dict[str, str]:
    """Column -> meaning of a layout's rows (for the card)."""
    described = dict(FORMAT_FIELDS[export_format])
    if lineage == "column":
        described[LINEAGE_FIELD[0]] = LINEAGE_FIELD[1]
    return described


def lineage_path(data_file: Path, export_root: Path) -> Path:
    """Where the lineage of ``data_file`` goes: beside it, never inside a dataset folder.

    ``train.jsonl`` -> ``train.lineage.jsonl``; a ``save_to_disk`` folder ``train`` ->
    ``train.lineage.jsonl``; ``hub/round-1.parquet`` (a folder of round files) ->
    ``hub.round-1.lineage.jsonl`` next to ``hub``.
    """
    if data_file.parent == export_root:  # a round file inside a folder of round files
        return export_root.with_name(f"{export_root.name}.{data_file.stem}.lineage.jsonl")
    stem = data_file.stem if data_file.suffix else data_file.name
    return data_file.with_name(f"{stem}.lineage.jsonl")


def _chat(export_format: str, turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    if export_format == "messages":
        return [{"role": role, "content": text} for role, text in turns]
    return [{"from": _TO_SHAREGPT.get(role, role), "value": text} for role, text in turns]


def _row(export_format: str, row_id: str, turns: Sequence[tuple[str, str]], lineage: str,
         record: Mapping[str, Any]) -> dict[str, Any]:
    if export_format == "alpaca":
        out: dict[str, Any] = {"id": row_id, "instruction": turns[0][1], "input": "", "output": turns[1][1]}
    else:
        out = {"id": row_id, "messages" if export_format == "messages" else "conversations": _chat(export_format, turns)}
    if lineage == "column":
        out["lineage"] = json.dumps(record, ensure_ascii=False)
    return out


_LINEAGE_KEYS = ("id", "root_id", "parent_id", "round", "original", "method_fingerprint", "evol_model", "answer_model",
                 "operation")


def single_turn_rows(rows: Iterable[Mapping[str, Any]], export_format: str, lineage: str,
                     ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(layout row, lineage record)`` of each exported row: the evolved instruction and its answer."""
    for row in rows:
        record = {key: row.get(key) for key in _LINEAGE_KEYS}
        turns = [("user", str(row.get("instruction") or "")), ("assistant", str(row.get("answer") or ""))]
        yield _row(export_format, str(row["id"]), turns, lineage, record), record


def _speaker(turn: dict[str, Any]) -> str:
    """The messages role of a turn (ShareGPT speakers mapped to system/user/assistant)."""
    name = str(turn.get("from", turn.get("role")) or "").lower()
    if is_human_turn(turn):
        return "user"
    return "assistant" if name in _ASSISTANT_SPEAKERS else name


def rebuild(turns: Sequence[dict[str, Any]], evolved: Mapping[int, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """A conversation with its evolved human turns (turn index -> exported row) put back in place.

    An evolved turn's text replaces the human turn, and its answer replaces every turn up to the
    next human turn (the reply to the original). Other turns are kept as they were.
    """
    out: list[tuple[str, str]] = []
    human = -1
    replaced = False
    for turn in turns:
        if is_human_turn(turn):
            human += 1
            replaced = human in evolved
            if replaced:
                row = evolved[human]
                out += [("user", str(row.get("instruction") or "")), ("assistant", str(row.get("answer") or ""))]
                continue
        elif replaced:
            continue  # the original reply to a rewritten turn
        text = turn_text(turn)
        out.append((_speaker(turn), text if isinstance(text, str) else "" if text is None else str(text)))
    return out


def conversation_rows(rows: Sequence[Mapping[str, Any]], export_format: str, lineage: str,
                      source: ConversationInput, counts: ConversationCounts,
                      ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(layout row, lineage record)`` per conversation of ``source`` with a turn evolved in ``rows``.

    ``rows`` are the exported rows of one round (or of every round, for a mixed export: one
    conversation per round); conversations come in input order, round by round.
    """
    by_round: dict[int, dict[str, dict[int, Mapping[str, Any]]]] = {}
    for row in rows:
        turn = row.get("turn")
        if turn is None:
            raise DataError(None, f"row {row.get('id')}: not from a conversation, cannot be put into one")
        conversation = str(row["root_id"]).removesuffix(f"-{turn}")
        by_round.setdefault(int(row["round"]), {}).setdefault(conversation, {})[int(turn)] = row
    for round_no, conversations in sorted(by_round.items()):
        found = 0
        for row_id, turns in iter_conversations(source.path, column=source.column, id_column=source.id_column):
            evolved = conversations.get(row_id)
            if not evolved:
                continue
            found += 1
            humans = sum(1 for turn in turns if is_human_turn(turn))
            counts.conversations += 1
            counts.evolved_turns += len(evolved)
            counts.kept_turns += humans - len(evolved)
            first = next(iter(evolved.values()))
            record = {"id": f"{row_id}:r{round_no}", "root_id": row_id, "round": round_no,
                      "turns": [{"turn": k, "id": evolved[k].get("id"), "parent_id": evolved[k].get("parent_id"),
                                 "original": evolved[k].get("original"), "operation": evolved[k].get("operation")}
                                for k in sorted(evolved)],
                      "method_fingerprint": first.get("method_fingerprint"), "evol_model": first.get("evol_model"),
                      "answer_model": first.get("answer_model")}
            yield _row(export_format, record["id"], rebuild(turns, evolved), lineage, record), record
        if found < len(conversations):
            missing = sorted(set(conversations) - {row_id for row_id, _ in iter_conversations(
                source.path, column=source.column, id_column=source.id_column)})
            raise DataError(source.path, f"has no conversation with id {missing[0]!r} of the evolve output "
                                         "(is it the input that evolve read, with the same --column/--id-column?)")
