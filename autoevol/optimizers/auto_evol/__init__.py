"""Auto Evol-Instruct (Zeng et al., 2024) as a DSPy teleprompter: the loop and its parts.

The loop is :mod:`~autoevol.optimizers.auto_evol.loop`; the rest are the parts it runs, several of
them shared with GEPA: the data split (``split``), the trajectory and dev evaluation
(``evaluation``), proposals (``proposal``, with the edits of ``method_edit``), demonstrations
(``demos``), paired selection and racing (``selection``, ``racing``), the LM roles (``roles``),
progress (``progress``), the settings and their checks (``settings``: ``CompileSettings``), the step records (``records``), the
run directory (``run_dir``), when the loop stops (``stopping``), what it logs (``log_lines``), the
compiled result (``result``) and how a compile that found nothing ends (``found_nothing``).
"""

from autoevol.optimizers.auto_evol.found_nothing import CompileFoundNothing, NoImprovement, NoValidCandidate
from autoevol.optimizers.auto_evol.loop import AutoEvolInstruct
from autoevol.optimizers.auto_evol.progress import StageProgress
from autoevol.optimizers.auto_evol.racing import RaceResult, race
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StepRecord, TrajectoryCase, UsageDelta
from autoevol.optimizers.auto_evol.run_dir import RunDirError
from autoevol.optimizers.auto_evol.selection import sign_test_p_value
from autoevol.optimizers.auto_evol.settings import CompileSettings
from autoevol.optimizers.auto_evol.split import NotEnoughData
from autoevol.optimizers.auto_evol.stopping import StopCompile

__all__ = [
    "AutoEvolInstruct", "CandidateRecord", "CompileFoundNothing", "CompileSettings", "MethodScore", "NoImprovement",
    "NoValidCandidate", "NotEnoughData", "RaceResult", "RunDirError",
    "StageProgress", "StepRecord", "StopCompile", "TrajectoryCase", "UsageDelta", "race",
    "sign_test_p_value",
]
