"""Exporting a finished evolve output: the successful evolutions as training files, per round or mixed.

An evolve output holds one row per input and per round, failed rows included. An export keeps the
successful evolutions only (the training data), one row per evolved instruction with its lineage:

    id, root_id, parent_id, round, instruction, original, answer, method_fingerprint, evol_model,
    answer_model, turn, operation

With ``include_seed`` the seed instructions join as round 0 rows (``id == root_id``, no parent).
``export_format`` writes those rows in a layout trainers read instead (chat messages, ShareGPT,
Alpaca; conversations put back together), with the lineage in a side file or column: see
:mod:`autoevol.export.layouts`.
``mode="separate"`` writes one file per round; ``mode="mixed"`` one file with every round (the
paper's mixed-round data).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from autoevol.data import DataError, output_format, read_rows, write_rows
from autoevol.export import layouts
from autoevol.export.layouts import (
    ConversationCounts,
    ConversationInput,
    ExportFormat,
    LineageMode,
)
from autoevol.metrics.embeddings import Embedder
from autoevol.metrics.quality import dedup_indices

logger = logging.getLogger(__name__)

ExportMode = Literal["separate", "mixed"]


class ExportResult(BaseModel):
    """What an export wrote."""

    files: list[Path]
    rows_by_round: dict[int, int] = Field(description="rows written per round (0 = seed)")
    duplicates_dropped: int = 0
    splits: dict[str, str] = Field(default_factory=dict, description="split name -> file, for a card")
    export_format: str = "raw"
    lineage_files: list[Path] = Field(default_factory=list)
    conversations: ConversationCounts | None = Field(
        default=None, description="conversations put back together (conversation inputs only)")


def export_rows(rows: Iterable[Mapping[str, Any]], *, include_seed: bool = False) -> list[dict[str, Any]]:
    """The exported rows of an evolve output's rows: successful evolutions, seeds first when asked."""
    seeds: dict[str, dict[str, Any]] = {}
    evolved: list[dict[str, Any]] = []
    for row in rows:
        round_no = int(row.get("round") or 1)
        if round_no == 1 and row.get("root_id") is not None and row["root_id"] not in seeds:
            seeds[row["root_id"]] = {
                "id": row["root_id"], "root_id": row["root_id"], "parent_id": None, "round": 0,
                "instruction": row.get("original"), "original": None, "answer": None,
                "method_fingerprint": None, "evol_model": None, "answer_model": None, "turn": row.get("turn"),
                "operation": None,
            }
        if row.get("failed") or not row.get("evolved"):
            continue
        evolved.append({
            "id": row.get("id"), "root_id": row.get("root_id"), "parent_id": row.get("parent_id"),
            "round": round_no, "instruction": row.get("evolved"), "original": row.get("original"),
            "answer": row.get("answer"), "method_fingerprint": row.get("method_fingerprint"),
            "evol_model": row.get("evol_model"), "answer_model": row.get("answer_model"), "turn": row.get("turn"),
            "operation": row.get("operation"),
        })
    evolved.sort(key=lambda r: r["round"])  # stable: input order within a round
    return ([*seeds.values()] if include_seed else []) + evolved


def _dedup(rows: list[dict[str, Any]], *, embedder: Embedder | None, dup_threshold: float) -> list[dict[str, Any]]:
    texts = [str(r["instruction"] or "") for r in rows]
    if not texts:
        return rows
    emb = None
    if embedder is not None:
        from autoevol.metrics.embeddings import normalize_rows

        emb = normalize_rows(embedder.embed(texts))
    return [rows[i] for i in dedup_indices(texts, emb, threshold=dup_threshold)]


def separate_paths(out: str | Path, rounds: Sequence[int]) -> dict[int, Path]:
    """Where ``mode="separate"`` writes each round.

    A ``.jsonl``/``.parquet`` path is a prefix (``data.jsonl`` -> ``data.round-1.jsonl``); a path
    without a suffix is a folder holding ``round-<r>.parquet`` files (the Hub's folder layout).
    """
    out = Path(out)
    if output_format(out) == "dataset":
        return {r: out / f"round-{r}.parquet" for r in rounds}
    return {r: out.with_name(f"{out.stem}.round-{r}{out.suffix}") for r in rounds}


