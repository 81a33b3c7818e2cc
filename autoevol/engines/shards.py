"""The on-disk state of a sharded evolve job: one row file per shard, a marker per finished shard.

Layout, next to the final output ``OUT``::

    OUT.shards/job.json                      the job's settings (a resume must match them)
    OUT.shards/round-1/shard-00000.jsonl     rows of shard 0 of round 1, appended and flushed per row
    OUT.shards/round-1/shard-00000.done      written once every row of the shard is in the file
    OUT.shards/COMPLETE                      written once the final output ``OUT`` has been written

Shard ``k`` of a round holds the sources ``[k * S, (k + 1) * S)`` of that round in input order, so
a rerun assigns every source to the same shard: finished shards are skipped and only the ids
missing from an unfinished shard are evaluated again. Nothing here depends on Ray.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from autoevol.data import DataError, write_rows
from autoevol.programs.journal import complete_rows, settings_changed
from autoevol.records import EvolvedRow


class ShardStore:
    """Reads and writes the shard files of one job (see the module docstring for the layout)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out.with_name(out.name + ".shards")
        self.job_path = self.root / "job.json"
        self.complete_path = self.root / "COMPLETE"

    def open(self, job: dict[str, Any], *, overwrite: bool) -> None:
        """Start a job, or check that the unfinished one here has the same settings."""
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        changed = settings_changed(self.job_path, job)
        if changed:
            raise DataError(self.root, f"a sharded job with different settings ({', '.join(changed)}) is "
                                       "here; rerun it with the same arguments, or use --overwrite")

    @property
    def complete(self) -> bool:
        return self.complete_path.exists()

    def shard_path(self, round: int, shard: int) -> Path:
        return self.root / f"round-{round}" / f"shard-{shard:05d}.jsonl"

    def done_path(self, round: int, shard: int) -> Path:
        return self.shard_path(round, shard).with_suffix(".done")

    def is_done(self, round: int, shard: int) -> bool:
        return self.done_path(round, shard).exists()

    def mark_done(self, round: int, shard: int) -> None:
        self.done_path(round, shard).write_text("", encoding="utf-8")

    def shard_rows(self, round: int, shard: int) -> Iterator[dict[str, Any]]:
        """The complete rows of one shard; an incomplete last line (left by a crash) is cut off."""
        return complete_rows(self.shard_path(round, shard))

    def append(self, round: int, shard: int, rows: Iterable[str]) -> None:
        """Append JSON rows (one per line) to a shard file and flush them."""
        path = self.shard_path(round, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as file:
            for row in rows:
                file.write(row + "\n")
            file.flush()

    def shards(self, round: int) -> list[int]:
        """The shard numbers of a round that have a row file, in order."""
        folder = self.root / f"round-{round}"
        if not folder.is_dir():
            return []
        return sorted(int(path.stem.split("-")[1]) for path in folder.glob("shard-*.jsonl"))

    def rows(self, *, rounds: int) -> Iterator[dict[str, Any]]:
        """Every row of rounds ``1..rounds``, by round then shard, each id once."""
        seen: set[str] = set()
        for round in range(1, rounds + 1):
            for shard in self.shards(round):
                for row in self.shard_rows(round, shard):
                    if row["id"] not in seen:
                        seen.add(row["id"])
                        yield row

    def finalize(self, *, rounds: int) -> int:
        """Write the final output ``OUT`` from the shards (shards are kept); returns its row count."""
        count = write_rows(self.rows(rounds=rounds), self.out, schema_hint=EvolvedRow)
        self.complete_path.write_text("", encoding="utf-8")
        return count
