"""DSPy signatures: one per file, each written in our own words."""

from autoevol.signatures.evolve import INITIAL_METHOD, WEAK_METHOD, EvolveInstruction
from autoevol.signatures.judge import JudgeEquality
from autoevol.signatures.respond import RespondToInstruction

__all__ = ["INITIAL_METHOD", "WEAK_METHOD", "EvolveInstruction", "JudgeEquality", "RespondToInstruction"]
