"""Reading seed instructions and writing evolved rows.

Inputs are local files or folders:

* ``.jsonl``: one JSON object per line, read line by line (blank lines are skipped);
* ``.json``: a JSON array of objects (parsed incrementally) or JSON lines in a ``.json`` file;
* ``.csv``: a header line, then one row per record (UTF-8, comma separated);
* ``.parquet``: read in record batches, only the needed columns;
* a folder written by HF ``datasets``' ``save_to_disk``.

Everything streams: a large input is never loaded whole into memory. The instruction column is
named by the caller or detected (:func:`detect_column`); ShareGPT ``conversations`` and OpenAI-style
``messages`` columns yield one item per human turn.

Unusable input raises :class:`DataError`, whose message is one line naming the file, the row and
the problem. Row numbers are 1-based: in JSON lines files a row is a line (blank lines count, so the
number is what an editor shows); in the other formats it is the position of the record among the
data records (a CSV header is not a row). Problems that concern one row's instruction only (null,
empty, not text, too long) do not abort the file: the item carries them in ``SeedItem.problem``.

Outputs are ``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder (a path without a suffix). They
are written to a temporary sibling and renamed at the end, so a crash never leaves half an output.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from autoevol.records import SeedItem

logger = logging.getLogger(__name__)

__all__ = [
    "CONVERSATION_COLUMNS",
    "INPUT_FORMATS",
    "INSTRUCTION_COLUMNS",
    "MAX_INSTRUCTION_CHARS",
    "OUTPUT_FORMATS",
    "DataError",
    "count_rows",
    "detect_column",
    "is_human_turn",
    "iter_conversations",
    "iter_items",
    "output_format",
    "read_rows",
    "turn_text",
    "write_rows",
]

#: Instructions longer than this are truncated and reported as a problem.
MAX_INSTRUCTION_CHARS = 100_000
#: Plain-text instruction columns, in order of preference.
INSTRUCTION_COLUMNS: tuple[str, ...] = ("instruction", "prompt", "question", "query")
#: Conversation columns (ShareGPT ``from``/``value`` turns, OpenAI ``role``/``content`` messages).
CONVERSATION_COLUMNS: tuple[str, ...] = ("conversations", "messages")
#: Input formats, by suffix; a folder is read as a ``save_to_disk`` dataset.
INPUT_FORMATS: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")
#: Output formats accepted by :func:`write_rows`.
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "dataset")

_ID_COLUMN = "id"
_HUMAN_SPEAKERS = frozenset({"human", "user"})
_BATCH_ROWS = 1000
_READ_CHUNK = 1 << 16
_SURROGATE = re.compile("[\udc80-\udcff]")
_SUPPORTED_INPUTS = ".jsonl, .json, .csv, .parquet, or a folder written by datasets' save_to_disk"


class DataError(Exception):
    """Unusable input or output: the message is one line naming the file, the row and the problem.

    Shapes: ``"<path>, row <n>: <problem>"`` when the row is known, else ``"<path>: <problem>"``
    (just ``"<problem>"`` when no file is involved, as in :func:`detect_column`). The attributes
    ``path`` (str or None), ``problem`` and ``row`` (1-based, or None) hold the parts.
    """

    def __init__(self, path: str | Path | None, problem: str, row: int | None = None) -> None:
        super().__init__(path, problem, row)
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).splitlines())
        self.row = row

    def __str__(self) -> str:
        if self.path is None:
            return self.problem
        where = self.path if self.row is None else f"{self.path}, row {self.row}"
        return f"{where}: {self.problem}"


# --------------------------------------------------------------------------- column detection


def detect_column(columns: Sequence[str]) -> str:
    """Pick the instruction column among ``columns``.

    The first present of ``instruction``, ``prompt``, ``question``, ``query``, then the
    conversation columns ``conversations`` and ``messages``; an exact name wins over a
    case-insensitive match.

    Raises:
        DataError: (without a file name) listing the columns when none matches.
    """
    found = _find_column(columns, INSTRUCTION_COLUMNS + CONVERSATION_COLUMNS)
    if found is None:
        wanted = ", ".join(INSTRUCTION_COLUMNS + CONVERSATION_COLUMNS)
        raise DataError(
            None,
            f"no instruction column found (looked for {wanted}); columns are: {_list(columns)}; "
            "name the column explicitly",
        )
    return found


def _find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    present = list(columns)
    for name in candidates:
        if name in present:
            return name
    lowered = {c.lower(): c for c in reversed(present) if isinstance(c, str)}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    return None


def _list(columns: Sequence[str]) -> str:
    return ", ".join(str(c) for c in columns) if columns else "(none)"


def resolve_columns(
    path: Path,
    columns: Sequence[str],
    column: str | None,
    id_column: str | None,
    row: int | None = None,
) -> tuple[str, str | None]:
    """The instruction column and the id column (or None for index ids) of an input.

    ``row`` is the row whose keys are ``columns`` in formats without a schema (JSON).
    """
    if column is None:
        try:
            column = detect_column(columns)
        except DataError as exc:
            raise DataError(path, exc.problem, row) from None
    elif column not in columns:
        raise DataError(path, f"column '{column}' not found; columns are: {_list(columns)}", row)
    if id_column is not None:
        if id_column not in columns:
            raise DataError(
                path, f"id column '{id_column}' not found; columns are: {_list(columns)}", row
            )
    elif _ID_COLUMN in columns and column != _ID_COLUMN:
        id_column = _ID_COLUMN
    return column, id_column


# --------------------------------------------------------------------------- reading: public API


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
        column: the instruction column; detected with :func:`detect_column` when None.
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
    fmt = _input_format(path)
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
        fmt = _input_format(path)
        if fmt == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        if fmt == "dataset":
            return len(_load_dataset_folder(path))
        if fmt == ".json" and _first_char(path) == "[":
            return None
        lines = _count_nonblank_lines(path)
        return max(lines - 1, 0) if fmt == ".csv" else lines
    except Exception as exc:  # a progress bar must never break a run
        logger.debug("cannot count rows of %s: %s", path, exc)
        return None


def _input_format(path: Path) -> str:
    if path.is_dir():
        return "dataset"
    if not path.exists():
        raise DataError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        shown = f"'{path.suffix}'" if path.suffix else "a file without a suffix"
        raise DataError(path, f"unsupported input format {shown}; supported: {_SUPPORTED_INPUTS}")
    return suffix


def _count_nonblank_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


# --------------------------------------------------------------------------- rows -> items


@dataclass
class _Source:
    """An opened input: its columns when known up front, and a reader of (row number, record)."""

    columns: list[str] | None
    read: Callable[[list[str] | None], Iterator[tuple[int, Any]]]
    empty_hint: str = ""


def iter_conversations(
    path: str | Path, *, column: str | None = None, id_column: str | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Stream ``(row id, turns)`` for every input record whose instruction cell is a conversation.

    Columns and ids are resolved exactly as :func:`iter_items` resolves them, so the row id is
    the one the record's seed items carry (``"<row id>-<k>"`` for its k-th human turn). Records
    whose cell is not a list of turn objects are skipped (they yielded no usable turn).
    """
    path = Path(path)
    for _, record, name, row_id in _records(path, _input_format(path), column, id_column, None):
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
        _require_object(path, *first)
        column, id_column = resolve_columns(path, list(first[1]), column, id_column, first[0])
        rows = itertools.chain([first], rows)

    logger.debug("reading %s: column=%r id_column=%r", path, column, id_column)
    count = 0
    for index, (row_no, record) in enumerate(rows):
        _require_object(path, row_no, record)
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


