"""A feedback metric for DSPy optimizers: one evolution scored 1 (success) or 0 (failure), with the reason.

``EvolutionFeedback`` has the signature DSPy's reflective optimizers call a metric with,
``metric(gold, pred, trace=None, pred_name=None, pred_trace=None)``, and works as a plain metric
(``dspy.Evaluate``, any teleprompter) too. ``gold`` carries the original ``instruction``, ``pred``
is an :class:`~autoevol.programs.Evolver` prediction. The metric lets the evol LM answer the
evolved instruction (a plain chat reply, as everywhere in autoevol), runs failure detection (the
judge included, when the detector has one) and returns ``dspy.Prediction(score=..., feedback=...)``.

Example:
    >>> metric = EvolutionFeedback(detector=FailureDetector())
    >>> gold = dspy.Example(instruction="Add 2 and 3.").with_inputs("instruction")
    >>> result = metric(gold, dspy.Prediction(evolved_instruction="Add 2 and 3."))
    >>> result.score, result.rule
    (0.0, 'unchanged')
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Any

import dspy

from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, evaluate_item
from autoevol.records import UNPARSEABLE, Verdict
from autoevol.signatures.respond import chat_reply

__all__ = ["EvolutionFeedback", "feedback_text"]

#: Characters of the evolution and of the answer quoted in a feedback text.
EXCERPT_CHARS = 400


def _excerpt(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def feedback_text(outcome: ItemOutcome, *, rule_description: str | None = None,
                  excerpt_chars: int = EXCERPT_CHARS) -> str:
    """The feedback on one judged evolution: the verdict (rule, its meaning, reason) and excerpts."""
    verdict = outcome.verdict
    if verdict.failed:
        reason = verdict.reason or "no reason given"
        meaning = f" ({rule_description})" if rule_description and rule_description not in reason else ""
        lines = [f"Failure ({verdict.rule}){meaning}: {reason}"]
    else:
        lines = ["Success: the rewrite passed every failure check (a harder version of the same task, "
                 "answered without asking back or refusing)."]
    lines.append(f'Original instruction: "{_excerpt(outcome.original, excerpt_chars)}"')
    if outcome.evolved is not None:
        lines.append(f'Rewrite: "{_excerpt(outcome.evolved, excerpt_chars)}"')
    if outcome.answer is not None:
        lines.append(f'The evol model\'s answer to the rewrite: "{_excerpt(outcome.answer, excerpt_chars)}"')
    elif verdict.failed and outcome.evolved is not None:
        lines.append("The rewrite was not answered: it failed before an answer was needed.")
    return "\n".join(lines)


class EvolutionFeedback:
    """Score one evolution: 1.0 when it passed every failure rule, 0.0 when a rule fired; with feedback.

    Each (instruction, rewrite) pair is answered and judged once: reflective optimizers call the
    metric again for the feedback of the same prediction, which then costs no LM call.

    Args:
        detector: failure detection (default: every cheap rule); build it with ``judge_lm=...``
            for the evolution judge.
        evol_lm: the LM that answers the rewrite (default: the LM configured in DSPy when the
            metric runs, i.e. the evol LM the program ran under).
        answer_max_tokens: caps the answers (default: the LM's limit).
        excerpt_chars: characters of the rewrite and the answer quoted in the feedback.

    Returns (from a call) ``dspy.Prediction(score, feedback, rule, failed)``.

    Raises (from a call): ``BudgetExceeded`` and permanent LM errors (authentication, unknown
    model, unsupported parameter): no other item could succeed either. A transient LM error that
    outlived the LM's retries is this item's failure (rule ``lm_error``), as in a compile.
    """

    def __init__(self, *, detector: FailureDetector | None = None, evol_lm: dspy.LM | None = None,
                 answer_max_tokens: int | None = None, excerpt_chars: int = EXCERPT_CHARS) -> None:
        self.detector = detector or FailureDetector()
        self.evol_lm = evol_lm
        self.answer_max_tokens = answer_max_tokens
        self.excerpt_chars = excerpt_chars
        self._descriptions = dict(self.detector.describe())
        self._outcomes: dict[tuple[str, str], ItemOutcome] = {}
        self._lock = threading.Lock()

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                 pred_trace: Any = None) -> dspy.Prediction:
        outcome = self.outcome(_instruction(gold), pred)
        verdict = outcome.verdict
        description = self._descriptions.get(verdict.rule or "")
        return dspy.Prediction(score=0.0 if verdict.failed else 1.0, failed=verdict.failed, rule=verdict.rule,
                               feedback=feedback_text(outcome, rule_description=description,
                                                      excerpt_chars=self.excerpt_chars))

    def outcome(self, instruction: str, pred: Any) -> ItemOutcome:
        """The judged evolution of ``instruction`` that ``pred`` holds (answered and judged once)."""
        evolved = getattr(pred, "evolved_instruction", None) if pred is not None else None
        if evolved is None:
            return ItemOutcome(original=instruction, verdict=Verdict.failure(
                UNPARSEABLE, "the evolver's output has no 'evolved_instruction' field"))
        key = (instruction, str(evolved))
        with self._lock:
            known = self._outcomes.get(key)
        if known is not None:
            return known
        with dspy.context(lm=self.evol_lm) if self.evol_lm is not None else nullcontext():
            outcome = evaluate_item(instruction, lambda instruction: pred, responder=self.answer,
                                    detector=self.detector)
        with self._lock:
            return self._outcomes.setdefault(key, outcome)

    def answer(self, instruction: str) -> dspy.Prediction:
        """The evol LM's plain chat reply to a rewrite (as :class:`~autoevol.programs.Responder` gives it)."""
        return dspy.Prediction(answer=chat_reply(instruction, max_tokens=self.answer_max_tokens))


def _instruction(gold: Any) -> str:
    if isinstance(gold, str):
        return gold
    try:
        value = gold["instruction"]
    except (KeyError, TypeError):
        raise TypeError("the metric's example needs an 'instruction' field") from None
    return str(value)
