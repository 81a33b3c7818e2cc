"""Metrics: evolution failure detection and failure rate; data quality."""

from autoevol.metrics.failure import DEFAULT_RULES, FailureDetector, FailureRule
from autoevol.metrics.rate import FailureRate, ItemOutcome, evaluate_item, evaluate_items, failure_rate, summarize

__all__ = [
    "DEFAULT_RULES", "FailureDetector", "FailureRate", "FailureRule", "ItemOutcome", "evaluate_item",
    "evaluate_items", "failure_rate", "summarize",
]
