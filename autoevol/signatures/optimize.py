"""Method optimization: the optimizer LLM improves the evolving method from the analysis feedback.

Two ways to propose a candidate: :class:`OptimizeMethod` rewrites the whole method (the paper's
way); :class:`ProposeMethodEdit` writes a small edit (one or two general rules, or one revised
step) that the program applies to the method, which a small optimizer LM carries out more reliably.
"""

from __future__ import annotations

import dspy


class OptimizeMethod(dspy.Signature):
    """You improve an evolving method: the instructions a model follows to rewrite an instruction
    into a harder version of itself.

    The feedback describes cases where the current method failed and what should change. Write an
    improved method that prevents those failures, keeps everything that worked for the other
    cases, and makes rewrites at least as demanding as the current method does. Keep it a general
    procedure that applies to any instruction of the same kind: do not mention the particular
    cases, their names or their numbers. Give the complete text of the improved method and nothing
    else. The final rewritten instruction is returned in a field of its own, so the method need
    not describe any output format."""

    current_method: str = dspy.InputField(desc="the evolving method in use now")
    feedback: str = dspy.InputField(desc="the analysis of the method's failures and the changes it needs")
    improved_method: str = dspy.OutputField(desc="the full text of the improved evolving method")


class ProposeMethodEdit(dspy.Signature):
    """You improve an evolving method (the instructions a model follows to rewrite an instruction
    into a harder version of itself) by a small, targeted edit.

    Read the feedback about the cases where the method failed. Then either add one or two new
    rules to the method, or rewrite one of its numbered steps, so that those failures stop
    happening while the rest of the method keeps working. A rule is one sentence, an order to the
    model that applies to every instruction of this kind, for example "Keep every number and
    name of the original instruction." Never mention the particular cases, their names or their
    numbers, and never describe an output format."""

    current_method: str = dspy.InputField(desc="the evolving method in use now")
    feedback: str = dspy.InputField(desc="the analysis of the method's failures and the changes it needs")
    new_rules: list[str] = dspy.OutputField(
        desc="one or two new general rules, one sentence each; an empty list when revising a step")
    revised_step: str = dspy.OutputField(
        desc="the full new text of one existing step, starting with its label (e.g. 'Step 3 - ...'); "
             "empty when only adding rules")
