"""Reading an input as seed items (or as conversations), and reading back a written output.

Each input format has its reader (:data:`SOURCE_OPENERS`); this module turns the records a reader
yields into seed items: columns resolved, ids checked and unique, one item per instruction (or
per human turn of a conversation), streamed so that a large input is never loaded whole.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from autoevol.data.columns import CONVERSATION_COLUMNS, resolve_columns
from autoevol.data.conversations import conversation_items, looks_like_conversation
from autoevol.data.csv_files import open_csv
from autoevol.data.file_formats import Source, input_format, output_format
from autoevol.data.json_files import first_char, open_json, open_jsonl, read_json_lines
from autoevol.data.parquet_files import open_parquet
from autoevol.data.saved_datasets import load_dataset_folder, open_dataset
from autoevol.data.validation import DataError, check_text, record_id, require_object
from autoevol.records import SeedItem

logger = logging.getLogger(__name__)

#: Readers by input format (suffix, or "dataset" for a save_to_disk folder).
SOURCE_OPENERS: dict[str, Callable[[Path], Source]] = {
    ".jsonl": open_jsonl,
    ".json": open_json,
    ".csv": open_csv,
    ".parquet": open_parquet,
    "dataset": open_dataset,
}


def iter_items(
    path: str | Path,
    *,
    column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
) -> Iterator[SeedItem]:
    """Stream the seed items of an input file or ``save_to_disk`` folder.

    Args:
        path: a ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file, or a saved dataset folder.
        column: the instruction column; detected with :func:`autoevol.data.detect_column` when None.
        id_column: the id column; ``id`` when present, else ids are the 0-based row index.
        limit: stop after this many input rows (a conversation row may yield several items).

    Returns:
        An iterator of :class:`SeedItem`. A conversation row yields one item per human turn,
        with ids ``"<row id>-<k>"`` and ``turn=k``.

    Raises:
        DataError: at call time for a missing path or an unsupported format; while iterating
            for unreadable content (invalid JSON or UTF-8, a missing column or id, a duplicated
            id, no rows). Per-row instruction problems are reported in ``SeedItem.problem``.
    """
    path = Path(path)
    fmt = input_format(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return _items(path, fmt, column, id_column, limit)


def count_rows(path: str | Path) -> int | None:
    """A cheap row count for progress bars, or None when unknown or unreadable.

    JSON lines: non-blank lines; CSV: non-blank lines minus the header (approximate when fields
    hold newlines); parquet: metadata; folder: dataset length; JSON arrays: None. Never raises.
    """
    path = Path(path)
    try:
        fmt = input_format(path)
        if fmt == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "dataset":
            return len(load_dataset_folder(path))
        if fmt == ".json" and first_char(path) == "[":
            return None
        lines = _count_nonblank_lines(path)
        return max(lines - 1, 0) if fmt == ".csv" else lines
    except Exception as exc:  # a progress bar must never break a run
        logger.debug("cannot count rows of %s: %s", path, exc)
        return None


def _count_nonblank_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def iter_conversations(
    path: str | Path, *, column: str | None = None, id_column: str | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Stream ``(row id, turns)`` for every input record whose instruction cell is a conversation.

    Columns and ids are resolved exactly as :func:`iter_items` resolves them, so the row id is
    the one the record's seed items carry (``"<row id>-<k>"`` for its k-th human turn). Records
    whose cell is not a list of turn objects are skipped (they yielded no usable turn).
    """
    path = Path(path)
    for _, record, name, row_id in _records(path, input_format(path), column, id_column, None):
        value = record.get(name)
        if isinstance(value, list) and all(isinstance(turn, dict) for turn in value):
            yield row_id, value


def _records(
    path: Path, fmt: str, column: str | None, id_column: str | None, limit: int | None
) -> Iterator[tuple[int, dict, str, str]]:
    """``(row number, record, instruction column, row id)`` of each input record, in order."""
    source = SOURCE_OPENERS[fmt](path)
    if source.columns is not None:
        column, id_column = resolve_columns(path, source.columns, column, id_column)
        rows = source.read(list(dict.fromkeys([column, id_column or column])))
    else:
        rows = source.read(None)
        first = next(rows, None)
        if first is None:
            raise DataError(path, f"no rows{source.empty_hint}")
        require_object(path, *first)
        column, id_column = resolve_columns(path, list(first[1]), column, id_column, first[0])
        rows = itertools.chain([first], rows)

    logger.debug("reading %s: column=%r id_column=%r", path, column, id_column)
    count = 0
    for index, (row_no, record) in enumerate(rows):
        require_object(path, row_no, record)
        yield row_no, record, column, record_id(path, row_no, record, id_column, index)
        count += 1
        if limit is not None and count >= limit:
            return
    if count == 0:
        raise DataError(path, f"no rows{source.empty_hint}")


def _items(
    path: Path, fmt: str, column: str | None, id_column: str | None, limit: int | None
) -> Iterator[SeedItem]:
    if limit == 0:
        return
    seen: dict[str, int] = {}
    for row_no, record, name, row_id in _records(path, fmt, column, id_column, limit):
        for item in record_items(path, row_no, record, name, row_id):
            first_row = seen.setdefault(item.id, row_no)
            if first_row != row_no:
                raise DataError(
                    path, f"duplicated id '{item.id}' (first used in row {first_row})", row_no
                )
            yield item


def record_items(
    path: Path, row_no: int, record: dict, column: str, row_id: str
) -> list[SeedItem]:
    """The seed items of one input record (one, or one per human turn of a conversation)."""
    if column not in record:
        raise DataError(path, f"column '{column}' is missing", row_no)
    value = record[column]
    if column in CONVERSATION_COLUMNS or looks_like_conversation(value):
        return conversation_items(value, column, row_no, row_id)
    text, problem = check_text(value)
    return [SeedItem(id=row_id, instruction=text, row=row_no, problem=problem)]


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of an output written by :func:`autoevol.data.write_rows` (jsonl, parquet or dataset)."""
    fmt = output_format(path)
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if fmt == "jsonl":
        return (record for _, record in read_json_lines(path))
    source = SOURCE_OPENERS[".parquet" if fmt == "parquet" else "dataset"](path)
    return (record for _, record in source.read(None))
