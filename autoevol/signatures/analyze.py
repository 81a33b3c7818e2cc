"""Trajectory analysis: the optimizer LLM finds the cases an evolving method failed, and why."""

from __future__ import annotations

from typing import Any, Literal, get_args

import dspy
from pydantic import BaseModel, Field, field_validator

#: What can go wrong in an evolution (the paper's categories, then Figure 1's, then "other").
IssueCategory = Literal[
    "no_progression",
    "wrong_or_unrealistic",
    "task_changed",
    "contradictory",
    "unclear",
    "unsupported_complexity",
    "complexity_decreased",
    "unrelated",
    "irrelevant_complexity",
    "unsolvable",
    "answered_instead",
    "unimproved_complexity",
    "other",
]

#: Every issue category, in the order of :data:`IssueCategory`.
ISSUE_CATEGORIES: tuple[str, ...] = get_args(IssueCategory)

_ALIASES = {
    "no_logical_progression": "no_progression",
    "wrong_math": "wrong_or_unrealistic",
    "unrealistic": "wrong_or_unrealistic",
    "problem_changed": "task_changed",
    "changed": "task_changed",
    "contradiction": "contradictory",
    "incoherent": "unclear",
    "unclear_or_incoherent": "unclear",
    "complexity_not_supported": "unsupported_complexity",
    "answer_leaked": "complexity_decreased",
    "irrelevant": "irrelevant_complexity",
    "unsolvable_question": "unsolvable",
    "answering_instead_of_evolving": "answered_instead",
    "answers_instead": "answered_instead",
    "unimproved": "unimproved_complexity",
    "unchanged": "unimproved_complexity",
}


def normalize_category(value: Any) -> str:
    """Map a category as a model may spell it ("Unclear or incoherent") onto :data:`IssueCategory`."""
    key = "_".join(str(value or "").strip().casefold().replace("-", " ").split())
    key = _ALIASES.get(key, key)
    return key if key in ISSUE_CATEGORIES else "other"


class TrajectoryIssue(BaseModel):
    """One case the evolving method failed on: which case, what kind of problem, and why."""

    case_id: str = Field(description="the id of the failed case, as given in the trajectory")
    category: IssueCategory = Field(description="the kind of problem")
    reason: str = Field(description="one or two sentences: what went wrong and what in the method allowed it")

    @field_validator("case_id", mode="before")
    @classmethod
    def _case_id_as_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("category", mode="before")
    @classmethod
    def _known_category(cls, value: Any) -> str:
        return normalize_category(value)


class AnalyzeTrajectory(dspy.Signature):
    """You review the work of an evolving method: the instructions a model followed to rewrite
    instructions into harder versions of themselves.

    The trajectory is a JSON list of cases. Each case has an id and its stages: stage 0 is the
    original instruction and every later stage is the rewrite of the stage before it. A case also
    shows the model's working notes, the answer given to its last stage (shortened) when there is
    one, and the automatic verdict: "passed", or the rule that failed it and why. A good rewrite is
    a more demanding version of its parent that a person could still answer: it keeps the task,
    the facts and the language of the parent, adds requirements that fit, and contains no answer.

    List every case where the evolution went wrong, with its category. Every case whose verdict
    says failed is a problem case, and a passed case can still be one:
    no_progression (the added complexity has no logical build-up), wrong_or_unrealistic (wrong
    facts or impossible numbers), task_changed (the original problem was altered or irrelevant
    details were added), contradictory (requirements that conflict), unclear (hard to understand
    or incoherent), unsupported_complexity (complexity the original cannot carry),
    complexity_decreased (simpler than the parent, e.g. the answer leaked into the question),
    unrelated (no longer about the original), irrelevant_complexity (additions that do not
    matter to the task), unsolvable (cannot be answered as written), answered_instead (the model
    answered the instruction instead of rewriting it), unimproved_complexity (no harder than the
    parent), or other. Then write feedback: which general weakness of the method let these
    problems happen, and what the method should say instead. The feedback must apply to any
    instruction of this kind, never to the facts of one case."""

    method: str = dspy.InputField(desc="the evolving method that produced the rewrites")
    trajectory: str = dspy.InputField(
        desc="the cases as JSON: id, stages, working notes, answer excerpt and verdict")
    context: str = dspy.InputField(
        desc="how the method fails on the development set, by rule, and what earlier steps tried")
    issues: list[TrajectoryIssue] = dspy.OutputField(
        desc="one entry per problem case; an empty list only when every case evolved well"
    )
    feedback: str = dspy.OutputField(
        desc="the general weakness of the method and how to fix it, without hurting the other cases"
    )
