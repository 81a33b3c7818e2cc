"""The in-progress output of an evolve job: rows appended as they finish, resumable after a crash."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from autoevol.data import DataError, read_rows, write_rows
from autoevol.records import EvolvedRow


class Journal:
    """``OUT.partial.jsonl`` (one row per line, flushed per row) and ``OUT.partial.json`` (the job).

    A run killed at any moment leaves at most one incomplete last line, which is dropped when the
    journal is reopened; every complete line is a finished row and is never computed again.
    The final output is written from the journal only when the job completes.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.with_name(out.name + ".partial.jsonl")
        self.meta_path = out.with_name(out.name + ".partial.json")
        #: The persistent LM call cache of the job (created by the CLI), so a rerun after a crash
        #: repeats no completed call; removed with :meth:`discard_calls` once the job is done.
        self.calls_path = out.with_name(out.name + ".partial.calls.sqlite")
        self._file: Any = None

    def exists(self) -> bool:
        return self.path.exists() or self.meta_path.exists()

    def open(self, job: dict[str, Any], *, overwrite: bool) -> set[str]:
        """Start or resume; returns the ids of rows already done."""
        if overwrite:
            self.discard()
        changed = settings_changed(self.meta_path, job)
        if changed:
            raise DataError(
                self.path,
                f"an unfinished job with different settings ({', '.join(changed)}) is here; "
                "rerun it with the same arguments to resume, or use --overwrite to start again",
            )
        done = {row["id"] for row in complete_rows(self.path)}
        self._file = open(self.path, "a", encoding="utf-8")
        return done

    def append(self, row: EvolvedRow) -> None:
        self._file.write(row.model_dump_json() + "\n")
        self._file.flush()

    def rows(self, *, round: int | None = None) -> Iterator[dict[str, Any]]:
        """Stream the rows written so far (optionally of one round)."""
        self._file.flush()
        for row in read_rows(self.path):
            if round is None or row["round"] == round:
                yield row

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finalize(self, prefix: Iterable[dict[str, Any]] = ()) -> int:
        """Write the final output (``prefix`` rows, then the journal's), then remove the journal.

        Every id is written once: a row whose id was already written is dropped (the journal never
        holds two rows with one id, but the output must not either, whatever happened before).
        Returns the number of rows written.
        """
        self.close()
        journal_rows: Iterable[dict[str, Any]] = read_rows(self.path) if self.path.exists() else ()
        seen: set[str] = set()

        def unique() -> Iterator[dict[str, Any]]:
            for row in itertools.chain(prefix, journal_rows):
                if row["id"] not in seen:
                    seen.add(row["id"])
                    yield row

        count = write_rows(unique(), self.out, schema_hint=EvolvedRow)
        self.discard()
        return count

    def discard(self) -> None:
        self.close()
        for path in (self.path, self.meta_path):
            if path.exists():
                os.remove(path)

    def discard_calls(self) -> None:
        """Remove the job's LM call cache (SQLite file and its WAL side files); close it first."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = self.calls_path.with_name(self.calls_path.name + suffix)
            if path.exists():
                os.remove(path)


def settings_changed(job_path: Path, job: dict[str, Any]) -> list[str]:
    """The settings in which ``job`` differs from the unfinished job recorded at ``job_path``.

    With no job recorded there yet, ``job`` is recorded and nothing differs.
    """
    if not job_path.exists():
        job_path.parent.mkdir(parents=True, exist_ok=True)
        job_path.write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")
        return []
    try:
        previous = json.loads(job_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DataError(job_path, "unreadable job file; use --overwrite to start again") from None
    return sorted(key for key in set(job) | set(previous) if job.get(key) != previous.get(key))


def complete_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSON-lines file appended row by row; an incomplete last line left by a crash
    is cut off the file."""
    if not path.exists():
        return
    good_end = 0
    with open(path, "rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            good_end += len(line)
            yield row
    if good_end != path.stat().st_size:
        with open(path, "r+b") as file:
            file.truncate(good_end)
