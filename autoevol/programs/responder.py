"""``Responder``: the evol LLM answers instructions; failure detection reads the answers."""

from __future__ import annotations

import dspy

from autoevol.signatures.respond import RespondToInstruction


class Responder(dspy.Module):
    """Answers an instruction. Returns a prediction with ``answer``."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict(RespondToInstruction)

    def forward(self, instruction: str) -> dspy.Prediction:
        return self.respond(instruction=instruction)