def _require_object(path: Path, row_no: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise DataError(path, f"expected an object, got {_kind(record)}", row_no)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")


def record_id(path: Path, row_no: int, record: dict, id_column: str | None, index: int) -> str:
    """The id of one input record: its ``id_column`` value, else its 0-based index."""
    if id_column is None:
        return str(index)
    if id_column not in record:
        raise DataError(path, f"id column '{id_column}' is missing", row_no)
    value = record[id_column]
    if value is None:
        raise DataError(path, f"id is null (column '{id_column}')", row_no)
    text = str(value)
    if not text.strip():
        raise DataError(path, f"id is empty (column '{id_column}')", row_no)
    return text


def record_items(
    path: Path, row_no: int, record: dict, column: str, row_id: str
) -> list[SeedItem]:
    """The seed items of one input record (one, or one per human turn of a conversation)."""
    if column not in record:
        raise DataError(path, f"column '{column}' is missing", row_no)
    value = record[column]
    if column in CONVERSATION_COLUMNS or _looks_like_conversation(value):
        return _conversation_items(value, column, row_no, row_id)
    text, problem = _check_text(value)
    return [SeedItem(id=row_id, instruction=text, row=row_no, problem=problem)]


def _check_text(value: Any) -> tuple[str, str | None]:
    """The instruction text of a cell and its problem, if any."""
    if value is None:
        return "", "instruction is null"
    if not isinstance(value, str):
        text = str(value)[:MAX_INSTRUCTION_CHARS]
        return text, f"instruction is not text ({type(value).__name__})"
    if not value.strip():
        return value, "instruction is empty"
    if len(value) > MAX_INSTRUCTION_CHARS:
        problem = (
            f"instruction is too long ({len(value)} characters; limit {MAX_INSTRUCTION_CHARS})"
        )
        return value[:MAX_INSTRUCTION_CHARS], problem
    return value, None


# --------------------------------------------------------------------------- conversations


def _looks_like_conversation(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and ("from" in t or "role" in t) for t in value)
    )


