"""Optimizers: the Auto Evol-Instruct teleprompter, its step records, and candidate racing."""

from autoevol.optimizers.auto_evol import AutoEvolInstruct, NotEnoughData, StageProgress, StopCompile
from autoevol.optimizers.history import (
    CandidateRecord,
    MethodScore,
    RunDirError,
    StepRecord,
    TrajectoryCase,
    UsageDelta,
)
from autoevol.optimizers.racing import RaceResult, race, sign_test_p_value

__all__ = [
    "AutoEvolInstruct", "CandidateRecord", "MethodScore", "NotEnoughData", "RaceResult", "RunDirError",
    "StageProgress", "StepRecord", "StopCompile", "TrajectoryCase", "UsageDelta", "race",
    "sign_test_p_value",
]
