"""Reader of CSV inputs: a header line, then one record per row (UTF-8, comma separated).

Row numbers count data records (the header is not a row; a field may hold newlines). Invalid
UTF-8, malformed CSV, duplicated header names and rows with the wrong number of fields are
errors that name the row.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autoevol.data.file_formats import Source
from autoevol.data.validation import DataError, name_list, not_utf8


def open_csv(path: Path) -> Source:
    """A ``.csv`` input; its columns are the header's."""
    _allow_large_csv_fields()
    with path.open("rb") as fh:
        header = _csv_header(path, csv.reader(_decoded_lines(fh)))
    if header is None:
        return Source(None, lambda _cols: iter(()), " (the file is empty)")

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        with path.open("rb") as fh:
            reader = csv.reader(_decoded_lines(fh))
            _csv_header(path, reader)
            yield from _csv_rows(path, reader, header)

    return Source(header, read, " (the file has only a header)")


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
        raise not_utf8(path, exc.raw, exc.error, row) from None
    except csv.Error as exc:
        raise DataError(path, f"invalid CSV ({exc})", row) from None


def _csv_header(path: Path, reader: Any) -> list[str] | None:
    header = _csv_next(path, reader, None)
    if header is not None and len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise DataError(path, f"duplicated column names in the header: {name_list(dupes)}")
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
