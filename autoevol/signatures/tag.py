"""InsTag-style intent tagging: the tags measure an instruction's complexity and a dataset's diversity."""

from __future__ import annotations

import dspy


class TagInstruction(dspy.Signature):
    """Read a user instruction and name what it asks of whoever answers it. Give fine-grained
    intent tags: short noun phrases (one to four words, e.g. "unit conversion", "python recursion",
    "formal tone") that each name one skill, piece of domain knowledge, task or constraint a complete
    answer needs. Give one tag per distinct demand, at least one and without near-repeats; do not
    answer the instruction."""

    instruction: str = dspy.InputField(desc="the instruction to tag")
    tags: list[str] = dspy.OutputField(
        desc="the intent tags, each a short lowercase noun phrase"
    )
