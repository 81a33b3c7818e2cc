"""DSPy signatures: one per file, each written in our own words."""

from autoevol.signatures.analyze import AnalyzeTrajectory, TrajectoryIssue
from autoevol.signatures.evolve import INITIAL_METHOD, WEAK_METHOD, EvolveInstruction
from autoevol.signatures.judge import JudgeEquality
from autoevol.signatures.optimize import OptimizeMethod
from autoevol.signatures.respond import chat_reply
from autoevol.signatures.tag import TagInstruction

__all__ = [
    "INITIAL_METHOD", "WEAK_METHOD", "AnalyzeTrajectory", "EvolveInstruction", "JudgeEquality",
    "OptimizeMethod", "TagInstruction", "TrajectoryIssue", "chat_reply",
]
