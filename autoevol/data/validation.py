"""What makes an input record usable, and how a problem with it is reported.

:class:`DataError` is the data room's one error: a one-line message naming the file, the row and
the problem. The checks here decide whether a record is an object, what its id is, and whether
its instruction cell is usable text; a problem that concerns one row's instruction only does not
raise but comes back as text, carried by the item in ``SeedItem.problem``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Instructions longer than this are truncated and reported as a problem.
MAX_INSTRUCTION_CHARS = 100_000


class DataError(Exception):
    """Unusable input or output: the message is one line naming the file, the row and the problem.

    Shapes: ``"<path>, row <n>: <problem>"`` when the row is known, else ``"<path>: <problem>"``
    (just ``"<problem>"`` when no file is involved, as in :func:`autoevol.data.detect_column`).
    The attributes ``path`` (str or None), ``problem`` and ``row`` (1-based, or None) hold the parts.
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


def name_list(names: Sequence[Any]) -> str:
    """Names (of columns, splits) as an error message lists them: comma separated, or ``(none)``."""
    return ", ".join(str(c) for c in names) if names else "(none)"


def not_utf8(path: Path, raw: bytes, error: UnicodeDecodeError, row: int | None) -> DataError:
    """The error for a line of ``path`` that is not UTF-8 (``row`` None: the CSV header line)."""
    where = "the header line is not" if row is None else "not"
    byte = raw[error.start]
    return DataError(path, f"{where} valid UTF-8 (byte 0x{byte:02x} at offset {error.start})", row)


def require_object(path: Path, row_no: int, record: Any) -> None:
    """Raise :class:`DataError` unless the record is a JSON object (a dict)."""
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


def check_text(value: Any) -> tuple[str, str | None]:
    """The instruction text of a cell and its problem, if any (null, not text, empty, too long)."""
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
