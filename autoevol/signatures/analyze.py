"""Trajectory analysis: the optimizer LLM finds the cases an evolving method failed, and why."""

from __future__ import annotations

from typing import Any, Literal, get_args

import dspy
from pydantic import BaseModel, Field, field_validator

#: What can go wrong in an evolution: six kinds and "other", few enough for a small optimizer LM to
#: tell apart. The paper's nine categories and Figure 1's three fold into them (see ``_ALIASES``).
IssueCategory = Literal[
    "not_harder",
    "complexity_decreased",
    "task_changed",
    "answered_instead",
    "flawed",
    "irrelevant_complexity",
    "other",
]

#: Every issue category, in the order of :data:`IssueCategory`.
ISSUE_CATEGORIES: tuple[str, ...] = get_args(IssueCategory)

#: Other spellings, and the finer categories of earlier versions (recorded in older run folders).
_ALIASES = {
    "no_progression": "not_harder",
    "no_logical_progression": "not_harder",
    "unimproved_complexity": "not_harder",
    "unimproved": "not_harder",
    "unchanged": "not_harder",
    "answer_leaked": "complexity_decreased",
    "lost_information": "complexity_decreased",
    "problem_changed": "task_changed",
    "changed": "task_changed",
    "unrelated": "task_changed",
    "answering_instead_of_evolving": "answered_instead",
    "answers_instead": "answered_instead",
    "answered": "answered_instead",
    "wrong_or_unrealistic": "flawed",
    "wrong_math": "flawed",
    "unrealistic": "flawed",
    "contradictory": "flawed",
    "contradiction": "flawed",
    "unclear": "flawed",
    "incoherent": "flawed",
    "unclear_or_incoherent": "flawed",
    "unsolvable": "flawed",
    "unsolvable_question": "flawed",
    "unsupported_complexity": "irrelevant_complexity",
    "complexity_not_supported": "irrelevant_complexity",
    "irrelevant": "irrelevant_complexity",
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

    The trajectory shows one block per case, the failed cases first. A block starts with the
    case's verdict: FAILED with the check that caught it and why, or passed. Then come the
    original instruction and its rewrite. A failed case also shows the start of the model's
    working notes, which tell what it meant to do and whether they were cut off at their limit
    before it got to the rewrite, and may show the start of the answer the model gave to its
    rewrite. A good rewrite is a harder version of the original that a person
    could still answer: it keeps the task, the facts, the inputs and the language, adds
    requirements that fit, and gives no answer away.

    List the cases that went wrong: every FAILED case, and a passed case only when it clearly
    has one of these problems. Name each problem with one of: not_harder (no harder than the
    original), complexity_decreased (lost part of the task, its inputs, facts or examples, or gave
    the answer away), task_changed (asks for something else), answered_instead (answered or
    commented instead of rewriting), flawed (unclear, contradictory, wrong or unsolvable),
    irrelevant_complexity (additions that do not fit the task), other. Then write feedback: the
    general weakness of the method behind these problems and what the method should say
    instead, in words that fit any instruction of this kind, never the facts of one case."""

    method: str = dspy.InputField(desc="the evolving method that produced the rewrites")
    trajectory: str = dspy.InputField(desc="the cases as plain text blocks, failed cases first")
    context: str = dspy.InputField(
        desc="how the method fails on the development set, by rule, and what earlier steps tried")
    issues: list[TrajectoryIssue] = dspy.OutputField(
        desc="one entry per problem case; an empty list only when every case evolved well"
    )
    feedback: str = dspy.OutputField(
        desc="the general weakness of the method and how to fix it, without hurting the other cases"
    )
