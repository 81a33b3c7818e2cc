"""benchmarks/rejudge.py: recorded outcomes judged again by today's cheap rules, without an LM."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import rejudge  # noqa: E402

STUB = 'def double(x):\n    """Return twice x.\n    >>> double(2)\n    4\n    """\n'
HARDER = ('def double(x):\n    """Return twice x; raise TypeError for a value that is not a number.\n'
          '    >>> double(2)\n    4\n    """\n')
ANSWER = "```python\ndef double(x):\n    return 2 * x\n```"
IMPLEMENTED = "def double(x):\n    # twice x\n    result = x * 2\n    return result\n"


def line(item_id: str, evolved: str | None, answer: str | None, failed: bool, rule: str | None) -> str:
    outcome = {"original": STUB, "evolved": evolved, "answer": answer,
               "verdict": {"failed": failed, "rule": rule, "reason": ""}}
    return json.dumps({"key": "k", "method": "e0", "index": 0, "id": item_id, "outcome": outcome}) + "\n"


def test_changed_verdicts_are_counted_and_lm_verdicts_kept(tmp_path, capsys):
    (tmp_path / "quality.e0.items.jsonl").write_text(
        line("kept-as-is", HARDER, ANSWER, False, None)
        + line("implemented", IMPLEMENTED, ANSWER, False, None)  # recorded before the stub rule: now failed
        + line("judged", HARDER, ANSWER, True, "judge_not_harder")  # an LM's verdict: kept
        + line("never-answered", HARDER, None, True, "truncated")  # passes the evolution rules now: kept
        + line("lm-error", None, None, True, "lm_error"))
    rejudge.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| quality.e0.items.jsonl | 2 | 3 | 0 | 1 | 1 |" in out
    assert "implemented: passed -> answers_instead" in out
    rejudge.main([str(tmp_path), "--disable-rule", "answers_instead", "--results-md", str(tmp_path / "R.md")])
    assert "| quality.e0.items.jsonl | 2 | 3 | 0 | 0 | 0 |" in capsys.readouterr().out
    assert f"<!-- begin rejudge-{tmp_path.name} -->" in (tmp_path / "R.md").read_text()


def test_a_folder_without_records_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no \\*.items.jsonl file"):
        rejudge.main([str(tmp_path)])
