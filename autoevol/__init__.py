"""autoevol: Auto Evol-Instruct as a compiled DSPy program.

The evolving method is the instruction text of :class:`Evolver`; failure detection, the dataset
pipeline and the LMs (with an embedded offline default) are re-exported here.
"""

import os

# Offline by default: DSPy would otherwise try to download LiteLLM's model price map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from autoevol.lm import Budget, CallPolicy, LMSession, ManagedLM  # noqa: E402
from autoevol.metrics.failure import FailureDetector  # noqa: E402
from autoevol.metrics.feedback import EvolutionFeedback  # noqa: E402
from autoevol.metrics.rate import FailureRate, failure_rate  # noqa: E402
from autoevol.optimizers.auto_evol import AutoEvolInstruct, CompileSettings  # noqa: E402
from autoevol.optimizers.gepa import GEPAEvolInstruct  # noqa: E402
from autoevol.optimizers.tuning import tune  # noqa: E402
from autoevol.programs.demonstration import Demo  # noqa: E402
from autoevol.programs.evolver import Evolver, load_evolver  # noqa: E402
from autoevol.programs.pipeline import EvolveJob  # noqa: E402
from autoevol.programs.responder import Responder  # noqa: E402
from autoevol.records import EvolvedRow, SeedItem, Verdict  # noqa: E402
from autoevol.signatures import INITIAL_METHOD, WEAK_METHOD  # noqa: E402
from autoevol.version import __version__  # noqa: E402

#: ``autoevol.load(path)``: a new Evolver read from an evolver file (``Evolver().load(path)`` loads into one).
load = load_evolver

__all__ = [
    "INITIAL_METHOD", "WEAK_METHOD", "AutoEvolInstruct", "Budget", "CallPolicy", "CompileSettings", "Demo", "EvolveJob", "EvolvedRow", "Evolver",
    "EvolutionFeedback", "FailureDetector", "FailureRate", "GEPAEvolInstruct", "LMSession", "ManagedLM", "Responder", "SeedItem", "Verdict",
    "__version__", "failure_rate", "load", "tune",
]
