"""Edits to an evolving method's text, and steps that repeat each other.

An edit proposal (:class:`Edit`) may add rules, at the end of the method under
:data:`RULES_HEADING` or into the step a rule concerns ("Step 2: ..."), revise one step
("Step 3 - ..."), and replace or delete one sentence. :func:`apply_edit` applies what it can, so a
method can shrink or be reworded, not only grow. :func:`repeated_step` finds a step that repeats
another step of the same method, which a small optimizer LM writes now and then.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from autoevol.metrics._text import normalize

#: The heading under which edit proposals add their rules to a method.
RULES_HEADING = "Rules:"
#: A word of a method, as the overlap checks count words.
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
#: An old sentence (to replace or delete) shorter than this many words is too short to find
#: reliably: "do not" would match anywhere and turn an order into its opposite.
MIN_SENTENCE_WORDS = 3

logger = logging.getLogger(__name__)

_STEP_LABEL = re.compile(r"^\s*(step\s+\d+)\b", re.IGNORECASE)
#: A rule that names its step: "Step 2: ...", "Step 2 - Plan: ...", "In step 2, ...".
_RULE_TARGET = re.compile(r"^\s*(?:(?:in|into|to|for)\s+)?step\s+(\d+)(?:\s*[-\u2013\u2014]\s*\w+)?"
                          r"\s*[:.,)\-\u2013\u2014]\s*(?P<body>\S.*)$", re.IGNORECASE | re.DOTALL)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_TRAILING = ".!?;:,"


@dataclass(frozen=True)
class Edit:
    """A small change to a method: rules to add (a rule starting with a step label goes into that
    step), one revised step, and one sentence to replace (``new_sentence``) or delete (no
    ``new_sentence``)."""

    rules: tuple[str, ...] = ()
    revised_step: str = ""
    old_sentence: str = ""
    new_sentence: str = ""

    def describe(self) -> str:
        """The edit in one line, as later steps' analyses are told what was tried."""
        parts = []
        for rule in self.rules:
            label, body = rule_target(rule)
            parts.append(f"added to {label}: {body}" if label else f"added rule: {rule}")
        if self.revised_step:
            parts.append(f"revised {self.revised_step.splitlines()[0][:160]}")
        if self.old_sentence:
            parts.append(f"replaced {_quoted(self.old_sentence)} with {_quoted(self.new_sentence)}"
                         if self.new_sentence else f"deleted {_quoted(self.old_sentence)}")
        return "; ".join(parts)


class AppliedEdit(NamedTuple):
    """What :func:`apply_edit` made of an edit: the new method, the part of the edit that changed
    it, and why nothing could be applied (``None`` when something was)."""

    method: str
    applied: Edit
    problem: str | None


def rule_target(rule: str) -> tuple[str | None, str]:
    """``("Step N", rest)`` for a rule that names the step it belongs to, else ``(None, rule)``."""
    found = _RULE_TARGET.match(rule)
    if not found:
        return None, rule.strip()
    return f"Step {int(found.group(1))}", found.group("body").strip()


def apply_edit(method: str, edit: Edit, max_words: int) -> AppliedEdit:
    """``method`` with ``edit`` applied, each part that can be.

    In order: a revised step replaces the step with the same label; the old sentence (found word
    for word, case and spacing aside, exactly once) is replaced by the new one, or deleted when
    there is no new one (then it must be a whole sentence); a rule naming a step the method has
    ends that step, any other rule is added under :data:`RULES_HEADING` at the end. A part that
    cannot be applied (no step label, a label the method lacks, a repeated step, an old sentence
    not found or found twice, a change that would remove a step label) is skipped and logged;
    rules already in the method add nothing. When nothing is left to apply, the problems say
    why. When the result is over ``max_words``, the oldest rules under the heading are dropped
    until it fits (an edit that still does not fit is rejected by the budget check).
    """
    text, problems = method.strip(), []
    revised_step = old_sentence = new_sentence = ""
    if edit.revised_step:
        revised, problem = _replace_step(text, edit.revised_step)
        if problem is None:
            text, revised_step = revised, edit.revised_step
        problems += [problem] if problem else []
    if edit.old_sentence:
        changed, problem = _change_sentence(text, edit.old_sentence, edit.new_sentence)
        if problem is None:
            text, old_sentence, new_sentence = changed, edit.old_sentence, edit.new_sentence
        problems += [problem] if problem else []
    rules: list[str] = []
    added: list[str] = []
    for rule in edit.rules:
        label, body = rule_target(rule)
        said = normalize(body).rstrip(_TRAILING)
        if said in normalize(text) or said in {normalize(other).rstrip(_TRAILING) for other in added}:
            continue  # the method (or this edit) says so already
        into_step = _add_to_step(text, label, body) if label else None
        if into_step is not None:
            text = into_step
            rules.append(f"{label}: {body}")
        else:
            added.append(body)
            rules.append(body)
    applied = Edit(rules=tuple(rules), revised_step=revised_step, old_sentence=old_sentence, new_sentence=new_sentence)
    if applied == Edit():
        return AppliedEdit(method, applied, "; ".join(problems) or
                           "the edit changes nothing: no new rule, no revised step, no sentence replaced or deleted")
    for problem in problems:
        logger.info("edit proposal: %s; the rest of the edit is applied", problem)
    body, kept = _split_rules(text)
    kept += added
    while kept and len(_join_rules(body, kept).split()) > max_words and len(kept) > len(added):
        kept.pop(0)  # the oldest added rule goes first
    return AppliedEdit(_join_rules(body, kept), applied, None)


