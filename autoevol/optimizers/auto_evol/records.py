"""What a compile records: one JSON record per step, checkpointed in a run directory.

A run directory holds ``run.json`` (the settings and data the run belongs to), ``steps/step-NNN.json``
(one record per completed step, written atomically) and ``calls.sqlite`` (every completed LM call).
A compile given the same directory again replays the recorded steps and continues after the last
one; the call cache makes any work of an interrupted step free to redo.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, computed_field

from autoevol.lm.usage import RoleUsage
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.programs.demonstration import Candidate, Demo
from autoevol.signatures.analyze import TrajectoryIssue
from autoevol.version import __version__

#: Identifies run directories; bump RUN_FORMAT_VERSION when their layout changes incompatibly.
RUN_FORMAT = "autoevol.compile-run"
RUN_FORMAT_VERSION = 1

logger = logging.getLogger("autoevol.optimizers.auto_evol")

_STEP_FILE = re.compile(r"^step-(\d{3,})\.json$")


class RunDirError(ValueError):
    """A run directory is unreadable, foreign, or belongs to a compile with other settings or data."""


class MethodScore(BaseModel):
    """An evolving method (with its demonstrations) and its failure rate on the dev items it was measured on."""

    method: str
    fingerprint: str
    failure_rate: float
    failed: int
    evaluated: int
    by_rule: dict[str, int] = Field(default_factory=dict)
    demos: list[Demo] = Field(default_factory=list, description="the demonstrations the method was measured with")

    def candidate(self) -> Candidate:
        """The measured method and demonstrations as plain data."""
        return Candidate(method=self.method, demos=tuple(self.demos))


class TrajectoryCase(BaseModel):
    """One mini-batch item evolved ``l`` times in a row: its stages, stage 0 being the original."""

    case_id: str = Field(description="the short id the analysis refers to")
    item_id: str = Field(description="the id of the training item")
    stages: list[str]
    notes: list[str] = Field(default_factory=list, description="the working notes of each evolution")
    answer: str | None = None
    failed: bool = False
    rule: str | None = None
    verdict: str = "passed"

    def for_analysis(self) -> str:
        """The case as the optimizer LLM reads it: a plain text block, no JSON and no escaping.

        A header with the case id and the verdict (``FAILED`` with the rule and its reason, or
        ``passed``), the original and each rewrite. A failed case also shows the start of its
        answer, which the response rules and the judge read, and, when it has no rewrite, the start
        of its working notes, the only trace of what the evol LM did. A passed case shows no more
        than its rewrites: a small optimizer LM reads it as a contrast, not as a problem.
        """
        verdict = self.verdict
        if self.failed:
            verdict = "FAILED" + verdict[len("failed"):] if verdict.startswith("failed") else f"FAILED: {verdict}"
        lines = [f"Case {self.case_id}: {verdict}", "Original:", self.stages[0]]
        rewrites = self.stages[1:]
        for number, rewrite in enumerate(rewrites, start=1):
            lines += ["Rewrite:" if len(rewrites) == 1 else f"Rewrite {number}:", rewrite]
        if not rewrites:
            lines += ["Rewrite: (none)"]
        if self.failed and not rewrites and self.notes and self.notes[-1].strip():
            lines += ["Working notes (start):", _opening(self.notes[-1].strip(), ANALYSIS_EXCERPT)]
        if self.failed and self.answer:
            lines += ["Answer to the rewrite (start):", _opening(self.answer.strip(), ANALYSIS_EXCERPT)]
        return "\n".join(lines)


#: Characters of working notes and answers the trajectory analysis sees per case (a small
#: optimizer LM reads a few sentences, enough to see how the evol LM reacted).
ANALYSIS_EXCERPT = 400


def _opening(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, line breaks kept (code stays readable)."""
    return text if len(text) <= limit else text[:limit] + " [...]"


