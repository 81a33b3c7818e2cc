"""Optimizers, one sub-package per idea: the Auto Evol-Instruct teleprompter and its parts
(:mod:`~autoevol.optimizers.auto_evol`), GEPA on the same job (:mod:`~autoevol.optimizers.gepa`),
and Optuna studies of either (:mod:`~autoevol.optimizers.tuning`).

This package re-exports the Auto Evol-Instruct API: the teleprompter, its settings, its step records, and
candidate racing. GEPA and the studies are imported from their own sub-packages.
"""

from autoevol.optimizers.auto_evol import (
    AutoEvolInstruct,
    CandidateRecord,
    CompileFoundNothing,
    CompileSettings,
    MethodScore,
    NoImprovement,
    NoValidCandidate,
    NotEnoughData,
    RaceResult,
    RunDirError,
    StageProgress,
    StepRecord,
    StopCompile,
    TrajectoryCase,
    UsageDelta,
    race,
    sign_test_p_value,
)

__all__ = [
    "AutoEvolInstruct", "CandidateRecord", "CompileFoundNothing", "CompileSettings", "MethodScore", "NoImprovement",
    "NoValidCandidate", "NotEnoughData", "RaceResult", "RunDirError",
    "StageProgress", "StepRecord", "StopCompile", "TrajectoryCase", "UsageDelta", "race",
    "sign_test_p_value",
]
