"""The run directory of a compile: its checkpoints on disk, and the header that says which run it belongs to.

A run directory holds ``run.json`` (the settings and data the run belongs to), ``steps/step-NNN.json``
(one record per completed step, written atomically), ``measurements.jsonl`` (every finished dev
measurement, as it finishes: :mod:`~autoevol.optimizers.auto_evol.measurements`) and ``calls.sqlite``
(every completed LM call), and while a phase runs, ``spending/PHASE.json`` (what it has spent so far:
:mod:`~autoevol.optimizers.auto_evol.spending`). A compile given the same directory again replays the
recorded steps and continues after the last one; the measurement log spares it the interrupted
phase's finished items, on any machine, the call cache makes the rest of that phase's work free to
redo here, and the phase's record counts the calls of every run that worked on it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from autoevol.optimizers.auto_evol.evaluation import Item
from autoevol.optimizers.auto_evol.measurements import MeasurementLog, MeasurementLogError
from autoevol.optimizers.auto_evol.records import StartRecord, StepRecord
from autoevol.optimizers.auto_evol.selection import PairedComparison

#: Identifies run directories; bump RUN_FORMAT_VERSION when their layout changes incompatibly.
RUN_FORMAT = "autoevol.compile-run"
RUN_FORMAT_VERSION = 1

logger = logging.getLogger("autoevol.optimizers.auto_evol")

_STEP_FILE = re.compile(r"^step-(\d{3,})\.json$")


class RunDirError(ValueError):
    """A run directory is unreadable, foreign, or belongs to a compile with other settings or data."""


class RunHeader(BaseModel):
    """``run.json``: what a run directory belongs to."""

    format: str = RUN_FORMAT
    format_version: int = RUN_FORMAT_VERSION
    autoevol_version: str
    created_at: str = ""
    start_method_fingerprint: str
    settings: dict[str, Any]
    data: dict[str, Any]

    def differences(self, other: RunHeader) -> list[str]:
        """What differs between this run and ``other`` (an empty list when they match)."""
        found = []
        if self.start_method_fingerprint != other.start_method_fingerprint:
            found.append(f"starting method {self.start_method_fingerprint} (now {other.start_method_fingerprint})")
        for section in ("settings", "data"):
            mine, theirs = getattr(self, section), getattr(other, section)
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    found.append(f"{key} {_difference(mine.get(key), theirs.get(key))}")
        return found


def _difference(recorded: Any, now: Any) -> str:
    """``recorded`` against ``now``; of two lists, only what one has and the other has not (a rule's
    new version among fourteen rules), or their order."""
    if isinstance(recorded, list) and isinstance(now, list) and recorded != now:
        gone, new = [x for x in recorded if x not in now], [x for x in now if x not in recorded]
        if gone or new:
            return f"{gone!r} (now {new!r})"
        return f"in the order {recorded!r} (now {now!r})"
    return f"{recorded!r} (now {now!r})"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, document: Any) -> None:
    """Write JSON atomically: a temporary sibling, then a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class RunDirectory:
    """The checkpoints of one compile. Open it with :meth:`open`, which checks it belongs to the run."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        self.header = header

    @property
    def cache_path(self) -> Path:
        """The SQLite file of completed LM calls."""
        return self.path / "calls.sqlite"

    def measurements(self, *, dev: Sequence[Item], confirm: Sequence[Item]) -> MeasurementLog:
        """The log of finished measurements, checked against the dev set and the confirmation split.

        Raises:
            RunDirError: the log is unreadable or belongs to other items.
        """
        try:
            return MeasurementLog(self.path / "measurements.jsonl",
                                  {"dev": [item.id for item in dev], "confirm": [item.id for item in confirm]})
        except MeasurementLogError as error:
            raise RunDirError(str(error)) from None

    def phase_spending(self, phase: str) -> Path:
        """The record of what an unfinished phase (``start``, ``step-NNN``) has spent so far; the phase's
        own record replaces it."""
        record = self._spending_record(phase)
        record.parent.mkdir(exist_ok=True)
        return record

    def _spending_record(self, phase: str) -> Path:
        return self.path / "spending" / f"{phase}.json"

    @property
    def steps_dir(self) -> Path:
        return self.path / "steps"

    @classmethod
    def open(cls, path: str | Path, header: RunHeader) -> RunDirectory:
        """Create a run directory, or reopen one that belongs to the same settings and data.

        Raises:
            RunDirError: the path is a file, a non-empty folder without ``run.json``, a run of
                another format version, settings or data, or holds unreadable step files.
                Nothing is written in any of these cases.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: the run directory is a file, not a folder")
        run_file = path / "run.json"
        if run_file.exists():
            existing = _read_header(run_file)
            differences = existing.differences(header)
            if differences:
                raise RunDirError(
                    f"{path}: this run directory belongs to a compile with other settings or data: "
                    f"{'; '.join(differences)}. Use another run directory, or remove this one to start over"
                )
            run = cls(path, existing)
            run.start()  # fail now, before any LM call, on unreadable records
            run.steps()
            return run
        if path.exists() and any(path.iterdir()):
            raise RunDirError(f"{path}: not a compile run directory (no run.json) and not empty; "
                              "choose a new or empty folder")
        path.mkdir(parents=True, exist_ok=True)
        (path / "steps").mkdir(exist_ok=True)
        header = header.model_copy(update={"created_at": now()})
        write_json(run_file, header.model_dump(mode="json"))
        return cls(path, header)

    @classmethod
    def read(cls, path: str | Path) -> RunDirectory:
        """An existing run directory as it was recorded, to read its steps (no settings compared).

        Raises:
            RunDirError: there is no readable ``run.json`` of this format version.
        """
        path = Path(path)
        run_file = path / "run.json"
        if not run_file.is_file():
            raise RunDirError(f"{path}: not a compile run directory (no run.json)")
        return cls(path, _read_header(run_file))

    def start(self) -> StartRecord | None:
        """The starting method's measurement, when it was made."""
        file = self.path / "start.json"
        if not file.exists():
            return None
        try:
            return StartRecord.model_validate_json(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValidationError, ValueError):
            raise RunDirError(f"{file}: corrupt record of the starting method's measurement") from None

    def write_start(self, record: StartRecord) -> None:
        """Checkpoint the starting method's measurement (atomically)."""
        write_json(self.path / "start.json", record.model_dump(mode="json"))
        self._spending_record("start").unlink(missing_ok=True)

    def write_confirmation(self, comparison: PairedComparison, *, start: str, result: str) -> None:
        """Record the final check of the result (method fingerprint ``result``) against the start (``start``)."""
        write_json(self.path / "confirmation.json", {**comparison.model_dump(), "supported": comparison.supported,
                                                     "start_fingerprint": start, "result_fingerprint": result})

    def confirmation(self, *, start: str, result: str) -> PairedComparison | None:
        """The recorded confirmation of ``result`` against ``start``, if this run made it (a resumed run
        then needs neither the LM nor the call cache for it, on another machine too)."""
        try:
            document = json.loads((self.path / "confirmation.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if document.get("start_fingerprint") != start or document.get("result_fingerprint") != result:
            return None
        return PairedComparison.model_validate(document)

    def steps(self) -> list[StepRecord]:
        """The completed steps, in order (steps 1..k without gaps)."""
        if not self.steps_dir.is_dir():
            return []
        numbered = []
        for file in self.steps_dir.iterdir():
            match = _STEP_FILE.match(file.name)
            if match:
                numbered.append((int(match.group(1)), file))
            elif not file.name.endswith(".tmp"):
                raise RunDirError(f"{file}: unexpected file in the run directory's steps folder")
        records = []
        for expected, (number, file) in enumerate(sorted(numbered), start=1):
            if number != expected:
                raise RunDirError(f"{self.steps_dir}: step {expected} is missing (found step {number})")
            records.append(_read_step(file, number))
        return records

    def excluded_items(self) -> list[int]:
        """The dev items the recorded measurements left out (the last record's list), to resume with."""
        history, start = self.steps(), self.start()
        if history:
            return history[-1].excluded_items
        return start.excluded_items if start is not None else []

    def completed_steps(self, max_steps: int) -> list[StepRecord]:
        """The completed steps a compile of at most ``max_steps`` steps resumes after."""
        history = self.steps()
        if history:
            logger.info("resuming %s after step %d", self.path, min(len(history), max_steps))
        return history[:max_steps]

    def write_step(self, record: StepRecord) -> Path:
        """Checkpoint one completed step (atomically)."""
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        file = self.steps_dir / f"step-{record.step:03d}.json"
        write_json(file, record.model_dump(mode="json"))
        self._spending_record(file.stem).unlink(missing_ok=True)
        return file


def _read_header(run_file: Path) -> RunHeader:
    try:
        document = json.loads(run_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(f"{run_file}: unreadable run file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != RUN_FORMAT:
        raise RunDirError(f"{run_file}: not an autoevol compile run (no '{RUN_FORMAT}' format marker)")
    if document.get("format_version") != RUN_FORMAT_VERSION:
        raise RunDirError(f"{run_file}: run format version {document.get('format_version')} is not "
                          f"supported by this autoevol (expects version {RUN_FORMAT_VERSION})")
    try:
        return RunHeader.model_validate(document)
    except ValidationError as error:
        raise RunDirError(f"{run_file}: invalid run file ({error.error_count()} problems)") from None


def _read_step(file: Path, number: int) -> StepRecord:
    try:
        record = StepRecord.model_validate_json(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValidationError, ValueError) as error:
        detail = f"{error.error_count()} problems" if isinstance(error, ValidationError) else str(error)
        raise RunDirError(f"{file}: corrupt step record ({detail})") from None
    if record.step != number:
        raise RunDirError(f"{file}: the file holds step {record.step}, not step {number}")
    return record
