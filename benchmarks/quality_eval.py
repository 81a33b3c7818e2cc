"""Resumable held-out evaluation for ``benchmarks/quality.py``: per-item JSONL, usage, progress.

Every evaluated item is appended to the method's JSONL file (and flushed) as soon as it is
judged, so a crash loses at most the items in flight. A line carries a key made of everything
that decides its outcome (method, LM settings, failure rules, the item text); a resumed run
reuses the lines whose key matches and evaluates only the rest.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from autoevol.lm import BudgetExceeded, LMSession
from autoevol.metrics.failure import FailureDetector
from autoevol.metrics.rate import ItemOutcome, describe_error, evaluate_item
from autoevol.records import LM_ERROR, SeedItem, Verdict, fingerprint
from autoevol.threads import run_in_threads

#: The usage counts kept per role.
USAGE_FIELDS = ("calls", "cache_hits", "failed_calls", "retries", "input_tokens", "output_tokens")

Usage = dict[str, dict[str, int]]


def role_usage(session: LMSession) -> Usage:
    """Usage so far per role, over every LM of ``session`` (LMs of one role are added up)."""
    totals: Usage = {}
    for lm in session.lms:
        snapshot = lm.usage
        role = totals.setdefault(snapshot.role, dict.fromkeys(USAGE_FIELDS, 0))
        for name in USAGE_FIELDS:
            role[name] += int(getattr(snapshot, name))
    return totals


def usage_delta(after: Usage, before: Usage) -> Usage:
    """``after - before`` per role, leaving out roles that did nothing."""
    delta: Usage = {}
    for role, counts in after.items():
        earlier = before.get(role, {})
        change = {name: counts[name] - earlier.get(name, 0) for name in USAGE_FIELDS}
        if any(change.values()):
            delta[role] = change
    return delta


def add_usage(total: Usage, part: Mapping[str, Mapping[str, int]]) -> None:
    """Add ``part`` into ``total`` in place."""
    for role, counts in part.items():
        into = total.setdefault(role, dict.fromkeys(USAGE_FIELDS, 0))
        for name in USAGE_FIELDS:
            into[name] += int(counts.get(name, 0))


class Progress:
    """``label: done/total`` lines on stderr with the elapsed time and an ETA.

    The ETA extrapolates from the items finished in this run (reused items cost nothing).
    """

    def __init__(self, label: str, total: int, *, already: int = 0) -> None:
        self.label, self.total, self.done, self.already = label, total, already, already
        self.started = time.monotonic()
        self.report()

    def advance(self, count: int = 1) -> None:
        """``count`` more items are done."""
        self.done += count
        self.report()

    def report(self) -> None:
        """Print the current line."""
        elapsed = time.monotonic() - self.started
        fresh = self.done - self.already
        left = self.total - self.done
        eta = "-" if fresh <= 0 else format_seconds(elapsed / fresh * left)
        reused = f", {self.already} reused" if self.already else ""
        print(f"[{self.label}] {self.done}/{self.total} items{reused}, elapsed {format_seconds(elapsed)}, ETA {eta}",
              file=sys.stderr, flush=True)


def format_seconds(seconds: float) -> str:
    """``1m05s`` or ``2h03m10s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class MethodResult:
    """The held-out figures of one method (``seconds`` and ``usage`` summed over resumed runs)."""

    key: str
    label: str
    fingerprint: str
    failure_rate: float
    failed: int
    items: int
    by_rule: dict[str, int]
    seconds: float
    usage: Usage
    reused: int
    outcomes_file: str
    failed_flags: list[bool] = field(default_factory=list)


def read_lines(path: Path) -> Iterator[Any]:
    """The JSON values of a JSON-lines file, skipping lines a crash tore."""
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            yield json.loads(raw)
        except json.JSONDecodeError:
            continue


class ItemLog:
    """The per-item JSONL file of one method: reads finished lines, appends new ones."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.lines: dict[str, dict[str, Any]] = {}
        if resume and path.exists():
            for line in read_lines(path):
                try:
                    self.lines[line["key"]] = line
                except (KeyError, TypeError):
                    continue  # not a record of this log
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in self.lines.values())
        path.write_text(kept, encoding="utf-8")
        self._lock = threading.Lock()

    def append(self, line: dict[str, Any]) -> None:
        """Write one finished item to disk at once (flushed and synced)."""
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.lines[line["key"]] = line


def item_key(settings: Mapping[str, Any], method_fingerprint: str, text: str) -> str:
    """What decides one item's outcome, hashed."""
    return fingerprint(json.dumps({"settings": settings, "method": method_fingerprint, "item": text},
                                  sort_keys=True, ensure_ascii=False))


