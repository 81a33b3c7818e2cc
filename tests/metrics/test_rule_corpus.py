"""The cheap failure rules against a written corpus of realistic evolutions.

``corpus/good.jsonl`` holds harder rewrites of math, code and chat instructions with complete
chat-model answers (markdown, code fences, "Sure! Here's ...", closing offers): no rule may fire
on any of them. ``corpus/bad.jsonl`` holds failed evolutions, each with the rule that must decide
it (``expected_rule``) when the default detector runs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from autoevol.metrics.failure import BUILTIN_RULES, DEFAULT_RULES, FailureDetector
from autoevol.records import Verdict

CORPUS = Path(__file__).parent / "corpus"
DOMAINS = ("math", "code", "chat")


def _load(name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(id, row)`` for every row of a corpus file; the id names the file, line and kind of row."""
    rows = []
    lines = (CORPUS / name).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if line.strip():
            row = json.loads(line)
            kind = "-".join(filter(None, (row.get("expected_rule"), row["domain"])))
            rows.append((f"{Path(name).stem}:{number}-{kind}", row))
    return rows


GOOD = _load("good.jsonl")
BAD = _load("bad.jsonl")


def test_corpus_covers_every_domain_and_rule() -> None:
    domains = Counter(row["domain"] for _, row in GOOD)
    assert all(domains[domain] >= 25 for domain in DOMAINS), domains
    assert sum(domains.values()) >= 100
    expected = Counter(row["expected_rule"] for _, row in BAD)
    assert set(expected) == set(DEFAULT_RULES)
    assert all(count >= 3 for count in expected.values()), expected
    for _, row in GOOD + BAD:
        assert row["domain"] in DOMAINS
        assert isinstance(row["original"], str) and isinstance(row["evolved"], str)


@pytest.mark.parametrize("row", [row for _, row in GOOD], ids=[row_id for row_id, _ in GOOD])
def test_no_rule_fires_on_a_good_evolution(row: dict[str, Any]) -> None:
    fired = {name: reason for name, rule in BUILTIN_RULES.items()
             if (reason := rule.check(row["original"], row["evolved"], row["response"]))}
    assert fired == {}
    assert FailureDetector().detect(row["original"], row["evolved"], row["response"]) == Verdict.passed()


@pytest.mark.parametrize("row", [row for _, row in BAD], ids=[row_id for row_id, _ in BAD])
def test_a_bad_evolution_is_decided_by_its_rule(row: dict[str, Any]) -> None:
    verdict = FailureDetector().detect(row["original"], row["evolved"], row["response"])
    assert (verdict.failed, verdict.rule) == (True, row["expected_rule"]), verdict.reason
    assert verdict.reason and "\n" not in verdict.reason and len(verdict.reason) < 200