def _step_spans(lines: Sequence[str]) -> list[tuple[int, int]]:
    """The ``(first, past last)`` line numbers of each labelled step: from its label line to the
    next label line or blank line, so steps work both as paragraphs and one per line."""
    spans: list[tuple[int, int]] = []
    for number, line in enumerate(lines):
        if _STEP_LABEL.match(line):
            spans.append((number, number + 1))
        elif line.strip() and spans and spans[-1][1] == number:
            spans[-1] = (spans[-1][0], number + 1)
    return spans


def _span_text(lines: Sequence[str], span: tuple[int, int]) -> str:
    return "\n".join(lines[span[0]:span[1]])


def _steps(method: str) -> list[str]:
    """The labelled steps of ``method``, as :func:`_step_spans` finds them."""
    lines = method.splitlines()
    return [_span_text(lines, span) for span in _step_spans(lines)]


def _step_span(lines: Sequence[str], revised: str) -> tuple[int, int] | None:
    """Where among ``lines`` the step with the label of ``revised`` is, else ``None``."""
    label = _STEP_LABEL.match(revised)
    if not label:
        return None
    for span in _step_spans(lines):
        found = _STEP_LABEL.match(lines[span[0]])
        if found and normalize(found.group(1)) == normalize(label.group(1)):
            return span
    return None


def _replace_step(method: str, revised: str) -> tuple[str, str | None]:
    if not _STEP_LABEL.match(revised):
        return method, "the revised step does not start with a step label such as 'Step 2'"
    lines = method.splitlines()
    span = _step_span(lines, revised)
    if span is None:
        return method, f"the revised step names {_label(revised)!r}, which the method does not have"
    step = _one_step(revised)
    if normalize(_span_text(lines, span)) == normalize(step):
        return method, f"the revised {_label(revised)} is the method's {_label(revised)} unchanged"
    others = [_span_text(lines, other) for other in _step_spans(lines) if other != span]
    copied = _copied_step(step, others)
    if copied:
        return method, f"the revised {_label(revised)} repeats {copied} (the method would lose its own step)"
    return "\n".join([*lines[:span[0]], step, *lines[span[1]:]]), None


def _add_to_step(method: str, label: str, rule: str) -> str | None:
    """``method`` with ``rule`` as the last sentence of its step ``label``, or ``None`` when it has no such step."""
    lines = method.splitlines()
    span = _step_span(lines, label)
    if span is None:
        return None
    sentence = rule if rule.endswith((".", "!", "?")) else rule + "."
    lines[span[1] - 1] = lines[span[1] - 1].rstrip() + " " + sentence
    return "\n".join(lines)


def _change_sentence(method: str, old: str, new: str) -> tuple[str, str | None]:
    """``method`` with the one occurrence of ``old`` replaced by ``new`` (deleted when ``new`` is empty).

    ``old`` is found word for word, case and spacing aside, bullets and closing punctuation
    ignored; the method's own punctuation after it is kept. A deletion takes a whole sentence
    with its full stop (a part of a sentence would leave a broken one). A change that would
    remove a step label is refused: revising a step is the way to change its head.
    """
    words = _BULLET.sub("", old.strip()).rstrip(_TRAILING + " ").split()
    if len(words) < MIN_SENTENCE_WORDS:
        return method, f"the old sentence is too short to find ({len(words)} words): {_quoted(old)}"
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE)
    found = list(pattern.finditer(method))
    if not found:
        return method, f"the old sentence is not in the method: {_quoted(old)}"
    if len(found) > 1:
        return method, f"the old sentence occurs {len(found)} times in the method: {_quoted(old)}"
    start, end = found[0].span()
    if new.strip():
        replacement = new.strip()
        if method[end:end + 1] and method[end] in _TRAILING:
            replacement = replacement.rstrip(_TRAILING)
        if normalize(replacement) == normalize(method[start:end]):
            return method, "the new sentence is the old sentence unchanged"
        changed = method[:start] + replacement + method[end:]
    else:
        if not _starts_sentence(method[:start]) or not re.match(r"[.!?]?[ \t]*(?:\n|$)|[.!?]\s", method[end:]):
            return method, f"the sentence to delete is part of a sentence; copy the whole sentence: {_quoted(old)}"
        changed = _delete_span(method, start, end + (1 if method[end:end + 1] in ".!?" else 0))
    lost = [label for label in _labels(method) if label not in _labels(changed)]
    if lost:
        return method, f"the change would remove the label of {lost[0]}; revise the step instead"
    return changed, None