def evaluate_method(
    key: str,
    label: str,
    program: Any,
    items: Sequence[SeedItem],
    *,
    session: LMSession,
    lm: dspy.LM,
    responder: Any,
    detector: FailureDetector,
    settings: Mapping[str, Any],
    path: Path,
    resume: bool,
    threads: int,
    after_item: Callable[[], None] | None = None,
) -> MethodResult:
    """Evolve, answer and judge ``items`` with ``program`` under ``lm``; resumable through ``path``.

    Each finished item is one JSONL line: its id, position, outcome, seconds and LM usage per role
    since the previous line (so the lines add up to the evaluation's wall time and usage).
    ``after_item`` is called after each line is written (to commit the records, say).
    """
    method_fingerprint = str(getattr(program, "fingerprint", "") or fingerprint(str(program)))
    log = ItemLog(path, resume=resume)
    keys = [item_key(settings, method_fingerprint, item.instruction) for item in items]
    todo = [(index, item) for index, item in enumerate(items) if keys[index] not in log.lines]
    progress = Progress(label, len(items), already=len(items) - len(todo))
    marks = {"clock": time.monotonic(), "usage": role_usage(session)}
    lock = threading.Lock()

    def run(task: tuple[int, SeedItem]) -> None:
        index, item = task
        outcome = _safe_evaluate(item.instruction, program, responder, detector)
        with lock:
            clock, usage = time.monotonic(), role_usage(session)
            line = {"key": keys[index], "method": key, "index": index, "id": item.id,
                    "outcome": outcome.model_dump(mode="json"), "seconds": round(clock - marks["clock"], 3),
                    "usage": usage_delta(usage, marks["usage"])}
            marks.update(clock=clock, usage=usage)
            log.append(line)
            progress.advance()  # here, not as run_in_threads' on_done: that one reports once at the end
            if after_item is not None:
                after_item()

    with dspy.context(lm=lm):
        run_in_threads(run, todo, threads)
    return _result(key, label, method_fingerprint, [log.lines[k] for k in keys], path, len(items) - len(todo))


def _safe_evaluate(text: str, program: Any, responder: Any, detector: FailureDetector) -> ItemOutcome:
    try:
        return evaluate_item(text, program, responder=responder, detector=detector)
    except BudgetExceeded:
        raise
    except Exception as error:  # a detector or adapter fault fails the item, not the benchmark
        return ItemOutcome(original=text, verdict=Verdict.failure(LM_ERROR, describe_error(error)))


def _result(key: str, label: str, method_fingerprint: str, lines: list[dict[str, Any]], path: Path,
            reused: int) -> MethodResult:
    verdicts = [line["outcome"]["verdict"] for line in lines]
    flags = [bool(v["failed"]) for v in verdicts]
    by_rule = Counter(str(v.get("rule") or "unknown") for v in verdicts if v["failed"])
    usage: Usage = {}
    for line in lines:
        add_usage(usage, line.get("usage") or {})
    return MethodResult(
        key=key, label=label, fingerprint=method_fingerprint, failure_rate=sum(flags) / len(flags) if flags else 0.0,
        failed=sum(flags), items=len(flags), by_rule=dict(by_rule.most_common()),
        seconds=round(sum(float(line.get("seconds") or 0.0) for line in lines), 1), usage=usage, reused=reused,
        outcomes_file=str(path), failed_flags=flags,
    )


class StageReporter:
    """The compile's progress on stderr: ``step N stage: done/total`` with the stage's ETA.

    ``after_progress`` is called after each report (to commit the run's records, say).
    """

    def __init__(self, after_progress: Callable[[], None] | None = None) -> None:
        self._after = after_progress
        self._stage: tuple[int, str] | None = None
        self._started = time.monotonic()
        self._last: tuple[int, int] | None = None

    def __call__(self, event: Any) -> None:
        stage = (event.step, event.stage)
        if stage != self._stage:
            self._stage, self._started, self._last = stage, time.monotonic(), None
        if (event.done, event.total) == self._last or event.total == 0:
            return
        self._last = (event.done, event.total)
        elapsed = time.monotonic() - self._started
        eta = format_seconds(elapsed / event.done * (event.total - event.done)) if event.done else "-"
        step = "starting method" if event.step == 0 else f"step {event.step}"
        print(f"[compile {step}: {event.stage}] {event.done}/{event.total}, elapsed {format_seconds(elapsed)}, "
              f"ETA {eta}", file=sys.stderr, flush=True)
        if self._after is not None:
            self._after()