def _conversation_items(value: Any, column: str, row_no: int, row_id: str) -> list[SeedItem]:
    """One item per human turn; one problem item when the conversation is unusable."""

    def problem(text: str) -> list[SeedItem]:
        return [SeedItem(id=f"{row_id}-0", instruction="", row=row_no, problem=text)]

    if value is None:
        return problem(f"{column} is null")
    if not isinstance(value, list):
        return problem(f"{column} is not a list of turns ({type(value).__name__})")
    for number, turn in enumerate(value, 1):
        if not isinstance(turn, dict):
            return problem(f"{column} turn {number} is not an object ({type(turn).__name__})")
    human = [turn_text(t) for t in value if is_human_turn(t)]
    if not human:
        return problem("conversation has no human turn")
    items = []
    for k, content in enumerate(human):
        text, issue = _check_text(content)
        items.append(
            SeedItem(id=f"{row_id}-{k}", instruction=text, row=row_no, turn=k, problem=issue)
        )
    return items


def is_human_turn(turn: dict) -> bool:
    """Whether a conversation turn is the user's (ShareGPT ``from: human`` or ``role: user``)."""
    speaker = turn.get("from", turn.get("role"))
    return isinstance(speaker, str) and speaker.lower() in _HUMAN_SPEAKERS


def turn_text(turn: dict) -> Any:
    """The text of a turn (``value`` or ``content``; OpenAI text parts are joined by newlines)."""
    content = turn.get("value") if "from" in turn else turn.get("content")
    # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
    if isinstance(content, list) and content and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "\n".join(p["text"] for p in content)
    return content


# ----------------------------------------------------------------------- readers, one per format


def _open_jsonl(path: Path) -> _Source:
    hint = " (the file has no JSON lines)"
    return _Source(None, lambda _cols: _read_json_lines(path), hint)


def _read_json_lines(path: Path, hint: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line; invalid JSON or UTF-8 names the line."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            text = _decode_line(path, raw, line_no, first=line_no == 1)
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    path, f"invalid JSON ({exc.msg} at column {exc.colno}){hint}", line_no
                ) from None


def _decode_line(path: Path, raw: bytes, row: int | None, *, first: bool) -> str:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        where = "the header line is not" if row is None else "not"
        raise DataError(
            path, f"{where} valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", row
        ) from None


def _open_json(path: Path) -> _Source:
    first = _first_char(path)
    if first == "{":
        hint = "; a .json file must hold a JSON array of objects or one JSON object per line"
        return _Source(None, lambda _cols: _read_json_lines(path, hint))
    if first not in ("[", ""):
        raise DataError(
            path, "expected a JSON array of objects or one JSON object per line", 1
        )
    return _Source(None, lambda _cols: _read_json_array(path), " (the file is empty)")


def _first_char(path: Path) -> str:
    """The first non-whitespace character of a text file ('' when there is none)."""
    with path.open("r", encoding="utf-8-sig", errors="replace") as fh:
        while chunk := fh.read(_READ_CHUNK):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _read_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape") as fh:
        yield from _JsonArrayReader(path, fh)


