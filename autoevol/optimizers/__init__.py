"""Optimizers: the Auto Evol-Instruct teleprompter, its step records, and candidate racing."""

from autoevol.optimizers.auto_evol import AutoEvolInstruct, StopCompile
from autoevol.optimizers.outcome import CompileFoundNothing, NoImprovement, NoValidCandidate
from autoevol.optimizers.progress import StageProgress
from autoevol.optimizers.split import NotEnoughData
from autoevol.optimizers.history import (
    CandidateRecord,
    MethodScore,
    RunDirError,
    StepRecord,
    TrajectoryCase,
    UsageDelta,
)
from autoevol.optimizers.racing import RaceResult, race
from autoevol.optimizers.selection import sign_test_p_value

__all__ = [
    "AutoEvolInstruct", "CandidateRecord", "CompileFoundNothing", "MethodScore", "NoImprovement",
    "NoValidCandidate", "NotEnoughData", "RaceResult", "RunDirError",
    "StageProgress", "StepRecord", "StopCompile", "TrajectoryCase", "UsageDelta", "race",
    "sign_test_p_value",
]
