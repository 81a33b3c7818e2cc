"""DSPy programs: the Evolver (the compiled artifact), the Responder, and the dataset pipeline."""

from autoevol.programs.evolver import Evolver, EvolverFileError
from autoevol.programs.pipeline import EvolveJob, JobSummary
from autoevol.programs.responder import Responder

__all__ = ["EvolveJob", "Evolver", "EvolverFileError", "JobSummary", "Responder"]
