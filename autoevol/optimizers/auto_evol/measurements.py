"""The measurement log of a compile: every finished measurement on the dev set or the confirmation
split, written as it finishes.

A step is checkpointed only when it completes, and a compile's phases are long on a small local
model (the start race alone measures a hundred or more items). The call cache makes an interrupted
phase free to redo on the same machine, but it is a binary file that is not shared. The log keeps
what a phase has measured so far as small JSON lines, one per (method, item): a resumed compile,
on any machine, measures again only the items the log lacks.

Each line names the split (``dev`` or ``confirm``), the method's fingerprint, the item's position
and id, and the verdict. Items that ended in an LM error or a judge abstention are not logged, so
a resumed compile tries them again, as it would with the call cache alone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from autoevol.records import Verdict

Split = Literal["dev", "confirm"]

logger = logging.getLogger(__name__)


class MeasurementLogError(ValueError):
    """The measurement log is unreadable or belongs to other items."""


class Measurement(BaseModel):
    """One line of the log: a method's verdict on one item of a split."""

    split: Split
    method: str  # the candidate's fingerprint
    position: int
    item: str  # the item's id, checked against the split on reading
    verdict: Verdict


class MeasurementLog:
    """Append-only JSON lines of finished measurements; safe to write from worker threads.

    ``item_ids`` gives each split's item ids by position, to check the log against. A record counts
    once its line ends: opening the log drops a last line cut off by a crash (its item is measured
    again).

    Raises:
        MeasurementLogError: the file is unreadable, a complete line is not a measurement, or a
            position holds another item than ``item_ids`` says (the log belongs to other data).
    """

    def __init__(self, path: Path, item_ids: Mapping[Split, Sequence[str]]) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._verdicts: dict[Split, dict[tuple[str, int], Verdict]] = {split: {} for split in item_ids}
        try:
            data = path.read_bytes() if path.exists() else b""
            complete = data[: data.rfind(b"\n") + 1]
            lines = complete.decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise MeasurementLogError(f"{path}: unreadable measurement log ({error})") from None
        for number, line in enumerate(lines, start=1):
            try:
                measurement = Measurement.model_validate_json(line)
            except (ValidationError, ValueError):
                raise MeasurementLogError(f"{path}, line {number}: not a measurement record") from None
            ids = item_ids.get(measurement.split, ())
            if not 0 <= measurement.position < len(ids) or ids[measurement.position] != measurement.item:
                raise MeasurementLogError(f"{path}, line {number}: {measurement.split} item {measurement.position} "
                                          f"is {measurement.item!r}, not this run's item")
            self._verdicts[measurement.split][(measurement.method, measurement.position)] = measurement.verdict
        if len(complete) < len(data):
            logger.warning("%s: dropping a last line cut off by a crash", path)
            with path.open("rb+") as file:
                file.truncate(len(complete))

    def recorded(self, split: Split) -> dict[tuple[str, int], Verdict]:
        """The verdicts logged for ``split`` when the log was opened, by (method fingerprint, position)."""
        return dict(self._verdicts.get(split, {}))

    def append(self, measurement: Measurement) -> None:
        """Write one measurement and flush it to disk."""
        line = json.dumps(measurement.model_dump(mode="json"), ensure_ascii=False)
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())
