"""Evol-Instruct's information-gain check: is the evolved instruction really different?"""

from __future__ import annotations

from typing import Literal

import dspy


class JudgeEquality(dspy.Signature):
    """Compare two instructions. They are Equal when they carry the same constraints and
    requirements and call for the same depth and breadth of answer; otherwise they are Not Equal.
    Wording differences alone do not make instructions Not Equal."""

    first_instruction: str = dspy.InputField(desc="the original instruction")
    second_instruction: str = dspy.InputField(desc="the rewritten instruction")
    verdict: Literal["Equal", "Not Equal"] = dspy.OutputField(
        desc="Equal or Not Equal"
    )
