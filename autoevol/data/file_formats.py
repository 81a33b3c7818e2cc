"""Which format a path holds, for reading and for writing, and the shape of an opened input.

Inputs are ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` files, or a folder written by HF
``datasets``' ``save_to_disk`` (:func:`input_format`); outputs are ``.jsonl``, ``.parquet`` or a
``save_to_disk`` folder, a path without a suffix (:func:`output_format`). Each input format has a
reader that opens a path as a :class:`Source`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoevol.data.validation import DataError

#: Input formats, by suffix; a folder is read as a ``save_to_disk`` dataset.
INPUT_FORMATS: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet")
#: Output formats accepted by :func:`autoevol.data.write_rows`.
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "dataset")
#: Rows per batch when parquet files and datasets are read or written.
BATCH_ROWS = 1000

_SUPPORTED_INPUTS = ".jsonl, .json, .csv, .parquet, or a folder written by datasets' save_to_disk"


@dataclass
class Source:
    """An opened input: its columns when known up front, and a reader of (row number, record).

    ``read`` takes the columns to read (None: all) and yields 1-based row numbers with records;
    ``empty_hint`` completes the "no rows" error of an input without records.
    """

    columns: list[str] | None
    read: Callable[[list[str] | None], Iterator[tuple[int, Any]]]
    empty_hint: str = ""


def input_format(path: Path) -> str:
    """The input format of an existing path: its suffix, or ``dataset`` for a folder.

    Raises:
        DataError: the path does not exist or has an unsupported suffix.
    """
    if path.is_dir():
        return "dataset"
    if not path.exists():
        raise DataError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        shown = f"'{path.suffix}'" if path.suffix else "a file without a suffix"
        raise DataError(path, f"unsupported input format {shown}; supported: {_SUPPORTED_INPUTS}")
    return suffix


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