def export_rounds(
    rows_path: str | Path,
    out_dir_or_prefix: str | Path,
    *,
    mode: ExportMode = "separate",
    include_seed: bool = False,
    dedup: bool = False,
    dup_threshold: float = 0.95,
    embedder: Embedder | None = None,
    export_format: ExportFormat = "raw",
    lineage: LineageMode = "file",
    conversations: ConversationInput | None = None,
) -> ExportResult:
    """Export the successful rows of an evolve output, per round or mixed, in a training layout.

    Args:
        rows_path: an evolve output (``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder).
        out_dir_or_prefix: ``mode="mixed"``: the output file or dataset folder; ``mode="separate"``:
            see :func:`separate_paths`.
        include_seed: add the seed instructions as round 0.
        dedup: drop exact repeats and, with ``embedder``, near-duplicates (cosine >= ``dup_threshold``)
            of an earlier row; within each file, first occurrence wins (seeds come first).
        embedder: for near-duplicates; without one only exact (normalized text) repeats are dropped.
        export_format: ``raw`` (the rows above), ``messages``, ``sharegpt`` or ``alpaca`` (see
            :mod:`autoevol.export.layouts`).
        lineage: where a non-raw layout keeps the lineage: ``file`` (``<export>.lineage.jsonl``
            beside each data file), ``column`` (a ``lineage`` JSON column) or ``none``.
        conversations: the input evolve read, when it held conversations: needed by
            ``messages`` and ``sharegpt`` to put them back together.

    Raises:
        ValueError: an unknown mode, format or lineage mode, or seeds or dedup asked with a non-raw
            layout that cannot hold them.
        DataError: conversation rows without ``conversations``, or an input that lacks them.
    """
    if mode not in ("separate", "mixed"):
        raise ValueError(f"mode must be 'separate' or 'mixed', not {mode!r}")
    layouts.check_format(export_format, lineage)
    if include_seed and export_format != "raw":
        raise ValueError("seed rows have no answers: include_seed works with the raw format only")
    rows = export_rows(read_rows(rows_path), include_seed=include_seed)
    rebuilding = export_format in ("messages", "sharegpt") and any(row.get("turn") is not None for row in rows)
    if rebuilding and conversations is None:
        raise DataError(rows_path, "holds turns of conversations; give the input evolve read (--data) to put "
                                   "them back together, or export them one by one with --format alpaca or raw")
    if rebuilding and dedup:
        raise ValueError("dedup would drop single turns out of conversations; export conversations without it")
    groups: dict[int, list[dict[str, Any]]] = {}
    if mode == "mixed":
        groups[-1] = rows
    else:
        for row in rows:
            groups.setdefault(row["round"], []).append(row)
    dropped = 0
    if dedup:
        for key, group in groups.items():
            kept = _dedup(group, embedder=embedder, dup_threshold=dup_threshold)
            dropped += len(group) - len(kept)
            groups[key] = kept
    root = Path(out_dir_or_prefix)
    result = ExportResult(files=[], rows_by_round={}, duplicates_dropped=dropped, export_format=export_format,
                          conversations=ConversationCounts() if rebuilding else None)
    targets = {-1: root} if mode == "mixed" else separate_paths(root, sorted(groups))
    written: Counter[int] = Counter()
    for key, group in sorted(groups.items()):
        target = targets[key]
        written.update(_write_layout(group, target, root, result, export_format=export_format, lineage=lineage,
                                     conversations=conversations if rebuilding else None))
        result.files.append(target)
        if mode == "mixed":
            result.splits["train"] = target.name if output_format(target) != "dataset" else ""
        else:
            result.splits[f"round_{key}"] = target.name
    result.rows_by_round = dict(sorted(written.items()))
    logger.info("exported %d rows to %d file(s)", sum(written.values()), len(result.files))
    return result


def _write_layout(group: list[dict[str, Any]], target: Path, root: Path, result: ExportResult, *,
                  export_format: str, lineage: str, conversations: ConversationInput | None) -> Counter[int]:
    """Write one export file (and its lineage file) in ``export_format``; returns rows per round."""
    if export_format == "raw":
        write_rows(group, target, schema_hint=None)
        return Counter(row["round"] for row in group)
    if conversations is not None and result.conversations is not None:
        pairs = layouts.conversation_rows(group, export_format, lineage, conversations, result.conversations)
    else:
        pairs = layouts.single_turn_rows(group, export_format, lineage)
    records: list[dict[str, Any]] = []

    def layout_rows() -> Any:
        for row, record in pairs:
            records.append(record)
            yield row

    write_rows(layout_rows(), target, schema_hint=layouts.schema(export_format, lineage))
    if lineage == "file":
        side = layouts.lineage_path(target, root)
        write_rows(records, side)
        result.lineage_files.append(side)
    return Counter(int(record["round"]) for record in records)
