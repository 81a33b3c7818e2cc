"""Evolve a whole dataset: stream the input, evolve, answer and judge each row, write every row."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy
from pydantic import BaseModel

from autoevol.data import DataError, iter_items, read_rows
from autoevol.export import write_output_card
from autoevol.lm.grammar import call_max_tokens
from autoevol.lm.policy import BudgetExceeded
from autoevol.lm.usage import RoleUsage, observe_calls
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, evaluate_item, run_program
from autoevol.programs.evolver import Evolver
from autoevol.programs.journal import Journal
from autoevol.programs.responder import Responder
from autoevol.records import BAD_INPUT, NO_ANSWER, EvolvedRow, Verdict
from autoevol.threads import carry_dspy_context

if TYPE_CHECKING:
    from autoevol.baselines import EvolInstructBaseline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """What one output row is evolved from: a seed item (round 1) or a row of the previous round."""

    root_id: str
    parent_id: str | None
    text: str
    problem: str | None = None
    #: the human-turn index of a conversation input (recorded on the row).
    turn: int | None = None
    #: set when re-evaluating a row of an earlier output: the row keeps its id and round.
    id: str | None = None
    round: int | None = None

    def row_id(self, round: int) -> str:
        return self.id or f"{self.root_id}:r{round}"


class JobSummary(BaseModel):
    """What an evolve job did."""

    rows: int = 0
    evolved: int = 0
    failed: int = 0
    failed_by_rule: dict[str, int] = {}
    resumed_rows: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    output: str | None = None
    usage: list[RoleUsage] = []


class EvolveJob:
    """Evolve every instruction of a dataset with an Evolver, for one or more rounds.

    Every input row yields one output row per round that reaches it: evolved, or failed with the
    rule and reason (bad input rows too). Round ``r`` evolves the successful rows of round
    ``r - 1``. Rows are written to a journal as they finish, so a killed job resumes where it
    stopped; the final output file appears only when the job completes.

    Args:
        evolver: the evolving method to apply: an ``Evolver``, or the classic operations
            (:class:`~autoevol.baselines.EvolInstructBaseline`, one drawn per instruction).
        responder: answers evolved instructions (default: a plain ``Responder``).
        detector: decides failures (default: every cheap rule).
        concurrency: rows evaluated at once.
        evol_model: the model name recorded on each row.
        answer_lm: the LM that writes the final answer of every successful evolution. Default
            (``None``): the evol LM's answer made for failure detection is kept (no extra call).
            Otherwise the evol LM still answers for failure detection, and only evolutions that
            pass are answered again by ``answer_lm``, whose answer is the row's.
        answer_model: the model name recorded as ``answer_model`` (default: ``answer_lm``'s
            display name or model, or ``evol_model`` without an answer LM).
        on_row: called in the main thread with every written row (progress displays).
        card_settings: more settings to record in the dataset card of a folder output (the job
            adds its own: rounds, concurrency, rules); see :func:`autoevol.export.write_output_card`.
    """

    def __init__(
        self,
        evolver: Evolver | EvolInstructBaseline,
        *,
        responder: Responder | None = None,
        detector: FailureDetector | None = None,
        concurrency: int = 8,
        evol_model: str = "",
        answer_lm: dspy.LM | None = None,
        answer_model: str | None = None,
        on_row: Callable[[EvolvedRow], None] | None = None,
        card_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.evolver = evolver
        self.responder = responder or Responder()
        self.detector = detector or FailureDetector()
        self.concurrency = max(1, concurrency)
        self.evol_model = evol_model
        self.answer_lm = answer_lm
        self.answer_model = answer_model or (
            str(getattr(answer_lm, "display_name", answer_lm.model)) if answer_lm is not None else evol_model)
        self.on_row = on_row or (lambda row: None)
        self.card_settings = dict(card_settings or {})
        self._stop_reason: str | None = None

    def job_identity(self, data: Path, *, column: str | None, id_column: str | None,
                     limit: int | None, rounds: int) -> dict[str, Any]:
        """The settings a resumed job must share with the run that started it."""
        stat = data.stat()
        return {"input": str(data.resolve()), "input_size": stat.st_size, "input_mtime": int(stat.st_mtime),
                "column": column, "id_column": id_column, "limit": limit, "rounds": rounds,
                **self._evolution_identity()}

    def _evolution_identity(self) -> dict[str, Any]:
        """What makes a row's evolution and verdict, in every job's identity: the method, the evol
        model and its output token limit (read from the configured LM), the rules, and the answer
        model when it is a separate LM."""
        return {"method_fingerprint": self.evolver.fingerprint, "evol_model": self.evol_model,
                "max_output_tokens": call_max_tokens(dspy.settings.lm, {}), "rules": self.detector.rule_ids,
                **({"answer_model": self.answer_model} if self.answer_lm is not None else {})}

    def run(
        self,
        data: str | Path,
        out: str | Path,
        *,
        column: str | None = None,
        id_column: str | None = None,
        limit: int | None = None,
        rounds: int = 1,
        overwrite: bool = False,
    ) -> JobSummary:
        """Evolve ``data`` into ``out``; resumes an unfinished job for the same ``out``."""
        data, out = Path(data), Path(out)
        started = time.monotonic()
        self._stop_reason = None
        journal = Journal(out)
        done = journal.open(self.job_identity(data, column=column, id_column=id_column, limit=limit,
                                              rounds=rounds), overwrite=overwrite)
        summary = JobSummary(resumed_rows=len(done))
        try:
            for round in range(1, rounds + 1):
                sources = self._sources(round, data, journal, column, id_column, limit)
                self._evolve(round, (s for s in sources if s.row_id(round) not in done), journal)
                if self._stop_reason:
                    break
            self._tally(summary, journal)
            if self._stop_reason:
                summary.stopped = self._stop_reason
                journal.close()
            else:
                journal.finalize()
                self._write_card(out, {"engine": "local", "rounds": rounds, "limit": limit})
                summary.output = str(out)
        finally:
            journal.close()
        summary.seconds = time.monotonic() - started
        return summary

    def retry_failed(self, previous: str | Path, out: str | Path, *, overwrite: bool = False) -> JobSummary:
        """Re-evaluate only the failed rows of an earlier output ``previous`` into ``out``.

        ``out`` holds every row of ``previous`` exactly once: its successful rows unchanged, its
        failed rows evaluated again (same id, round and lineage; evolved or failed anew). Rows
        failed as ``bad_input`` are copied unchanged (no LM can fix the input). Later rounds are
        not extended. Resumable like :meth:`run`.
        """
        previous, out = Path(previous), Path(out)
        if previous.resolve() == out.resolve():
            raise DataError(out, "--retry-failed needs a new output path, not the earlier output itself")
        started = time.monotonic()
        self._stop_reason = None
        stat = previous.stat() if previous.is_file() else None
        identity = {"retry_failed": str(previous.resolve()), "input_size": stat.st_size if stat else None,
                    "input_mtime": int(stat.st_mtime) if stat else None, **self._evolution_identity()}
        journal = Journal(out)
        done = journal.open(identity, overwrite=overwrite)
        summary = JobSummary(resumed_rows=len(done))
        try:
            for row in previous_rows(previous):
                pass  # check the whole file before spending anything
            retried = (Source(root_id=row["root_id"], parent_id=row["parent_id"], text=row["original"],
                              id=row["id"], round=row["round"], turn=row.get("turn"))
                       for row in previous_rows(previous) if _retryable(row) and row["id"] not in done)
            self._evolve(1, retried, journal)
            if self._stop_reason:
                summary.stopped = self._stop_reason
                self._tally(summary, journal)
                journal.close()
            else:
                kept = (row for row in previous_rows(previous) if not _retryable(row))
                journal.finalize(prefix=kept)
                self._write_card(out, {"engine": "local", "retry_failed": str(previous)})
                tally_rows(summary, read_rows(out))
                summary.output = str(out)
        finally:
            journal.close()
        summary.seconds = time.monotonic() - started
        return summary

    def _sources(self, round: int, data: Path, journal: Journal, column: str | None,
                 id_column: str | None, limit: int | None) -> Iterator[Source]:
        if round == 1:
            for item in iter_items(data, column=column, id_column=id_column, limit=limit):
                yield Source(root_id=item.id, parent_id=item.id, text=item.instruction, problem=item.problem,
                             turn=item.turn)
        else:
            for row in journal.rows(round=round - 1):
                if not row["failed"]:
                    yield Source(root_id=row["root_id"], parent_id=row["id"], text=row["evolved"],
                                 turn=row.get("turn"))

    def _evolve(self, round: int, sources: Iterable[Source], journal: Journal) -> None:
        """Evaluate sources with bounded concurrency, writing each row as it finishes.

        At most ``2 * concurrency`` rows are in flight, so memory does not grow with the input.
        On Ctrl-C the rows not started are abandoned, running calls are not waited for, and
        everything written so far stays consistent.
        """
        work = carry_dspy_context(self._evaluate)
        pool = ThreadPoolExecutor(self.concurrency)
        in_flight: dict[Future[ItemOutcome], Source] = {}
        interrupted = False
        with dspy.context(disable_history=True):
            try:
                for source in sources:
                    if self._stop_reason:
                        break
                    if source.problem:
                        self._write(journal, round, source, self._bad_input(source))
                        continue
                    while len(in_flight) >= 2 * self.concurrency:
                        self._collect(in_flight, journal, round)
                    in_flight[pool.submit(work, source.text)] = source
                while in_flight:
                    self._collect(in_flight, journal, round)
            except KeyboardInterrupt:
                interrupted = True
                self._stop_reason = "interrupted"
                for future in in_flight:
                    future.cancel()
                # rows that finished meanwhile are still written; the others are redone on resume
                for future, source in list(in_flight.items()):
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._write(journal, round, source, future.result())
            finally:
                pool.shutdown(wait=not interrupted, cancel_futures=True)

    def _evaluate(self, text: str) -> ItemOutcome:
        return evaluate_and_answer(text, self.evolver, responder=self.responder, detector=self.detector,
                                   answer_lm=self.answer_lm)

    def _collect(self, in_flight: dict[Future[ItemOutcome], Source], journal: Journal, round: int) -> None:
        finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in finished:
            source = in_flight.pop(future)
            if future.cancelled():
                continue
            try:
                outcome = future.result()
            except BudgetExceeded as error:
                self._stop_reason = str(error)
                continue
            self._write(journal, round, source, outcome)

    def _operation(self, text: str) -> str | None:
        """The classic operation the program applies to ``text``, when it draws one per instruction."""
        operation_for = getattr(self.evolver, "operation_for", None)
        return operation_for(text) if operation_for is not None else None

    @staticmethod
    def _bad_input(source: Source) -> ItemOutcome:
        return ItemOutcome(original=source.text, verdict=Verdict.failure(BAD_INPUT, source.problem or ""))

    def _write(self, journal: Journal, round: int, source: Source, outcome: ItemOutcome) -> None:
        operation = None if outcome.verdict.rule == BAD_INPUT else self._operation(source.text)
        row = make_row(source, round, outcome, fingerprint=self.evolver.fingerprint, evol_model=self.evol_model,
                       answer_model=self.answer_model, operation=operation)
        journal.append(row)
        self.on_row(row)

    def _write_card(self, out: Path, settings: dict[str, Any]) -> None:
        """The dataset card of a folder output: method, models, settings, failures by rule."""
        judge = self.detector.judge_lm
        models = {"evol": self.evol_model} if self.evol_model else {}
        if self.answer_model:
            models["answer"] = self.answer_model
        if judge is not None:
            models["judge"] = str(getattr(judge, "display_name", judge.model))
        settings = {**settings, "concurrency": self.concurrency, "rules": ", ".join(self.detector.rule_ids),
                    **self.card_settings}
        write_output_card(out, method=self.evolver.method, models=models,
                          settings={key: value for key, value in settings.items() if value is not None})

    @staticmethod
    def _tally(summary: JobSummary, journal: Journal) -> None:
        tally_rows(summary, journal.rows())


def evaluate_and_answer(text: str, evolver: Evolver, *, detector: FailureDetector,
                        responder: Responder | None = None, answer_lm: dspy.LM | None = None) -> ItemOutcome:
    """Evolve, answer and judge ``text`` (:func:`evaluate_item`); then, with a separate ``answer_lm``,
    answer a successful evolution again with it (every engine evaluates rows through this).

    The evol LM's answer still decides the verdict (failure detection reads how the evol LM reacts);
    the final answer replaces it on the row. A final answer that fails (an LM error, or nothing
    at all) fails the row, since a training row without its answer is no use; the evolution is kept.
    """
    outcome = evaluate_item(text, evolver, responder=responder, detector=detector)
    if answer_lm is None or outcome.verdict.failed or outcome.evolved is None:
        return outcome
    with observe_calls() as log, dspy.context(lm=answer_lm):
        answer, problem = run_program(Responder(), "final answer", outcome.evolved, "answer")
    update: dict[str, Any] = {"answer": answer, "calls": outcome.calls + log.count(cached=False),
                              "cached_calls": outcome.cached_calls + log.count(cached=True)}
    if problem is None and not (answer or "").strip():
        problem = Verdict.failure(NO_ANSWER, "final answer: the answer model replied with nothing")
    if problem is not None:
        update.update(answer=None, verdict=problem)
    return outcome.model_copy(update=update)


def make_row(source: Source, round: int, outcome: ItemOutcome, *, fingerprint: str, evol_model: str,
             answer_model: str | None = None, operation: str | None = None) -> EvolvedRow:
    """The output row of one evaluated source (every engine writes rows through this).

    ``answer_model`` (default ``evol_model``) is recorded on successful rows; a failed row's
    answer, if any, is the evol model's (written for failure detection). ``operation`` names the
    classic operation that evolved the row, for a method that draws one per instruction.
    """
    answerer = (answer_model or evol_model) if not outcome.verdict.failed else evol_model
    return EvolvedRow(
        id=source.row_id(round), parent_id=source.parent_id, root_id=source.root_id, round=source.round or round,
        original=source.text, evolved=outcome.evolved, answer=outcome.answer,
        failed=outcome.verdict.failed, rule=outcome.verdict.rule, reason=outcome.verdict.reason,
        method_fingerprint=fingerprint, evol_model=evol_model,
        answer_model=answerer if outcome.answer is not None else None, turn=source.turn, operation=operation,
    )


def tally_rows(summary: JobSummary, rows: Iterable[dict[str, Any]]) -> None:
    """Add the rows, evolved and failed counts (per rule) of ``rows`` to ``summary``."""
    by_rule: Counter[str] = Counter()
    for row in rows:
        summary.rows += 1
        if row["failed"]:
            by_rule[row["rule"] or "unknown"] += 1
    summary.failed = sum(by_rule.values())
    summary.evolved = summary.rows - summary.failed
    summary.failed_by_rule = dict(by_rule.most_common())


_ROW_FIELDS = ("id", "parent_id", "root_id", "round", "original", "failed", "rule")


def previous_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of an earlier autoevol output, checked to be one (DataError naming the row otherwise)."""
    for number, row in enumerate(read_rows(path), start=1):
        missing = [name for name in _ROW_FIELDS if not isinstance(row, dict) or name not in row]
        if missing:
            raise DataError(path, f"not an autoevol output row (missing {', '.join(missing)})", number)
        yield row


def _retryable(row: dict[str, Any]) -> bool:
    return bool(row["failed"]) and row["rule"] != BAD_INPUT and bool(row["original"])
