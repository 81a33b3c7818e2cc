"""Method optimization: the optimizer LLM improves the evolving method from the analysis feedback.

Two ways to propose a candidate: :class:`OptimizeMethod` rewrites the whole method (the paper's
way); :class:`ProposeMethodEdit` writes a small edit (new rules, a rule put into a step, one
revised step, or one sentence replaced or deleted) that the program applies to the method, which
a small optimizer LM carries out more reliably. Both read the dev failures by rule beside the
feedback, so the change aims at the failures that are frequent, not only at the cases analysed.
"""

from __future__ import annotations

import dspy


class OptimizeMethod(dspy.Signature):
    """You improve an evolving method: the instructions a model follows to rewrite an instruction
    into a harder version of itself.

    The feedback describes cases where the current method failed and what should change; the
    context says how often each kind of failure happens on the development set. Write an improved
    method that prevents those failures, keeps everything that worked for the other cases, and
    makes rewrites at least as demanding as the current method does. Keep it a general procedure
    that applies to any instruction of the same kind: do not mention the particular cases, their
    names or their numbers. Give the complete text of the improved method and nothing else. The
    final rewritten instruction is returned in a field of its own, so the method need not
    describe any output format."""

    current_method: str = dspy.InputField(desc="the evolving method in use now")
    feedback: str = dspy.InputField(desc="the analysis of the method's failures and the changes it needs")
    context: str = dspy.InputField(
        desc="the method's failures on the development set by rule, earlier changes and their results, its length")
    improved_method: str = dspy.OutputField(desc="the full text of the improved evolving method")


class ProposeMethodEdit(dspy.Signature):
    """You improve an evolving method (the instructions a model follows to rewrite an instruction
    into a harder version of itself) by one small, targeted edit.

    Read the feedback about the cases where the method failed, and the context: how often each
    kind of failure happens on the development set. Aim at the most frequent failures. Make one
    small change, of one of these kinds, and leave the fields of the other kinds empty:
    add one or two new rules (start a rule with a step's label, "Step 2: ...", to put it into that
    step; a rule without a label goes to the end of the method); rewrite one numbered step; replace
    one sentence of the method (copy it word for word as the old sentence, and write the new one);
    or delete a sentence that causes failures (copy it as the old sentence, leave the new sentence
    empty). Replacing or deleting keeps the method short, which matters when it nears its word
    budget. A rule or sentence is an order to the model that applies to every instruction of this
    kind, for example "Keep every number and name of the original instruction." Never mention the
    particular cases, their names or their numbers, and never describe an output format."""

    current_method: str = dspy.InputField(desc="the evolving method in use now")
    feedback: str = dspy.InputField(desc="the analysis of the method's failures and the changes it needs")
    context: str = dspy.InputField(
        desc="the method's failures on the development set by rule, earlier changes and their results, its length")
    new_rules: list[str] = dspy.OutputField(
        desc="one or two new general rules, one sentence each, 'Step N: ...' to put one into step N; "
             "an empty list for another kind of edit")
    revised_step: str = dspy.OutputField(
        desc="the full new text of one existing step, starting with its label (e.g. 'Step 3 - ...'); "
             "empty for another kind of edit")
    old_sentence: str = dspy.OutputField(
        desc="a sentence of the current method, copied word for word, to replace or delete; empty for none")
    new_sentence: str = dspy.OutputField(
        desc="the sentence that takes the old sentence's place; empty to delete the old sentence")
