"""Reader of parquet inputs: record batches of only the needed columns, so a large file streams."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autoevol.data.file_formats import BATCH_ROWS, Source
from autoevol.data.validation import DataError


def open_parquet(path: Path) -> Source:
    """A ``.parquet`` input; its columns are the schema's."""
    try:
        columns = list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a valid parquet file ({exc})") from None

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        row = 0
        with pq.ParquetFile(path) as parquet:
            batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted)
            for batch in _arrow_errors(path, batches):
                for record in batch.to_pylist():
                    row += 1
                    yield row, record

    return Source(columns, read)


def _arrow_errors(path: Path, batches: Iterable[Any]) -> Iterator[Any]:
    try:
        yield from batches
    except pa.ArrowException as exc:
        raise DataError(path, f"unreadable parquet data ({exc})") from None
