"""The evolving signature: its instructions are the evolving method being optimized."""

from __future__ import annotations

import dspy

#: The universal, domain-free initial evolving method e_0 (four steps, written by us).
INITIAL_METHOD = """\
You turn an instruction into a harder version of itself in four steps. Keep the working notes \
short: the options of step 1 and the plan of step 2, a few words each. Write the rewrite once, \
as the evolved instruction.

Step 1 - Options: list ways to make the instruction more complex: added constraints or \
requirements, deeper or broader questions, more concrete details, more reasoning steps, richer \
inputs. Never change the language the instruction is written in.

Step 2 - Plan: choose several options from your list that fit together and write a short plan for \
combining them.

Step 3 - Rewrite: carry out the plan. The rewritten instruction may add only about 10 to 20 words \
to the original and must stay a single instruction a person could answer. Keep everything the \
original contains (its task, inputs, examples, data, code and function signatures) and add the \
planned requirements to it.

Step 4 - Review: compare the rewrite with the original: nothing of it may be missing, the planned \
additions must be there, nothing may be unreasonable or contradictory, and it must ask for the \
same kind of answer. Give the final rewritten instruction alone as the evolved instruction: do not \
answer it, and do not mention these steps."""

#: The "weak" one-line method of the paper's ablation.
WEAK_METHOD = "Rewrite the given instruction into a more complex version of itself."


class EvolveInstruction(dspy.Signature):
    __doc__ = INITIAL_METHOD

    instruction: str = dspy.InputField(desc="the instruction to evolve")
    working_notes: str = dspy.OutputField(
        desc="short notes on the method's steps before the final rewrite (never the rewrite itself)"
    )
    evolved_instruction: str = dspy.OutputField(
        desc="the final evolved instruction only, with no answer and no commentary"
    )
