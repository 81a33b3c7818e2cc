"""LMs: spec strings, the embedded llama.cpp default, and ``ManagedLM`` for long jobs."""

from autoevol.lm.cache import CallCache
from autoevol.lm.local import LocalModelError, LocalServer, default_model_path
from autoevol.lm.managed import ManagedLM
from autoevol.lm.policy import AdaptiveLimiter, Budget, BudgetExceeded, CallPolicy
from autoevol.lm.structured import RoutingAdapter, StructuredAdapter, output_schema, response_format
from autoevol.lm.spec import LMSession, LMSpec, LMSpecError, parse_spec
from autoevol.lm.usage import CallLog, RoleUsage, observe_calls

__all__ = [
    "AdaptiveLimiter", "Budget", "BudgetExceeded", "CallCache", "CallLog", "CallPolicy",
    "LMSession", "LMSpec", "LMSpecError", "LocalModelError", "LocalServer", "ManagedLM",
    "RoleUsage", "RoutingAdapter", "StructuredAdapter", "default_model_path", "observe_calls", "output_schema",
    "parse_spec", "response_format",
]
