"""LLM judges of an evolution: Evol-Instruct's "Equal" check, and a verdict on what cheap rules cannot see."""

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


#: The judge's verdicts; every one but ``harder`` fails the evolution (rule ``judge_<verdict>``).
EvolutionVerdict = Literal["harder", "not_harder", "simpler", "lost_task", "answered", "unsolvable"]


class JudgeEvolution(dspy.Signature):
    """You check one rewrite of an instruction. The rewrite was meant to be a harder version of
    the original: the same task with more requirements, constraints, depth or reasoning, which a
    person could still carry out.

    Choose one verdict:
    harder: the same task, clearly more demanding, still answerable;
    not_harder: the same demands as the original, only reworded or padded;
    simpler: something the original required (a number, a condition, an example, a part of the
    task) is missing, so the rewrite asks for less;
    lost_task: the rewrite no longer asks for the original task (it became a statement, a
    different task, or a description of how to rewrite);
    answered: the rewrite answers or solves the original instead of asking it;
    unsolvable: the rewrite contradicts itself or lacks what is needed to answer it.
    Give a reason of one short sentence that names what you saw."""

    original_instruction: str = dspy.InputField(desc="the original instruction")
    rewritten_instruction: str = dspy.InputField(desc="the rewrite to check")
    verdict: EvolutionVerdict = dspy.OutputField(desc="one of the verdicts")
    reason: str = dspy.OutputField(desc="one short sentence: what makes it so")
