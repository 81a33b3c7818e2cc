"""Writing rows: ``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder, streamed, replaced in one step.

Rows are written to a temporary sibling of the output that is renamed onto it at the end, so a
crash never leaves half an output and an existing output stays untouched until then. Parquet and
dataset outputs take their Arrow schema from a hint (a schema, or a pydantic model's fields) or
from the first batch of rows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from autoevol.data.file_formats import BATCH_ROWS, output_format
from autoevol.data.saved_datasets import quiet_datasets
from autoevol.data.validation import DataError

logger = logging.getLogger(__name__)


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


def _as_dict(row: dict[str, Any] | BaseModel) -> dict[str, Any]:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


@contextlib.contextmanager
def temporary_sibling(final: Path) -> Iterator[Path]:
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
    with temporary_sibling(final) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def _write_parquet(rows: Iterable[dict[str, Any]], final: Path, schema: pa.Schema | None) -> int:
    with temporary_sibling(final) as tmp:
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
        with quiet_datasets() as datasets:
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
        batch = list(itertools.islice(iterator, BATCH_ROWS))
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