class CandidateRecord(BaseModel):
    """One candidate of a step: a proposed method (with the incumbent's demonstrations) or a new
    demonstration set (with the incumbent's method), where it came from and how it measured."""

    index: int = Field(description="1-based position among the step's candidates")
    kind: Literal["method", "demos"] = Field(default="method", description="which parameter the candidate changes")
    method: str | None = None
    demos: list[Demo] = Field(default_factory=list, description="the demonstrations the candidate carries")
    fingerprint: str | None = None
    feedback: str = ""
    issues: list[TrajectoryIssue] = Field(default_factory=list)
    issues_unparsed: bool = Field(default=False, description="the issue list did not parse; free text kept")
    change: str | None = Field(default=None, description="what the candidate changed (the edit, or a rewrite)")
    attempts: int = Field(default=1, description="proposals sampled for this candidate")
    rejected: list[str] = Field(default_factory=list, description="why earlier proposals were resampled")
    invalid_reason: str | None = Field(default=None, description="why the candidate was given up (None: valid)")
    score: MethodScore | None = None
    dropped: str | None = Field(default=None, description="why racing stopped measuring it, if it did")
    comparison: PairedComparison | None = Field(
        default=None, description="paired against the incumbent on the dev items it was measured on")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invalid(self) -> bool:
        """Whether the candidate was given up (it then has an ``invalid_reason``)."""
        return self.invalid_reason is not None

    def candidate(self) -> Candidate:
        """The candidate's method and demonstrations as plain data (a valid candidate has a method)."""
        if self.method is None:
            raise ValueError(f"candidate {self.index} has no method")
        return Candidate(method=self.method, demos=tuple(self.demos))


class UsageDelta(RoleUsage):
    """What one LM role used during a step (or a whole compile)."""


class StepRecord(BaseModel):
    """Everything one optimization step did.

    ``incumbent`` is the method the step started from, ``selected`` the one it ended with: the
    winning candidate, or the incumbent again when no candidate's advantage was supported by the
    paired test (``winner is None``). ``tried`` counts the candidates measured by the compile up
    to this step, the level of the test is the selection alpha divided by it.
    """

    step: int
    incumbent: MethodScore
    trajectory: list[TrajectoryCase]
    candidates: list[CandidateRecord]
    winner: int | None
    selected: MethodScore
    tried: int = Field(default=0, description="candidates measured by the compile so far, this step's included")
    excluded_items: list[int] = Field(
        default_factory=list, description="dev items left out of every method's rate after LM errors")
    new_demos: list[Demo] = Field(
        default_factory=list, description="demonstrations this step found (successful or teacher-written evolutions)")
    usage: list[UsageDelta] = Field(default_factory=list)
    seconds: float = 0.0
    finished_at: str = ""

    @property
    def improved(self) -> bool:
        """Whether a candidate replaced the incumbent."""
        return self.winner is not None

    def deciding_comparison(self) -> PairedComparison | None:
        """The winner's comparison with the incumbent, else the one of the candidate that came closest."""
        compared = [c for c in self.candidates if c.comparison is not None and c.dropped is None]
        if self.winner is not None:
            compared = [c for c in compared if c.index == self.winner]
        closest = min(compared, key=lambda c: (c.comparison.p_value, c.index), default=None)  # type: ignore[union-attr]
        return closest.comparison if closest is not None else None

    @property
    def valid_candidates(self) -> int:
        """Candidates that were measured (not given up as invalid)."""
        return sum(not c.invalid for c in self.candidates)

    def summary(self) -> dict[str, Any]:
        """A compact view for an evolver's metadata: rates per step, which won, calls per role."""
        return {
            "step": self.step,
            "incumbent_failure_rate": self.incumbent.failure_rate,
            "candidate_failure_rates": [
                None if c.score is None else round(c.score.failure_rate, 4) for c in self.candidates
            ],
            "candidate_items": [None if c.score is None else c.score.evaluated for c in self.candidates],
            "dev_items": self.incumbent.evaluated,
            "invalid_candidates": sum(c.invalid for c in self.candidates),
            "proposals": sum(c.attempts for c in self.candidates),
            "excluded_dev_items": len(self.excluded_items),
            "dropped_candidates": sum(c.dropped is not None for c in self.candidates),
            "winner": self.winner if self.winner is not None else "incumbent kept",
            "paired": self.deciding_comparison().model_dump() if self.deciding_comparison() else None,
            "failure_rate": self.selected.failure_rate,
            "candidate_kinds": [c.kind for c in self.candidates],
            "demos": len(self.selected.demos),
            "new_demos": len(self.new_demos),
            "calls": {u.role: u.calls for u in self.usage},
            "seconds": round(self.seconds, 2),
        }


