"""What a compile records: the measured methods, the trajectory cases, the candidates of each step, the
steps themselves and the start, as pydantic models (the JSON files of a run directory, and the
``compile_history`` of a compiled evolver).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    computed_field,
    model_serializer,
    model_validator,
)

from autoevol.lm.usage import RoleUsage
from autoevol.optimizers.auto_evol.selection import PairedComparison
from autoevol.programs.demonstration import Candidate, Demo
from autoevol.signatures.analyze import TrajectoryIssue


class MethodScore(Candidate):
    """A candidate (an evolving method and its demonstrations) and its failure rate on the dev items it was
    measured on."""

    failure_rate: float
    failed: int
    evaluated: int
    by_rule: dict[str, int] = Field(default_factory=dict)


class TrajectoryCase(BaseModel):
    """One mini-batch item evolved ``l`` times in a row: its stages, stage 0 being the original."""

    case_id: str = Field(description="the short id the analysis refers to")
    item_id: str = Field(description="the id of the training item")
    stages: list[str]
    notes: list[str] = Field(default_factory=list, description="the working notes of each evolution")
    notes_limit: int | None = Field(default=None, description="the characters the working notes could hold "
                                                                "(None: no limit)")
    answer: str | None = None
    failed: bool = False
    rule: str | None = None
    verdict: str = "passed"

    @model_serializer(mode="wrap")
    def _limit_when_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without ``notes_limit`` when the notes had none, as cases were recorded before it."""
        data = handler(self)
        if self.notes_limit is None:
            data.pop("notes_limit", None)
        return data

    def for_analysis(self) -> str:
        """The case as the optimizer LLM reads it: a plain text block, no JSON and no escaping.

        A header with the case id and the verdict (``FAILED`` with the rule and its reason, or
        ``passed``), the original and each rewrite (a rewrite identical to the text before it is
        said to be so, not shown again). A failed case also shows the start of its working notes,
        the trace of what the evol LM meant to do, saying when they were cut off at their limit, and
        the start of its answer, which the response rules and the judge read. A passed case shows no
        more than its rewrites: a small optimizer LM reads it as a contrast, not as a problem.
        """
        verdict = self.verdict
        if self.failed:
            verdict = "FAILED" + verdict[len("failed"):] if verdict.startswith("failed") else f"FAILED: {verdict}"
        lines = [f"Case {self.case_id}: {verdict}", "Original:", self.stages[0]]
        rewrites = self.stages[1:]
        for number, rewrite in enumerate(rewrites, start=1):
            label = "Rewrite:" if len(rewrites) == 1 else f"Rewrite {number}:"
            if rewrite.strip() == self.stages[number - 1].strip():
                lines += [f"{label} (the same text as {'the original' if number == 1 else f'rewrite {number - 1}'})"]
            else:
                lines += [label, rewrite]
        if not rewrites:
            lines += ["Rewrite: (none)"]
        notes = self.notes[-1].strip() if self.notes else ""
        if self.failed and notes:
            lines += ["Working notes (start):", _opening(notes, ANALYSIS_EXCERPT)]
            if self.notes_limit is not None and len(notes) >= self.notes_limit - NOTES_LIMIT_SLACK:
                lines += [f"(The working notes reached their limit of {self.notes_limit} characters and were cut "
                          "off there.)"]
        if self.failed and self.answer:
            lines += ["Answer to the rewrite (start):", _opening(self.answer.strip(), ANALYSIS_EXCERPT)]
        return "\n".join(lines)


#: Characters of working notes and answers the trajectory analysis sees per case (a small
#: optimizer LM reads a few sentences, enough to see how the evol LM reacted).
ANALYSIS_EXCERPT = 400

#: Characters short of their limit at which working notes count as cut off there (the parsed notes
#: lose the whitespace they ended in).
NOTES_LIMIT_SLACK = 10


def _opening(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, line breaks kept (code stays readable)."""
    return text if len(text) <= limit else text[:limit] + " [...]"


#: A candidate's fields as a record's JSON holds them, at its top level.
_CANDIDATE_FIELDS = ("method", "demos", "fingerprint")


class CandidateRecord(BaseModel):
    """One candidate of a step: a proposed method (with the incumbent's demonstrations) or a new
    demonstration set (with the incumbent's method), where it came from and how it measured.

    Its JSON keeps the candidate's fields at the top level, as a record always had them: ``method``
    (null without a proposal), ``demos`` and ``fingerprint`` (computed again when read).
    """

    index: int = Field(description="1-based position among the step's candidates")
    kind: Literal["method", "demos"] = Field(default="method", description="which parameter the candidate changes")
    candidate: Candidate | None = Field(
        default=None, description="the method and its demonstrations (invalid: the last unusable proposal, if any)")
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

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """The top-level ``method`` and ``demos`` of a record's JSON as its ``candidate``."""
        if not isinstance(data, dict) or "candidate" in data:
            return data
        fields = {name: value for name, value in data.items() if name not in _CANDIDATE_FIELDS}
        method = data.get("method")
        fields["candidate"] = None if method is None else {"method": method, "demos": data.get("demos") or []}
        return fields

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The candidate's fields in its place, at the top level of the record."""
        flat: dict[str, Any] = {}
        for name, value in handler(self).items():
            if name == "candidate":
                flat.update(value or {"method": None, "demos": (), "fingerprint": None})
            else:
                flat[name] = value
        return flat

    @computed_field  # type: ignore[prop-decorator]
    @property
    def invalid(self) -> bool:
        """Whether the candidate was given up (it then has an ``invalid_reason``)."""
        return self.invalid_reason is not None


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
