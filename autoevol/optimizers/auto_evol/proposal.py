"""Candidate proposal: the optimizer LLM analyses a trajectory and proposes an improved method.

One candidate of a step comes from one analysis of the trajectory (which cases failed, and why)
and one proposal written from that feedback. A proposal is either a whole rewritten method (the
paper's way, ``mode="rewrite"``) or a small edit, one or two general rules or one revised step,
that the program applies to the current method (``mode="edit"``, see
:mod:`autoevol.optimizers.auto_evol.method_edit`), so the candidate always differs from the current method
and stays a general procedure. An edit adds rules (at the end, or into the step they concern),
revises a step, or replaces or deletes a sentence, so a method can also shrink.

What the optimizer reads is shaped for small LMs: the trajectory as plain text blocks, failed
cases first (:func:`trajectory_view`), and beside the feedback the dev failures by rule, the
earlier changes (:func:`analysis_context`) and the method's length against its word budget
(:func:`proposal_context`).

A proposal that is not a usable method (identical to the current one, too short or too long, a
format placeholder, field markers, wording copied from a trajectory case or details of one case,
a step that repeats another step) is sampled again with a new rollout id, up to ``attempts``
times, before the candidate is given up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

import dspy
from dspy.utils.exceptions import AdapterParseError

from autoevol.lm.policy import BudgetExceeded, is_permanent
from autoevol.metrics.rate import describe_error
from autoevol.metrics.rules import STOP_WORDS
from autoevol.optimizers.auto_evol.method_edit import WORD, Edit, apply_edit, repeated_step, rule_target
from autoevol.optimizers.auto_evol.records import CandidateRecord, MethodScore, StepRecord, TrajectoryCase
from autoevol.metrics._text import normalize
from autoevol.programs.demonstration import Candidate, demo_keys
from autoevol.records import fingerprint
from autoevol.signatures.analyze import AnalyzeTrajectory, TrajectoryIssue
from autoevol.signatures.optimize import OptimizeMethod, ProposeMethodEdit
from autoevol.threads import run_in_threads

logger = logging.getLogger(__name__)

ProposalMode = Literal["edit", "rewrite"]

#: A proposed method shorter than this many words is not a method.
MIN_METHOD_WORDS = 5
#: A proposed rule shorter than this many words is not a rule.
MIN_RULE_WORDS = 3
#: The words of a typical one-sentence rule, to tell a proposal how many more fit the budget.
RULE_WORDS = 12
#: A copied run of this many words from a trajectory case marks a method tied to that case.
COPIED_RUN_WORDS = 6
#: A new sentence with this many content words found in one trajectory case only (and not in the
#: current method) names that case's details ("ensure that the brackets are balanced").
CASE_DETAIL_WORDS = 2
#: Content words, for the case-detail check, are at least this long.
CONTENT_WORD_LETTERS = 4
#: The default method-length budget, in words, chosen for small evol LMs. e_0 has 176 words, a
#: classic Evol-Instruct operation about 75; a rule is 10 to 15. With Qwen2.5-Coder-1.5B as the
#: evol LM the short operations failed less than e_0 (47.5% against 75% of 40 Self-Instruct
#: tasks, 62.5% against 75% on HumanEval), and e_0 with four hand-written rules failed as often
#: as e_0 alone (65% of 20 GSM8K-style problems): on a small evol LM, more method text does not
#: buy fewer failures. 250 words leave e_0 room for five or six rules; past that, an edit has to
#: replace or delete a sentence to add one (the oldest rules under the heading give way first),
#: which also keeps the method from the growth the paper saw hurt after about 12 steps.
DEFAULT_MAX_METHOD_WORDS = 250

#: Earlier candidates shown to an analysis (the most recent ones).
EARLIER_TRIES = 8

_PLACEHOLDER = re.compile(r"\{\s*[A-Za-z_][\w ]*\}|<\s*(?:improved|current|new)[_ ]\w*\s*>|\bimproved_method\b"
                          r"|\bcurrent_method\b|\[\[ ##")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


class MethodProposer:
    """Analyses a trajectory and proposes one candidate method per call of :meth:`propose`.

    Args:
        mode: ``"edit"`` (rules or a revised step applied to the method) or ``"rewrite"``.
        attempts: proposals sampled per candidate before it is given up.
        max_method_words: the method-length budget; an edit over it drops its oldest added
            rules, a rewrite over it is rejected.
        temperature, top_p: sampling of the optimizer LM.
        seed: seeds the rollout ids (replayable from the call cache).
    """

    def __init__(self, *, mode: ProposalMode, attempts: int, max_method_words: int, temperature: float,
                 top_p: float, seed: int) -> None:
        self.mode, self.attempts, self.max_method_words = mode, attempts, max_method_words
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.analyze = dspy.Predict(AnalyzeTrajectory)
        self.rewrite = dspy.Predict(OptimizeMethod)
        self.edit = dspy.Predict(ProposeMethodEdit)

    def propose(self, index: int, incumbent: Candidate, cases: Sequence[TrajectoryCase], context: str,
                step: int) -> CandidateRecord:
        """Candidate ``index`` of ``step``: analysis, then up to ``attempts`` proposals of a method
        improving ``incumbent``'s (the candidate keeps its demonstrations).

        Runs under the optimizer LM (``dspy.context(lm=...)``). A transient LM fault or an
        unusable proposal costs an attempt; a permanent LM error and ``BudgetExceeded`` propagate.
        """
        record = CandidateRecord(index=index)
        method = incumbent.method
        trajectory = trajectory_view(cases)
        rejected: list[str] = []  # every attempt's problem, in order
        refused: list[str] = []  # the problems of this candidate's proposals, shown to the next one
        for attempt in range(self.attempts):
            config = self._config(step, index, attempt)
            if not record.feedback and not record.issues:
                problem = self._analyse(record, method, trajectory, context, config)
                if problem:
                    rejected.append(problem)
                    continue
            text, edit, problem = self._proposal(method, feedback_text(record.issues, record.feedback),
                                                 proposal_context(context, method, self.max_method_words, refused),
                                                 config)
            problem = problem or method_problem(text, method, cases, self.max_method_words)
            if problem is None:
                record.candidate = Candidate(method=text, demos=incumbent.demos)
                record.change = edit.describe() if edit is not None else "rewrote the method"
                record.attempts, record.rejected = attempt + 1, rejected
                return record
            rejected.append(problem)
            refused.append(problem)
            # the last unusable proposal, kept to inspect; an edit that could not be applied left the
            # current method as it was, which is not a proposal of its own
            record.candidate = Candidate(method=text, demos=incumbent.demos) if text and text != method else None
        record.attempts, record.rejected = self.attempts, rejected
        record.invalid_reason = rejected[-1] if rejected else "no proposal"
        logger.info("candidate %d is invalid after %d attempt(s): %s", index, self.attempts, record.invalid_reason)
        return record

    def propose_all(self, count: int, incumbent: Candidate, cases: Sequence[TrajectoryCase], context: str,
                    step: int, *, num_threads: int, on_done: Callable[[int], None] | None = None,
                    ) -> list[CandidateRecord]:
        """Candidates ``1..count`` of ``step`` (m analyses of S_t, each with its proposal), in threads.

        Runs under the optimizer LM, like :meth:`propose`; every candidate carries the incumbent's
        demonstrations (a method candidate changes the method only).
        """
        def propose(index: int) -> CandidateRecord:
            return self.propose(index, incumbent, cases, context, step)

        return run_in_threads(propose, range(1, count + 1), num_threads, on_done)

    def _config(self, step: int, index: int, attempt: int) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p,
                "rollout_id": rollout_id(self.seed, step, index, attempt)}

    def _analyse(self, record: CandidateRecord, method: str, trajectory: str, context: str,
                 config: dict[str, Any]) -> str | None:
        """Fill ``record.issues`` and ``record.feedback``; returns a problem, or ``None``.

        When the structured issue list does not parse, the free text of the reply is kept as the
        feedback (``record.issues_unparsed``).
        """
        try:
            analysis = self.analyze(method=method, trajectory=trajectory, context=context, config=config)
        except AdapterParseError as error:
            record.feedback = free_text_feedback(error.lm_response)
            record.issues_unparsed = True
            return None if record.feedback else "the trajectory analysis gave no readable feedback"
        except Exception as error:
            _reraise_if_fatal(error)
            return f"the trajectory analysis failed: {describe_error(error)}"
        record.issues = list(analysis.issues or [])
        record.feedback = str(analysis.feedback or "").strip()
        if not record.issues and not record.feedback:
            return "the trajectory analysis was empty"
        return None

    def _proposal(self, method: str, feedback: str, context: str,
                  config: dict[str, Any]) -> tuple[str, Edit | None, str | None]:
        """One proposal: ``(candidate text, the edit or None, problem or None)``."""
        try:
            if self.mode == "rewrite":
                return clean_method(self.rewrite(current_method=method, feedback=feedback, context=context,
                                                 config=config).improved_method), None, None
            reply = self.edit(current_method=method, feedback=feedback, context=context, config=config)
        except Exception as error:
            _reraise_if_fatal(error)
            return "", None, f"the method {self.mode} failed: {describe_error(error)}"
        return apply_edit(method, edit_from_reply(reply), self.max_method_words)


def rollout_id(seed: int, step: int, index: int, attempt: int = 0) -> int:
    """A distinct, replayable rollout id per (seed, step, candidate, attempt)."""
    key = f"{seed}:{step}:{index}" + (f":{attempt}" if attempt else "")
    return int(fingerprint(key), 16) % (2**31)


# ---------------------------------------------------------------------------------- what the optimizer reads


def failing_first(cases: Sequence[TrajectoryCase]) -> list[TrajectoryCase]:
    """The cases with the failed ones first, each group in its mini-batch order."""
    return sorted(cases, key=lambda case: not case.failed)


def trajectory_view(cases: Sequence[TrajectoryCase]) -> str:
    """The trajectory as the analysis reads it: a count of the failed cases, then one plain text
    block per case (:meth:`TrajectoryCase.for_analysis`), failed cases first.

    The mini-batch is the paper's: ``batch_size`` items drawn from the pool, every one evolved and
    shown; only the order changes, so a small optimizer LM meets the failures before anything else.
    """
    failed = [case.case_id for case in cases if case.failed]
    count = f"{len(failed)} of {len(cases)} cases failed" + (f": cases {', '.join(failed)}." if failed else ".")
    return "\n\n".join([count, *(case.for_analysis() for case in failing_first(cases))])


def analysis_context(incumbent: MethodScore, history: Sequence[StepRecord]) -> str:
    """What an analysis reads beside the trajectory: the dev failures by rule, and earlier tries."""
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(incumbent.by_rule.items(), key=lambda kv: -kv[1]))
    lines = [f"On the development set the current method fails {incumbent.failed} of {incumbent.evaluated} "
             f"items" + (f" (by rule: {rules})." if rules else ".")]
    tries = [(record.step, candidate) for record in history for candidate in record.candidates
             if not candidate.invalid and candidate.score is not None and candidate.kind == "method"][-EARLIER_TRIES:]
    if tries:
        lines.append("Earlier changes and the failure rate they reached (lower is better):")
        for step, candidate in tries:
            rate = 100 * candidate.score.failure_rate  # type: ignore[union-attr]
            lines.append(f"- step {step}: {candidate.change or 'a rewrite'}: {rate:.0f}%")
    return "\n".join(lines)


def proposal_context(context: str, method: str, max_words: int, refused: Sequence[str] = ()) -> str:
    """What a proposal reads beside the feedback: the analysis context (the dev failures by rule
    and the earlier changes), the method's length against its budget, and why this candidate's
    earlier proposals were refused (a small optimizer LM otherwise proposes the same again)."""
    words = len(method.split())
    rules = (max_words - words) // RULE_WORDS
    room = (f"room for about {rules} more one-sentence rule{'s' if rules > 1 else ''}" if rules > 0
            else "full: replace or delete a sentence to make room for anything new")
    text = f"{context}\nThe method has {words} words; its budget is {max_words} words ({room})."
    if refused:
        reasons = "\n".join(f"- {reason}" for reason in dict.fromkeys(refused))
        text += (f"\nRefused proposals for this change, do not propose them again:\n{reasons}\n"
                 "Write a change that holds for any instruction of this kind, in words of your own.")
    return text


def edit_from_reply(reply: Any) -> Edit:
    """The :class:`Edit` an edit proposal's reply describes.

    Rules shorter than :data:`MIN_RULE_WORDS` (after a step label) are dropped; a new sentence
    without an old sentence to replace is one more rule.
    """
    rules = [clean_rule(rule) for rule in (reply.new_rules or [])]
    old, new = clean_method(reply.old_sentence), clean_rule(reply.new_sentence)
    if new and not old:
        rules.append(new)
        new = ""
    return Edit(rules=tuple(rule for rule in rules if len(rule_target(rule)[1].split()) >= MIN_RULE_WORDS),
                revised_step=clean_method(reply.revised_step), old_sentence=old, new_sentence=new)


def feedback_text(issues: Sequence[TrajectoryIssue], feedback: str) -> str:
    """The analysis as the proposal reads it: the failed cases, then the suggested changes."""
    lines = [f"- case {issue.case_id} ({issue.category}): {issue.reason}" for issue in issues]
    found = "Failed cases:\n" + "\n".join(lines) if lines else "Failed cases: (not listed)"
    return f"{found}\n\nWhat to change:\n{feedback or '(no suggestion)'}"


def free_text_feedback(reply: Any) -> str:
    """The feedback part of an analysis reply whose issue list did not parse (or the whole reply)."""
    text = str(reply or "").strip()
    marker = re.search(r"\[\[ ## feedback ## \]\]|\"feedback\"\s*:", text)
    if marker:
        text = text[marker.end():]
    text = re.sub(r"\[\[ ## \w+ ## \]\]", " ", text).strip().strip('"{},').strip()
    return text[:2000]


# ---------------------------------------------------------------------------------- validity


def clean_method(text: Any) -> str:
    """A proposed method without surrounding whitespace, code fences or quotes."""
    method = str(text or "").strip()
    if method.startswith("```") and method.endswith("```") and len(method) > 6:
        method = method[3:-3].strip()
        first, _, rest = method.partition("\n")
        if rest and first.strip().isalpha() and len(first.split()) == 1:  # a language tag
            method = rest.strip()
    if len(method) >= 2 and method[0] == method[-1] and method[0] in "\"'":
        method = method[1:-1].strip()
    return method


def clean_rule(text: Any) -> str:
    """One proposed rule as a plain sentence (bullets and numbering removed)."""
    return _BULLET.sub("", clean_method(text)).strip()


def method_problem(text: str, current: str, cases: Sequence[TrajectoryCase] = (),
                   max_words: int | None = None) -> str | None:
    """Why a proposed method is not a usable candidate, or ``None``.

    Over ``max_words`` a proposal is refused only when it is also longer than the current method:
    a method that starts over the budget (a warm start from an evolver compiled with a larger
    one) can still be reworded and shortened.
    """
    if not text:
        return "the optimizer gave no method"
    placeholder = _PLACEHOLDER.search(text)
    if placeholder and not _PLACEHOLDER.search(current):
        return f"the proposed method contains a format placeholder or field marker: {placeholder.group(0)!r}"
    words = len(text.split())
    if words < MIN_METHOD_WORDS:
        return f"the proposed method is too short ({words} words)"
    if max_words is not None and words > max_words and words > len(current.split()):
        return f"the proposed method has {words} words, over the budget of {max_words}"
    if normalize(text) == normalize(current):
        return "the proposed method is identical to the current one"
    return copied_case_wording(text, current, cases) or case_details(text, current, cases) or repeated_step(text, current)


def copied_case_wording(text: str, current: str, cases: Sequence[TrajectoryCase]) -> str | None:
    """A run of words the proposal copied from a trajectory case (and the current method lacks)."""
    known = _runs(current)
    proposed = _runs(text)
    for case in cases:
        for stage in case.stages:
            shared = (_runs(stage) & proposed) - known
            if shared:
                return f"the proposed method copies wording from case {case.case_id}: {' '.join(min(shared))!r}"
    return None


def case_details(text: str, current: str, cases: Sequence[TrajectoryCase]) -> str | None:
    """A new sentence of the proposal that names details of one trajectory case, or ``None``.

    Small optimizer LMs paraphrase a case into what should be a general method ("Add constraints
    to ensure that the brackets are balanced"). A sentence counts when at least
    :data:`CASE_DETAIL_WORDS` of its content words appear in one case's stages, in no other case
    and not in the current method; words the whole batch shares are the domain's, not a case's.
    """
    known = _distinctive_words(current)
    per_case = [_distinctive_words(" ".join(case.stages)) - known for case in cases]
    specific = [words.difference(*per_case[:position], *per_case[position + 1:])
                for position, words in enumerate(per_case)]
    old_lines = {normalize(line) for line in current.splitlines()}
    for line in text.splitlines():
        if normalize(line) in old_lines:
            continue
        for sentence in _SENTENCE_END.split(line):
            words = _distinctive_words(sentence)
            for case, only_there in zip(cases, specific):
                named = sorted(words & only_there)
                if len(named) >= CASE_DETAIL_WORDS:
                    return (f"the proposed method names details of case {case.case_id} ({', '.join(named)}): "
                            f"{_BULLET.sub('', sentence).strip()[:120]!r}")
    return None


def _distinctive_words(text: str) -> set[str]:
    return {word for word in WORD.findall(text.casefold())
            if len(word) >= CONTENT_WORD_LETTERS and word not in STOP_WORDS}


def _runs(text: str) -> set[tuple[str, ...]]:
    words = WORD.findall(text.casefold())
    return {tuple(words[i:i + COPIED_RUN_WORDS]) for i in range(len(words) - COPIED_RUN_WORDS + 1)}


def _reraise_if_fatal(error: Exception) -> None:
    """A budget stop or a permanent LM error ends the compile; anything else costs an attempt."""
    if isinstance(error, BudgetExceeded) or is_permanent(error):
        raise error


def mark_duplicates(candidates: Sequence[CandidateRecord]) -> None:
    """Mark every candidate whose method and demonstrations repeat an earlier candidate's as invalid."""
    first: dict[tuple[str, frozenset[str]], int] = {}
    for record in candidates:
        if record.invalid or record.candidate is None:
            continue
        key = (normalize(record.candidate.method), demo_keys(record.candidate.demos))
        if key in first:
            what = "method" if record.kind == "method" else "demonstrations"
            record.invalid_reason = f"the same {what} as candidate {first[key]}"
        else:
            first[key] = record.index
