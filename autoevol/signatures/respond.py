"""The evol LLM answers an (evolved) instruction; failure detection reads the answer."""

from __future__ import annotations

import dspy


class RespondToInstruction(dspy.Signature):
    """Answer the instruction as a helpful assistant would: complete the task it asks for,
    directly and fully."""

    instruction: str = dspy.InputField(desc="the instruction to carry out")
    answer: str = dspy.OutputField(desc="your complete answer to the instruction")