class StartRecord(BaseModel):
    """The starting method's measurement on the whole dev set, made once before step 1.

    With starting methods to race (``starts``), each is a candidate against the student's method,
    selected like the candidates of a step; ``chosen`` is the method step 1 starts from.
    """

    score: MethodScore
    alternatives: list[CandidateRecord] = Field(default_factory=list, description="the raced starting methods")
    winner: int | None = Field(default=None, description="the alternative that replaced the student's method")
    tried: int = Field(default=0, description="candidates measured so far: the alternatives")
    excluded_items: list[int] = Field(
        default_factory=list, description="dev items left out of every method's rate after LM errors")
    usage: list[UsageDelta] = Field(default_factory=list)
    seconds: float = 0.0


    @property
    def chosen(self) -> MethodScore:
        """The method the first step starts from: the race's winner, else the student's."""
        if self.winner is None:
            return self.score
        winner = self.alternatives[self.winner - 1].score
        assert winner is not None
        return winner


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
                    found.append(f"{key} {mine.get(key)!r} (now {theirs.get(key)!r})")
        return found


#: The least value of each numeric setting of an Auto Evol-Instruct compile.
SETTING_MINIMUMS = {"num_candidates": 1, "batch_size": 1, "dev_size": 1, "confirm_size": 0, "max_steps": 0,
                    "evolution_rounds": 1,
                    "temperature": 0, "patience": 1, "proposal_attempts": 1, "max_method_words": 20,
                    "num_threads": 1, "max_demos": 0, "demo_candidates": 0}


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first setting of a compile that is out of its range."""
    for name, minimum in SETTING_MINIMUMS.items():
        if not settings[name] >= minimum:
            raise ValueError(f"{name} must be at least {minimum}")
    if not 0 < settings["top_p"] <= 1:
        raise ValueError("top_p must be in (0, 1]")
    for name in ("racing_alpha", "selection_alpha", "confirm_alpha"):
        if not 0 < settings[name] < 1:
            raise ValueError(f"{name} must be in (0, 1)")
    if settings["proposal_mode"] not in ("edit", "rewrite"):
        raise ValueError("proposal_mode must be 'edit' or 'rewrite'")


#: Settings a resumed compile may change: a run may be extended or cut short, and keep_demos shows
#: in the starting candidate's fingerprint.
RESUMABLE_SETTINGS = frozenset({"max_steps", "patience", "keep_demos"})
#: Settings that only matter when demonstrations are on (a run without them records none of them,
#: so runs from before demonstrations resume).
DEMO_SETTINGS = frozenset({"max_demos", "demo_candidates", "teacher_demos"})


def compile_header(hyperparameters: dict[str, Any], *, start_fingerprint: str, models: dict[str, str],
                   detector_rules: list[str], data: dict[str, Any]) -> RunHeader:
    """The ``run.json`` of an Auto Evol-Instruct compile: what a resume must share with the run it continues."""
    ignored = RESUMABLE_SETTINGS | (set() if hyperparameters["max_demos"] else DEMO_SETTINGS)
    settings = {key: value for key, value in hyperparameters.items() if key not in ignored}
    settings.update(models=models, detector_rules=detector_rules)
    return RunHeader(autoevol_version=__version__, start_method_fingerprint=start_fingerprint,
                     settings=settings, data=data)


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

    def write_confirmation(self, comparison: PairedComparison) -> None:
        """Record the final check of the result against the start (for reports; a rerun measures it again
        from the call cache)."""
        write_json(self.path / "confirmation.json", {**comparison.model_dump(), "supported": comparison.supported})

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
