"""benchmarks/selection.py: one row per world and dev size, from real compiles in scripted worlds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import selection  # noqa: E402


def table_rows(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith("| ") and not line.startswith("| world")]


def test_each_dev_size_gets_a_null_and_a_better_row_with_the_confirmation_at_the_dev_size(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["selection.py", "--seeds", "2", "--flips", "1", "--candidates", "3",
                                      "--steps", "1", "--threads", "1", "--dev-sizes", "10", "30"])
    selection.main()
    output = capsys.readouterr().out
    assert "confirmation the dev size" in output
    rows = table_rows(output)
    assert [(row[0].split()[0], row[2]) for row in rows] == [("null", "10"), ("one", "10"), ("null", "30"),
                                                             ("one", "30")]
    for row in rows:
        compiles, claimed, truly, chosen = (int(cell) for cell in row[3:7])
        assert compiles == 2 and truly <= claimed <= compiles and truly <= chosen
        if row[0] == "null":
            assert truly == chosen == 0  # nothing in the null world is truly better
    # a larger dev (and confirmation) set costs more evol calls in the same world
    assert float(rows[2][8]) > float(rows[0][8])


def test_raced_starts_are_measured_in_the_world(capsys, monkeypatch):
    argv = ["selection.py", "--seeds", "1", "--flips", "1", "--candidates", "1", "--steps", "1", "--threads", "1",
            "--dev-sizes", "10"]
    monkeypatch.setattr(sys, "argv", argv)
    selection.main()
    without = table_rows(capsys.readouterr().out)
    monkeypatch.setattr(sys, "argv", [*argv, "--starts", "weak", "deepen"])
    selection.main()
    output = capsys.readouterr().out
    assert "2 starts raced" in output
    # each raced start is one more measurement of the dev set
    assert float(table_rows(output)[0][8]) > float(without[0][8])
