"""The settings of an Auto Evol-Instruct compile: the range each must be in, and which of them a resumed
run must share with the run it continues (the ``run.json`` header of its run directory).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoevol.optimizers.auto_evol.run_dir import RunHeader
from autoevol.version import __version__

#: The least value of each numeric setting of an Auto Evol-Instruct compile.
SETTING_MINIMUMS = {"num_candidates": 1, "batch_size": 1, "dev_size": 1, "confirm_size": 0, "max_steps": 0,
                    "evolution_rounds": 1,
                    "temperature": 0, "patience": 1, "proposal_attempts": 1, "max_method_words": 20,
                    "num_threads": 1, "max_demos": 0, "demo_candidates": 0}


def check_settings(settings: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first setting of a compile that is out of its range."""
    for name, minimum in SETTING_MINIMUMS.items():
        if not settings[name] >= minimum:
            raise ValueError(f"{name} must be at least {minimum}")
    if not 0 < settings["top_p"] <= 1:
        raise ValueError("top_p must be in (0, 1]")
    for name in ("racing_alpha", "selection_alpha", "confirm_alpha"):
        if not 0 < settings[name] < 1:
            raise ValueError(f"{name} must be in (0, 1)")
    if settings["proposal_mode"] not in ("edit", "rewrite"):
        raise ValueError("proposal_mode must be 'edit' or 'rewrite'")


#: Settings a resumed compile may change: a run may be extended or cut short, and keep_demos shows
#: in the starting candidate's fingerprint.
RESUMABLE_SETTINGS = frozenset({"max_steps", "patience", "keep_demos"})
#: Settings that only matter when demonstrations are on (a run without them records none of them,
#: so runs from before demonstrations resume).
DEMO_SETTINGS = frozenset({"max_demos", "demo_candidates", "teacher_demos"})


def compile_header(hyperparameters: dict[str, Any], *, start_fingerprint: str, models: dict[str, str],
                   detector_rules: list[str], data: dict[str, Any]) -> RunHeader:
    """The ``run.json`` of an Auto Evol-Instruct compile: what a resume must share with the run it continues."""
    ignored = RESUMABLE_SETTINGS | (set() if hyperparameters["max_demos"] else DEMO_SETTINGS)
    settings = {key: value for key, value in hyperparameters.items() if key not in ignored}
    settings.update(models=models, detector_rules=detector_rules)
    return RunHeader(autoevol_version=__version__, start_method_fingerprint=start_fingerprint,
                     settings=settings, data=data)
