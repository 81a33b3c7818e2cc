"""GEPA on the job of Auto Evol-Instruct: the ``GEPAEvolInstruct`` teleprompter and its budget and stoppers.

The teleprompter (and :func:`build_teleprompter`, which builds either optimizer by name) is in
:mod:`~autoevol.optimizers.gepa.teleprompter`; the metric-call budget matching Auto Evol-Instruct's
schedule and the stoppers that end GEPA early are in :mod:`~autoevol.optimizers.gepa.stops`.
"""

from autoevol.optimizers.gepa.stops import matched_metric_calls
from autoevol.optimizers.gepa.teleprompter import OPTIMIZERS, GEPAEvolInstruct, build_teleprompter

__all__ = ["OPTIMIZERS", "GEPAEvolInstruct", "build_teleprompter", "matched_metric_calls"]