class _JsonArrayReader:
    """Incremental parser of a top-level JSON array: yields (element number, value).

    Keeps only the unparsed tail of the file in memory (plus the element being parsed).
    Undecodable bytes arrive as lone surrogates (``surrogateescape``) and are reported per element.
    """

    def __init__(self, path: Path, fh: IO[str]) -> None:
        self.path, self.fh = path, fh
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self._next_char() != "[":  # the caller checked; an empty file gives no rows
            return
        self.pos += 1
        if self._next_char() == "]":
            self._expect_end(1)
            return
        row = 0
        while True:
            row += 1
            yield row, self._element(row)
            sep = self._next_char()
            if sep == "]":
                self._expect_end(row + 1)
                return
            if sep != ",":
                found = f"'{sep}'" if sep else "end of file"
                raise DataError(
                    self.path, f"invalid JSON (Expecting ',' delimiter, found {found})", row + 1
                )
            self.pos += 1

    def _element(self, row: int) -> Any:
        while True:
            self._next_char()
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                near_end = exc.pos >= len(self.buf) - 12 or exc.msg.startswith("Unterminated")
                if near_end and self._fill():
                    continue
                raise DataError(self.path, f"invalid JSON ({exc.msg})", row) from None
            if end >= len(self.buf) and self._fill():  # a number may continue in the next chunk
                continue
            bad = _SURROGATE.search(self.buf, self.pos, end)
            if bad:
                byte = ord(bad.group()) - 0xDC00
                raise DataError(self.path, f"not valid UTF-8 (byte 0x{byte:02x})", row)
            self.pos = end
            return value

    def _next_char(self) -> str:
        """Skip whitespace; the next character, or '' at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def _fill(self) -> bool:
        """Append more text (at least as much as is pending); False at the end of the file."""
        if self.eof:
            return False
        pending = self.buf[self.pos :]
        chunk = self.fh.read(max(_READ_CHUNK, len(pending)))
        if not chunk:
            self.eof = True
            return False
        self.buf, self.pos = pending + chunk, 0
        return True

    def _expect_end(self, row: int) -> None:
        self.pos += 1
        if self._next_char():
            raise DataError(self.path, "invalid JSON (extra data after the closing ']')", row)


def _open_csv(path: Path) -> _Source:
    _allow_large_csv_fields()
    with path.open("rb") as fh:
        header = _csv_header(path, csv.reader(_decoded_lines(fh)))
    if header is None:
        return _Source(None, lambda _cols: iter(()), " (the file is empty)")

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        with path.open("rb") as fh:
            reader = csv.reader(_decoded_lines(fh))
            _csv_header(path, reader)
            yield from _csv_rows(path, reader, header)

    return _Source(header, read, " (the file has only a header)")


class _UndecodableLine(Exception):
    def __init__(self, raw: bytes, error: UnicodeDecodeError) -> None:
        super().__init__(raw, error)
        self.raw, self.error = raw, error


def _decoded_lines(fh: IO[bytes]) -> Iterator[str]:
    for line_no, raw in enumerate(fh, 1):
        try:
            yield raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise _UndecodableLine(raw, exc) from None


def _csv_next(path: Path, reader: Any, row: int | None) -> list[str] | None:
    """The next non-empty record, translating decoding and CSV errors into DataError."""
    try:
        while (record := next(reader, None)) is not None and not record:
            pass
        return record
    except _UndecodableLine as exc:
        where = "the header line is not" if row is None else "not"
        byte = exc.raw[exc.error.start]
        raise DataError(
            path, f"{where} valid UTF-8 (byte 0x{byte:02x} at offset {exc.error.start})", row
        ) from None
    except csv.Error as exc:
        raise DataError(path, f"invalid CSV ({exc})", row) from None


def _csv_header(path: Path, reader: Any) -> list[str] | None:
    header = _csv_next(path, reader, None)
    if header is not None and len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise DataError(path, f"duplicated column names in the header: {_list(dupes)}")
    return header


def _csv_rows(path: Path, reader: Any, header: list[str]) -> Iterator[tuple[int, dict]]:
    row = 0
    while (record := _csv_next(path, reader, row + 1)) is not None:
        row += 1
        if len(record) != len(header):
            raise DataError(
                path, f"row has {len(record)} fields but the header has {len(header)}", row
            )
        yield row, dict(zip(header, record))


def _allow_large_csv_fields() -> None:
    """Let a CSV field hold a long instruction (the default limit is 131072 characters)."""
    limit = min(sys.maxsize, 2**31 - 1)
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)


def _open_parquet(path: Path) -> _Source:
    try:
        columns = list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a valid parquet file ({exc})") from None

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        row = 0
        with pq.ParquetFile(path) as parquet:
            batches = parquet.iter_batches(batch_size=_BATCH_ROWS, columns=wanted)
            for batch in _arrow_errors(path, batches):
                for record in batch.to_pylist():
                    row += 1
                    yield row, record

    return _Source(columns, read)


def _arrow_errors(path: Path, batches: Iterable[Any]) -> Iterator[Any]:
    try:
        yield from batches
    except pa.ArrowException as exc:
        raise DataError(path, f"unreadable parquet data ({exc})") from None


def _open_dataset(path: Path) -> _Source:
    dataset = _load_dataset_folder(path)
    columns = list(dataset.column_names)

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        selected = dataset.select_columns(wanted) if wanted else dataset
        row = 0
        for batch in selected.iter(batch_size=_BATCH_ROWS):
            names = list(batch)
            for values in zip(*(batch[n] for n in names)):
                row += 1
                yield row, dict(zip(names, values))

    return _Source(columns, read)


#: Readers by input format (suffix, or "dataset" for a save_to_disk folder).
SOURCE_OPENERS: dict[str, Callable[[Path], _Source]] = {
    ".jsonl": _open_jsonl,
    ".json": _open_json,
    ".csv": _open_csv,
    ".parquet": _open_parquet,
    "dataset": _open_dataset,
}


# --------------------------------------------------------------------------- HF datasets helpers


def _datasets() -> types.ModuleType:
    """Import HF ``datasets`` for offline local use."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    return datasets


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[types.ModuleType]:
    """HF ``datasets`` with its progress bars off for the duration of the block."""
    datasets = _datasets()
    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _load_dataset_folder(path: Path) -> Any:
    """The ``datasets.Dataset`` saved in a folder (the ``train`` split or the only split)."""
    with _quiet_datasets() as datasets:
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(
                path, f"a folder that is not a dataset saved with save_to_disk ({exc})"
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise DataError(
                path, f"a dataset with several splits and no 'train' split: {_list(splits)}"
            )
        if len(splits) > 1:
            logger.warning("%s: reading split %r; ignoring %s", path, split, splits)
        loaded = loaded[split]
    return loaded.with_format(None)


# --------------------------------------------------------------------------- writing


def output_format(path: str | Path) -> str:
    """The output format of a path: ``jsonl``, ``parquet``, or ``dataset`` (no suffix, or ``/``).

    Raises:
        DataError: for any other suffix.
    """
    text = os.fspath(path)
    if text.endswith(("/", os.sep)):
        return "dataset"
    suffix = Path(text).suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    if not suffix:
        return "dataset"
    raise DataError(
        text,
        f"unsupported output format '{suffix}'; use .jsonl, .parquet, "
        "or a folder name without a suffix (written with save_to_disk)",
    )


def write_rows(
    rows: Iterable[dict[str, Any] | BaseModel],
    path: str | Path,
    *,
    schema_hint: pa.Schema | type[BaseModel] | None = None,
) -> int:
    """Write rows to ``path`` in its format (see :func:`output_format`), streaming.

    The rows are written to a temporary sibling that replaces ``path`` only once every row is
    written: if ``rows`` raises midway, no output (and no temporary) is left behind and an
    existing output is untouched. An existing output file or dataset folder is replaced; a
    folder that is not a saved dataset is never replaced.

    Args:
        rows: dicts (or pydantic models) sharing one schema.
        path: a ``.jsonl`` or ``.parquet`` file, or a folder for ``save_to_disk``.
        schema_hint: an Arrow schema, or a pydantic model whose fields give it (e.g.
            ``EvolvedRow``), for parquet and dataset outputs; otherwise the schema is inferred
            from the first batch (a column that is null throughout it becomes a string column).

    Returns:
        The number of rows written.
    """
    fmt = output_format(path)
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    dicts = (_as_dict(row) for row in rows)
    schema = _arrow_schema(schema_hint)
    if fmt == "jsonl":
        count = _write_jsonl(dicts, final)
    elif fmt == "parquet":
        count = _write_parquet(dicts, final, schema)
    else:
        count = _write_dataset(dicts, final, schema)
    logger.info("wrote %d rows to %s", count, final)
    return count


def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of an output written by :func:`write_rows` (jsonl, parquet or dataset)."""
    fmt = output_format(path)
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if fmt == "jsonl":
        return (record for _, record in _read_json_lines(path))
    source = SOURCE_OPENERS[".parquet" if fmt == "parquet" else "dataset"](path)
    return (record for _, record in source.read(None))


def _as_dict(row: dict[str, Any] | BaseModel) -> dict[str, Any]:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


@contextlib.contextmanager
def _temporary_sibling(final: Path) -> Iterator[Path]:
    """A temporary file next to ``final``, renamed onto it on success and removed on failure."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def _write_jsonl(rows: Iterable[dict[str, Any]], final: Path) -> int:
    count = 0
    with _temporary_sibling(final) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _write_parquet(rows: Iterable[dict[str, Any]], final: Path, schema: pa.Schema | None) -> int:
    with _temporary_sibling(final) as tmp:
        return _write_batches(rows, schema, lambda batch_schema: pq.ParquetWriter(tmp, batch_schema))


def _write_batches(rows: Iterable[dict[str, Any]], schema: pa.Schema | None,
                   open_writer: Callable[[pa.Schema], Any]) -> int:
    """Write ``rows`` in record batches with a writer opened on the first batch's schema."""
    count = 0
    writer = None
    try:
        for batch in _record_batches(rows, schema):
            if writer is None:
                writer = open_writer(batch.schema)
            writer.write_batch(batch)
            count += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return count


def _write_dataset(rows: Iterable[dict[str, Any]], final: Path, schema: pa.Schema | None) -> int:
    _check_dataset_target(final)
    workdir = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        arrow_file = workdir / "rows.arrow"
        count = _write_arrow_stream(rows, arrow_file, schema)
        with _quiet_datasets() as datasets:
            dataset = datasets.Dataset.from_file(str(arrow_file))
            # datasets writes no shard at all for 0 rows (then cannot load it): ask for one
            dataset.save_to_disk(str(workdir / "dataset"), num_shards=None if count else 1)
            del dataset
        if final.exists():
            os.replace(final, workdir / "previous")
        os.replace(workdir / "dataset", final)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return count


def _check_dataset_target(final: Path) -> None:
    if not final.exists():
        return
    if final.is_dir() and any((final / n).is_file() for n in ("state.json", "dataset_dict.json")):
        return
    raise DataError(
        final, "exists and is not a dataset saved with save_to_disk; refusing to replace it"
    )


def _write_arrow_stream(
    rows: Iterable[dict[str, Any]], target: Path, schema: pa.Schema | None
) -> int:
    with pa.OSFile(str(target), "wb") as sink:
        return _write_batches(rows, schema, lambda batch_schema: pa.ipc.new_stream(sink, batch_schema))


def _record_batches(
    rows: Iterable[dict[str, Any]], schema: pa.Schema | None
) -> Iterator[pa.RecordBatch]:
    """Batches of ~1000 rows sharing one schema (given, or inferred from the first batch).

    Always yields at least one (possibly empty) batch so that the writer has a schema.
    """
    iterator = iter(rows)
    number = 0
    while True:
        batch = list(itertools.islice(iterator, _BATCH_ROWS))
        if not batch and number:
            return
        if schema is None:
            schema = _infer_schema(batch)
        names = set(schema.names)
        for offset, row in enumerate(batch, number + 1):
            extra = row.keys() - names
            if extra:
                raise ValueError(
                    f"row {offset} has fields not in the output schema: {sorted(extra)}"
                )
        number += len(batch)
        yield pa.RecordBatch.from_pylist(batch, schema=schema)
        if not batch:
            return


def _infer_schema(batch: list[dict[str, Any]]) -> pa.Schema:
    names = list(dict.fromkeys(key for row in batch for key in row))
    fields = []
    for name in names:
        array = pa.array([row.get(name) for row in batch])
        fields.append(pa.field(name, pa.string() if pa.types.is_null(array.type) else array.type))
    return pa.schema(fields)


_ARROW_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
}


def _arrow_schema(hint: pa.Schema | type[BaseModel] | None) -> pa.Schema | None:
    if hint is None or isinstance(hint, pa.Schema):
        return hint
    fields = []
    for name, info in hint.model_fields.items():
        annotation, nullable = info.annotation, False
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else None
        if annotation not in _ARROW_TYPES:
            raise TypeError(f"no Arrow type for field {name!r} ({info.annotation})")
        fields.append(pa.field(name, _ARROW_TYPES[annotation], nullable=nullable))
    return pa.schema(fields)