def _starts_sentence(before: str) -> bool:
    """Whether the text ``before`` a position ends where a sentence may start (a line start, a
    bullet, a full stop or a colon such as a step's head)."""
    line = before.rsplit("\n", 1)[-1].rstrip()
    return not line or bool(re.fullmatch(r"\s*(?:[-*\u2022]|\d+[.)])", line)) or line.endswith((".", "!", "?", ":"))


def _delete_span(method: str, start: int, end: int) -> str:
    """``method`` without ``method[start:end]``: spaces mended, a line left empty (or a bare
    bullet) removed, and a rules heading without rules removed."""
    before, after = method[:start].rstrip(" \t"), method[end:].lstrip(" \t")
    joiner = "" if not before or before.endswith("\n") or not after or after.startswith("\n") else " "
    lines = (before + joiner + after).split("\n")
    row = before.count("\n")
    if re.fullmatch(r"\s*(?:[-*\u2022]|\d+[.)])?\s*", lines[row]):
        del lines[row]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if text.endswith("\n\n" + RULES_HEADING):
        text = text[:-len(RULES_HEADING)].strip()
    return text


def _labels(method: str) -> list[str]:
    """The normalized step labels of ``method``, in order."""
    return [normalize(_label(line)) for line in method.splitlines() if _STEP_LABEL.match(line)]


def _quoted(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


#: Word overlap of two steps (shared words / words of either, labels aside) from which one repeats the other.
COPIED_STEP_OVERLAP = 0.8


def repeated_step(text: str, current: str = "") -> str | None:
    """Why ``text`` has a step that repeats an earlier one of its steps, or ``None``.

    A small optimizer LM sometimes writes one step's text again under the next step's label;
    the method would then do that step twice and drop the other. A repeat that ``current``
    already has is not the proposal's doing and is not held against it.
    """
    inherited = _repeats(current)
    for later, earlier in _repeats(text):
        if not any(_overlap(later, old_later) >= COPIED_STEP_OVERLAP
                   and _overlap(earlier, old_earlier) >= COPIED_STEP_OVERLAP for old_later, old_earlier in inherited):
            return (f"the proposed method's {_label(later)} repeats {_label(earlier)} "
                    "(the method would do one step twice and lose another)")
    return None


def _repeats(method: str) -> list[tuple[str, str]]:
    """Pairs ``(later step, earlier step it repeats)`` among the steps of ``method``."""
    steps = _steps(method)
    return [(later, earlier) for position, later in enumerate(steps) for earlier in steps[:position]
            if _overlap(later, earlier) >= COPIED_STEP_OVERLAP]


def _copied_step(step: str, others: Sequence[str]) -> str | None:
    """The label of another step that ``step`` repeats (apart from its label), else ``None``.

    A small optimizer LM revising "Step 3" sometimes writes Step 2's text under Step 3's label;
    applied, the method would do step 2 twice and never rewrite.
    """
    for other in others:
        if _overlap(step, other) >= COPIED_STEP_OVERLAP:
            return _label(other)
    return None


def _overlap(step: str, other: str) -> float:
    """Shared words over the words of either step, labels aside (0 when either has none)."""
    words, theirs = _step_words(step), _step_words(other)
    return len(words & theirs) / len(words | theirs) if words and theirs else 0.0


def _label(step: str) -> str:
    label = _STEP_LABEL.match(step)
    return " ".join(label.group(1).split()) if label else "a step"


def _step_words(step: str) -> set[str]:
    return set(WORD.findall(_STEP_LABEL.sub("", step.casefold(), count=1)))


def _one_step(revised: str) -> str:
    """The revised step alone, cut where a later step label begins.

    Small optimizer LMs often write the steps after the revised one too; pasting those in would
    repeat them in the method.
    """
    lines = revised.strip().splitlines()
    for position, line in enumerate(lines[1:], start=1):
        if _STEP_LABEL.match(line):
            return "\n".join(lines[:position]).strip()
    return revised.strip()


def _split_rules(method: str) -> tuple[str, list[str]]:
    head, marker, tail = method.rpartition("\n\n" + RULES_HEADING + "\n")
    if not marker:
        return method, []
    return head, [line[2:].strip() for line in tail.splitlines() if line.startswith("- ")]


def _join_rules(body: str, rules: Sequence[str]) -> str:
    if not rules:
        return body
    return body + "\n\n" + RULES_HEADING + "\n" + "\n".join(f"- {rule}" for rule in rules)
