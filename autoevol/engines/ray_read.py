"""Round 1 of a Ray job read by Ray Data: which inputs qualify, and the read tasks themselves.

In round 1 of a ``.jsonl`` or ``.parquet`` input with an id column (and no ``limit``), the driver's
pass only validates the input and keeps the ids still to do; the rows themselves are read by Ray
Data tasks (byte ranges of the JSON lines file, or ``read_parquet``) and turned into seed items by
the local reader's own helpers (:func:`seed_sources`), so ids, conversation turns and instruction
checks are the local engine's. :func:`ray_read_plan` gives the rule, :func:`read_wave_sources`
runs the reads of one wave.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoevol.data import SOURCE_OPENERS, record_id, record_items, resolve_columns

#: Input formats whose round 1 is read through Ray Data (see :func:`ray_read_plan`).
RAY_READ_FORMATS = (".jsonl", ".parquet")
#: Bytes of a JSON lines input per Ray read task (cut at line ends).
READ_RANGE_BYTES = 16 << 20


def ray_read_plan(data: Path, column: str | None, id_column: str | None,
                  limit: int | None) -> tuple[str, str] | None:
    """``(column, id_column)`` when round 1 of ``data`` is read through Ray Data, else None.

    Ray Data reads a ``.jsonl`` or ``.parquet`` input when its rows carry their id (``--id-column``,
    or an ``id`` column) and there is no ``limit``: then a record alone gives its seed items, with
    no need for its global row index (row-index ids) or for the rows before it (a limit). Other
    inputs are read by the driver. The columns are resolved exactly as
    :func:`autoevol.data.iter_items` does (raising its ``DataError`` for a missing column).
    """
    fmt = data.suffix.lower()
    if limit is not None or data.is_dir() or fmt not in RAY_READ_FORMATS:
        return None
    source = SOURCE_OPENERS[fmt](data)
    columns, row = source.columns, None
    if columns is None:  # JSON lines: the keys of the first record, as iter_items takes them
        first = next(source.read(None), None)
        if first is None or not isinstance(first[1], dict):
            return None  # iter_items reports it
        row, columns = first[0], list(first[1])
    column, id_column = resolve_columns(data, columns, column, id_column, row)
    return (column, id_column) if id_column is not None else None


def line_ranges(path: Path, target_bytes: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of about ``target_bytes`` (default :data:`READ_RANGE_BYTES`)
    covering a file, each cut after a newline."""
    target_bytes = target_bytes or READ_RANGE_BYTES
    size = path.stat().st_size
    bounds = [0]
    with open(path, "rb") as file:
        for k in range(1, math.ceil(size / max(1, target_bytes))):
            if k * target_bytes <= bounds[-1]:
                continue
            file.seek(k * target_bytes - 1)
            file.readline()  # to the end of the line holding that byte
            if file.tell() >= size:
                break
            bounds.append(file.tell())
    bounds.append(size)
    return [(start, end) for start, end in itertools.pairwise(bounds) if end > start] or [(0, 0)]


def _json_line_records(path: str, start: int, end: int) -> Iterator[Any]:
    """The values of the JSON lines starting in ``[start, end)``, decoded as the local reader does."""
    with open(path, "rb") as file:
        file.seek(start)
        position = start
        while position < end:
            raw = file.readline()
            if not raw:
                return
            text = raw.decode("utf-8-sig" if position == 0 else "utf-8")
            position += len(raw)
            if text.strip():
                yield json.loads(text)


def seed_sources(batch: Any, *, path: str, column: str, id_column: str, todo: dict[str, int],
                 json_lines: bool) -> Any:
    """Round-1 sources (JSON text) of a batch of input records, for the ids in ``todo`` (id -> shard).

    Runs in Ray Data tasks. ``batch`` is a pyarrow table: ``start``/``end`` byte ranges of a JSON
    lines file (read here), or parquet records. Each record becomes its seed items with
    :mod:`autoevol.data`'s own helpers (ids, conversation turns and instruction checks as the local
    engine); only items still to do are kept. The driver has validated the whole input already, so
    nothing here should raise.
    """
    import pyarrow as pa

    if json_lines:
        records: Iterator[Any] = (record for span in batch.to_pylist()
                                  for record in _json_line_records(path, span["start"], span["end"]))
    else:
        records = iter(batch.to_pylist())
    out: list[str] = []
    for record in records:
        if not isinstance(record, dict):
            continue
        row_id = record_id(Path(path), 0, record, id_column, 0)
        for item in record_items(Path(path), 0, record, column, row_id):
            source_id = f"{item.id}:r1"
            if source_id in todo:
                out.append(json.dumps({"id": source_id, "root_id": item.id, "parent_id": item.id,
                                       "text": item.instruction, "problem": item.problem, "turn": item.turn,
                                       "shard": todo[source_id]}))
    return pa.table({"source": pa.array(out, type=pa.string())})


def read_wave_sources(data: Path, plan: tuple[str, str], todo: dict[str, int], *, batch_size: int,
                      cpus: float) -> Iterator[list[str]]:
    """The round-1 sources of ``todo`` (id -> shard) as batches of ``batch_size`` JSON texts, read by Ray Data.

    ``plan`` is :func:`ray_read_plan`'s ``(column, id_column)``; ``cpus`` are the Ray CPUs of each
    read task.
    """
    import ray.data

    column, id_column = plan
    json_lines = data.suffix.lower() == ".jsonl"
    if json_lines:
        # byte ranges read in tasks, parsed with json.loads per line as the local reader does
        # (read_json would retype values through pandas; read_text splits lines on U+2028 too)
        spans = [{"start": start, "end": end} for start, end in line_ranges(data)]
        records = ray.data.from_items(spans, override_num_blocks=len(spans))
    else:  # exactly this file: whatever its suffix's case, no hive columns from its folder names
        records = ray.data.read_parquet(str(data), num_cpus=cpus, file_extensions=None,
                                        partitioning=None).select_columns(
            list(dict.fromkeys([column, id_column])))
    sources = records.map_batches(
        seed_sources, batch_format="pyarrow", num_cpus=cpus, batch_size=1 if json_lines else None,
        fn_kwargs={"path": str(data), "column": column, "id_column": id_column, "todo": todo,
                   "json_lines": json_lines},
    )
    for batch in sources.iter_batches(batch_size=batch_size, batch_format="numpy"):
        yield [str(text) for text in batch["source"]]
