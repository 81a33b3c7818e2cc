"""Readers of JSON inputs: JSON lines (``.jsonl``, or a ``.json`` file of lines) and JSON arrays.

JSON lines are read line by line (blank lines are skipped, and a row is a line, so its number is
what an editor shows); a ``.json`` array is parsed incrementally, element by element, so a large
file is never loaded whole. Invalid JSON or UTF-8 names the row it is in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autoevol.data.file_formats import Source
from autoevol.data.validation import DataError, not_utf8

_READ_CHUNK = 1 << 16
_SURROGATE = re.compile("[\udc80-\udcff]")


def open_jsonl(path: Path) -> Source:
    """A ``.jsonl`` input: one JSON object per line."""
    hint = " (the file has no JSON lines)"
    return Source(None, lambda _cols: read_json_lines(path), hint)


def read_json_lines(path: Path, hint: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line; invalid JSON or UTF-8 names the line."""
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise not_utf8(path, raw, exc, line_no) from None
            if not text.strip():
                continue
            try:
                yield line_no, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    path, f"invalid JSON ({exc.msg} at column {exc.colno}){hint}", line_no
                ) from None


def open_json(path: Path) -> Source:
    """A ``.json`` input: a JSON array of objects, or one JSON object per line."""
    first = first_char(path)
    if first == "{":
        hint = "; a .json file must hold a JSON array of objects or one JSON object per line"
        return Source(None, lambda _cols: read_json_lines(path, hint))
    if first not in ("[", ""):
        raise DataError(
            path, "expected a JSON array of objects or one JSON object per line", 1
        )
    return Source(None, lambda _cols: _read_json_array(path), " (the file is empty)")


def first_char(path: Path) -> str:
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
