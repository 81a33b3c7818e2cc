"""Method optimization: the optimizer LLM rewrites the evolving method from the analysis feedback."""

from __future__ import annotations

import dspy


class OptimizeMethod(dspy.Signature):
    """You improve an evolving method: the instructions a model follows to rewrite an instruction
    into a harder version of itself.

    The feedback describes cases where the current method failed and what should change. Write an
    improved method that prevents those failures, keeps everything that worked for the other
    cases, and makes rewrites at least as demanding as the current method does. Keep it a general
    procedure that applies to any instruction of the same kind: do not mention the particular
    cases. Give the complete text of the improved method and nothing else. The final rewritten
    instruction is returned in a field of its own, so the method need not describe any output
    format."""

    current_method: str = dspy.InputField(desc="the evolving method in use now")
    feedback: str = dspy.InputField(desc="the analysis of the method's failures and the changes it needs")
    improved_method: str = dspy.OutputField(desc="the full text of the improved evolving method")
