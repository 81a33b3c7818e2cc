"""Plain data that crosses module boundaries: seed items, verdicts and output rows."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

#: Rule names produced by the runner itself rather than by a detection rule.
LM_ERROR = "lm_error"
UNPARSEABLE = "unparseable"
BAD_INPUT = "bad_input"
BUDGET = "budget_exhausted"
#: A separate answer LM replied with nothing to a successful evolution.
NO_ANSWER = "no_answer"
#: The LM judge's reply did not parse into a verdict: the item was not judged (never a pass).
JUDGE_ABSTAINED = "judge_abstained"
#: Verdicts that say the measurement of an item failed, not its evolution: a paired comparison of
#: methods leaves such items out instead of counting them against the method that hit them.
UNMEASURED = frozenset({LM_ERROR, JUDGE_ABSTAINED})


class SeedItem(BaseModel):
    """One instruction read from an input dataset.

    ``problem`` is set when the row is unusable (empty, null or non-text instruction); such an item
    is never sent to an LM but still yields an output row, failed with rule ``bad_input``.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    instruction: str
    row: int = Field(description="1-based row number in the input file")
    turn: int | None = Field(default=None, description="index of the human turn in a conversation")
    problem: str | None = None


class Verdict(BaseModel):
    """Whether an evolution failed, which rule decided it, and why."""

    model_config = ConfigDict(frozen=True)

    failed: bool
    rule: str | None = None
    reason: str = ""

    @classmethod
    def passed(cls) -> Verdict:
        return cls(failed=False)

    @classmethod
    def failure(cls, rule: str, reason: str) -> Verdict:
        return cls(failed=True, rule=rule, reason=reason)


class EvolvedRow(BaseModel):
    """One output row: one input item evolved once (one row per input and per round)."""

    id: str
    parent_id: str | None
    root_id: str
    round: int
    original: str
    evolved: str | None
    answer: str | None
    failed: bool
    rule: str | None
    reason: str
    method_fingerprint: str
    evol_model: str
    #: the model that wrote ``answer`` (the evol model unless a separate answer LM was set).
    answer_model: str | None = None
    #: for a conversation input: the index of the human turn this row evolves (see ``SeedItem.turn``).
    turn: int | None = None
    #: the classic operation that evolved this row, when the method draws one per instruction
    #: (``--method evol-instruct``); ``None`` for a single evolving method.
    operation: str | None = None


def fingerprint(text: str) -> str:
    """A short stable fingerprint of a text (used for evolving methods and datasets)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
