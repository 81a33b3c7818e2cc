"""Evolution failure rate: evolve, answer and judge items; the optimizer's cheap proxy for quality."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError
from pydantic import BaseModel

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.lm.usage import observe_calls
from autoevol.metrics.failure import FailureDetector
from autoevol.records import LM_ERROR, UNPARSEABLE, Verdict
from autoevol.signatures.respond import chat_reply
from autoevol.threads import run_in_threads

logger = logging.getLogger(__name__)

Program = Callable[..., Any]


class ItemOutcome(BaseModel):
    """One instruction evolved once, answered and judged."""

    original: str
    evolved: str | None = None
    notes: str | None = None
    answer: str | None = None
    verdict: Verdict
    calls: int = 0
    cached_calls: int = 0


class FailureRate(BaseModel):
    """The share of items whose evolution failed, with every per-item outcome."""

    rate: float
    failed: int
    total: int
    by_rule: dict[str, int]
    outcomes: list[ItemOutcome]


def describe_error(error: BaseException, limit: int = 300) -> str:
    """An exception as one line of at most ``limit`` characters (for verdict reasons and records)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_program(program: Program, stage: str, instruction: str, field: str) -> tuple[str | None, Verdict | None]:
    """Call ``program`` on one instruction and read ``field``.

    Returns ``(value, None)``, or ``(None, verdict)`` when the call failed: a transient LM fault
    is rule ``lm_error``, an output without the field is rule ``unparseable``. ``BudgetExceeded``
    and permanent LM errors (authentication, unknown model, unsupported parameter) propagate: no
    other item could succeed either. A context too long is this item's own failure.
    """
    try:
        value = getattr(program(instruction=instruction), field)
    except BudgetExceeded:
        raise
    except AdapterParseError as error:
        return None, Verdict.failure(UNPARSEABLE, f"{stage}: the model's output had no parseable "
                                                  f"'{field}' field ({describe_error(error, 120)})")
    except Exception as error:  # a failing LM call is a failed item, never an aborted job
        if is_permanent(error) and not isinstance(error, ContextWindowExceededError):
            raise  # a too-long row fails alone; any other permanent error would fail every row
        logger.debug("%s failed: %s", stage, error)
        return None, Verdict.failure(LM_ERROR, f"{stage}: {describe_error(error)}")
    return (value if isinstance(value, str) else str(value)), None


def evaluate_item(
    instruction: str,
    evolver: Program,
    *,
    responder: Program | None = None,
    detector: FailureDetector | None = None,
) -> ItemOutcome:
    """Evolve ``instruction`` once, answer the evolution, and judge both.

    The answer is skipped when the evolution already fails (no call is spent on it).
    LM errors become rule ``lm_error``, unparseable outputs rule ``unparseable``; any other fault
    of the evolver, the answerer or the detector fails this item alone (rule ``lm_error``). Only
    ``BudgetExceeded`` and permanent LM errors propagate: no other item could succeed either.
    """
    responder = responder or _chat_answer
    detector = detector or FailureDetector()
    with observe_calls() as log:
        try:
            outcome = _evaluate(instruction, evolver, responder, detector, log)
        except BudgetExceeded:
            raise
        except Exception as error:
            if is_permanent(error):
                raise
            outcome = ItemOutcome(original=instruction, verdict=Verdict.failure(LM_ERROR, describe_error(error)))
    outcome.calls = log.count(cached=False)
    outcome.cached_calls = log.count(cached=True)
    return outcome


def evaluate_items(
    tasks: Sequence[tuple[Program, str]],
    *,
    responder: Program | None = None,
    detector: FailureDetector | None = None,
    num_threads: int = 1,
    tries: int = 1,
    on_done: Callable[[int], None] | None = None,
    on_outcome: Callable[[int, ItemOutcome], None] | None = None,
) -> list[ItemOutcome]:
    """The evaluation loop: each ``(evolving program, instruction)`` task through :func:`evaluate_item`.

    Tasks run in ``num_threads`` threads under the configured DSPy LM; outcomes keep the order of
    ``tasks``. An item that ends in an LM error is evaluated again, up to ``tries`` times in all
    (the LM retries each call as well). ``on_done(count)`` reports finished tasks;
    ``on_outcome(position, outcome)`` receives each task's outcome as it finishes, in its worker
    thread (to record it before the others finish).
    """
    responder = responder or _chat_answer
    detector = detector or FailureDetector()

    def evaluate(numbered: tuple[int, tuple[Program, str]]) -> ItemOutcome:
        position, (program, instruction) = numbered
        outcome = evaluate_item(instruction, program, responder=responder, detector=detector)
        for _ in range(tries - 1):
            if outcome.verdict.rule != LM_ERROR:
                break
            outcome = evaluate_item(instruction, program, responder=responder, detector=detector)
        if on_outcome is not None:
            on_outcome(position, outcome)
        return outcome

    return run_in_threads(evaluate, list(enumerate(tasks)), num_threads, on_done)


def _evaluate(instruction: str, evolver: Program, responder: Program, detector: FailureDetector,
              log: Any) -> ItemOutcome:
    notes: list[str] = []

    def evolve(instruction: str) -> Any:
        prediction = evolver(instruction=instruction)
        notes.append(str(getattr(prediction, "working_notes", "") or ""))
        return prediction

    evolved, problem = run_program(evolve, "evolution", instruction, "evolved_instruction")
    if problem and problem.rule == UNPARSEABLE and log.truncated:  # cut off before its fields were complete
        problem = Verdict.failure("truncated", "the evolution hit the model's output token limit before "
                                               "its fields were complete")
    if problem:
        return ItemOutcome(original=instruction, verdict=problem)
    outcome = ItemOutcome(original=instruction, evolved=evolved, notes=notes[-1] if notes else None,
                          verdict=Verdict.passed())
    if log.truncated:
        outcome.verdict = Verdict.failure("truncated", "the evolution hit the model's output token limit")
        return outcome
    early = detector.detect_evolution(instruction, evolved)
    if early is not None and early.failed:
        outcome.verdict = early
        return outcome
    answer, problem = run_program(responder, "answer", evolved, "answer")
    if problem:
        outcome.verdict = problem
        return outcome
    outcome.answer = answer
    outcome.verdict = detector.detect(instruction, evolved, answer)
    return outcome


def _chat_answer(instruction: str) -> dspy.Prediction:
    """The default answerer: a plain chat reply from the configured LM (see ``Responder``)."""
    return dspy.Prediction(answer=chat_reply(instruction))


def summarize(outcomes: Sequence[ItemOutcome]) -> FailureRate:
    """Failure rate and counts per rule of already evaluated items."""
    failed = [o for o in outcomes if o.verdict.failed]
    by_rule = Counter(o.verdict.rule or "unknown" for o in failed)
    total = len(outcomes)
    return FailureRate(rate=len(failed) / total if total else 0.0, failed=len(failed), total=total,
                       by_rule=dict(by_rule), outcomes=list(outcomes))


def failure_rate(
    evolver: Program,
    items: Sequence[str],
    *,
    responder: Program | None = None,
    detector: FailureDetector | None = None,
    num_threads: int = 1,
) -> FailureRate:
    """Evolve, answer and judge every item; returns the failure rate and every verdict.

    ``failure rate = failed items / items``, as in the paper. Runs under the configured DSPy LM
    (wrap the call in ``dspy.context(lm=...)`` to choose one). Items are evaluated in
    ``num_threads`` threads; outcomes keep the order of ``items``.
    """
    return summarize(evaluate_items([(evolver, text) for text in items], responder=responder, detector=detector,
                                    num_threads=num_threads))
