"""The evolving signature: its instructions are the evolving method being optimized."""

from __future__ import annotations

import dspy

#: The universal, domain-free initial evolving method e_0 (four steps, written by us).
INITIAL_METHOD = """\
You turn an instruction into a harder version of itself. Work through four steps and write your \
work for steps 1 to 3 in the working notes.

Step 1 - Options: read the instruction carefully and list every way it could be made more complex: \
added constraints or requirements, deeper or broader questions, more concrete details, more \
reasoning steps, richer inputs. Never change the language the instruction is written in.

Step 2 - Plan: choose several options from your list that fit together and write a short plan for \
combining them.

Step 3 - Rewrite: carry out the plan. The rewritten instruction may add only about 10 to 20 words \
to the original and must stay a single instruction a person could answer.

Step 4 - Review: reread the rewrite, remove anything unreasonable or contradictory, and make sure \
it is only a more complex version of the original instruction, asking for the same kind of answer. \
Give the final rewritten instruction alone as the evolved instruction: do not answer it, and do \
not mention these steps."""

#: The "weak" one-line method of the paper's ablation.
WEAK_METHOD = "Rewrite the given instruction into a more complex version of itself."


class EvolveInstruction(dspy.Signature):
    __doc__ = INITIAL_METHOD

    instruction: str = dspy.InputField(desc="the instruction to evolve")
    working_notes: str = dspy.OutputField(
        desc="your work on the method's steps before the final rewrite"
    )
    evolved_instruction: str = dspy.OutputField(
        desc="the final evolved instruction only, with no answer and no commentary"
    )
