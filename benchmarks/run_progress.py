"""What a benchmark run folder holds so far, read from its records alone (no LM): a report of a run
that is still going, or that stopped and continues in another session.

For each compile run directory (``*.run``, written by ``quality.py`` or ``head_to_head.py``): the
start race (each starting method's failures, its paired counts against the student's method, the
p-value and the level it had to reach, and why racing dropped it), each step's candidates the same
way, the confirmation of the result on items no selection step saw, how many measurements its
log holds (``measurements.jsonl``: the phase under way shows there first), the LM calls and time
its records count over all its runs, and for GEPA its iterations and accepted candidates. For each per-item file
(``*.items.jsonl``): the items finished, failed, and the failures by rule.

    python benchmarks/head_to_head.py --name h2h-self-instruct --report --results-md benchmarks/RESULTS.md
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from quality_eval import format_seconds, read_lines


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _paired(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return "-"
    return (f"{comparison['reference_only']} / {comparison['challenger_only']} of {comparison['items']}, "
            f"p={comparison['p_value']:.3g} (needed <= {comparison['level']:.3g})")


def _score(score: dict[str, Any] | None) -> str:
    return "-" if not score else f"{score['failed']} / {score['evaluated']}"


def _label(candidate: dict[str, Any]) -> str:
    change = (candidate.get("change") or "").removeprefix("starting method: ")
    return change[:80] or f"candidate {candidate['index']}"


def _outcome(candidate: dict[str, Any], winner: int | None) -> str:
    if candidate.get("invalid_reason"):
        return f"invalid: {candidate['invalid_reason'][:100]}"
    if candidate["index"] == winner:
        return "**accepted**"
    return f"dropped: {candidate['dropped']}" if candidate.get("dropped") else "not accepted"


def _candidates_table(reference: str, candidates: list[dict[str, Any]], winner: int | None) -> list[str]:
    lines = [f"| candidate | failed / measured | items only the {reference} failed / only the candidate failed | outcome |",
             "|---|---:|---|---|"]
    lines += [f"| {_label(c)} | {_score(c.get('score'))} | {_paired(c.get('comparison'))} | {_outcome(c, winner)} |"
              for c in candidates]
    return lines


def compile_progress(run_dir: Path) -> list[str]:
    """The start race, the steps and the confirmation recorded in one compile run directory."""
    lines = [f"#### Compile `{run_dir.name}`", ""]
    header = _read(run_dir / "run.json") or {}
    settings = header.get("settings") or {}
    if settings:
        shown = ("dev_size", "confirm_size", "batch_size", "num_candidates", "max_steps", "patience", "starts")
        lines.append("settings: " + ", ".join(f"{key} {settings[key]}" for key in shown if key in settings))
        lines.append("")
    notes = "; ".join(note for note in (_logged(run_dir), _spent(run_dir), _gepa_search(run_dir)) if note)
    start = _read(run_dir / "start.json")
    if start is None:
        return lines + ["nothing recorded yet" + (f"; {notes}" if notes else "")]
    score = start["score"]
    lines.append(f"start: the student's method failed {_score(score)} dev items ({_rules(score.get('by_rule'))})")
    alternatives = start.get("alternatives") or []
    if alternatives:
        winner = start.get("winner")
        chosen = next((_label(c) for c in alternatives if c["index"] == winner), "the student's method (none supported)")
        lines += ["", f"start race ({len(alternatives)} starting methods, chosen: **{chosen}**):", ""]
        lines += _candidates_table("student", alternatives, winner)
    for step_file in sorted((run_dir / "steps").glob("step-*.json")):
        step = _read(step_file)
        if step is None:
            continue
        incumbent = step["incumbent"]
        lines += ["", f"step {step['step']}: incumbent failed {_score(incumbent)} ({_rules(incumbent.get('by_rule'))}); "
                      f"{step.get('tried', '?')} candidates tried so far", ""]
        lines += _candidates_table("incumbent", step["candidates"], step.get("winner"))
    confirmation = _read(run_dir / "confirmation.json")
    if confirmation is not None:
        comparison = confirmation.get("comparison", confirmation)
        held = "held" if confirmation.get("supported", comparison.get("supported")) else "did not hold"
        lines += ["", f"confirmation on items no selection step saw: start only / result only "
                      f"{_paired(comparison)}: the gain **{held}**"]
    return lines + (["", notes[0].upper() + notes[1:]] if notes else [])


def _logged(run_dir: Path) -> str:
    """How many measurements the compile has logged, the phase under way included ("" when none)."""
    path = run_dir / "measurements.jsonl"
    counts = Counter(line.get("split") for line in read_lines(path)) if path.is_file() else Counter()
    if not counts:
        return ""
    return "measurements logged so far (the phase under way included): " + \
        ", ".join(f"{split} {counts[split]}" for split in ("dev", "confirm") if counts[split])


def _spent(run_dir: Path) -> str:
    """The LM calls and time the compile's records count, over all its runs and the phase under way
    ("" when none): GEPA's spending record, or Auto Evol-Instruct's phase records and spending."""
    gepa = _read(run_dir / "gepa-lm-calls.json")
    if gepa is not None:
        records = [gepa]
    else:
        files = [run_dir / "start.json", *sorted((run_dir / "steps").glob("step-*.json")),
                 *sorted((run_dir / "spending").glob("*.json"))]
        records = [record for record in map(_read, files) if record]
    calls: Counter[str] = Counter()
    for record in records:
        for usage in record.get("usage") or []:
            calls[usage["role"]] += int(usage.get("calls", 0))
    if not calls:
        return ""
    seconds = sum(float(record.get("seconds") or 0) for record in records)
    return (f"LM calls so far: {sum(calls.values())} ({', '.join(f'{role} {n}' for role, n in calls.items())}), "
            f"recorded time {format_seconds(seconds)}")


def _gepa_search(run_dir: Path) -> str:
    """GEPA's iterations and accepted candidates so far, from its saved state's logs ("" for other compiles)."""
    iterations = _read(run_dir / "gepa" / "run_log.json")
    candidates = _read(run_dir / "gepa" / "candidates.json")
    if not isinstance(iterations, list) or not isinstance(candidates, list):
        return ""
    return f"GEPA: {len(iterations)} iterations, candidates accepted so far: {len(candidates) - 1}"


def _rules(by_rule: dict[str, int] | None) -> str:
    return ", ".join(f"{rule} {count}" for rule, count in sorted((by_rule or {}).items(), key=lambda kv: -kv[1])) or "-"


def items_progress(files: list[Path], planned: int | None) -> list[str]:
    """Items finished, failed and failures by rule of each per-item file."""
    lines = ["| items file | finished | failed | failure rate | failures by rule |", "|---|---:|---:|---:|---|"]
    for path in files:
        verdicts = [line["outcome"]["verdict"] for line in read_lines(path) if "outcome" in line]
        failed = [v for v in verdicts if v.get("failed")]
        rules = Counter(str(v.get("rule") or "unknown") for v in failed)
        done = f"{len(verdicts)}" + (f" of {planned}" if planned else "")
        rate = f"{len(failed) / len(verdicts):.1%}" if verdicts else "-"
        lines.append(f"| {path.name} | {done} | {len(failed)} | {rate} | {_rules(dict(rules))} |")
    return lines


def run_progress(folder: Path, planned_items: int | None = None) -> str:
    """The markdown report of everything finished in a benchmark run folder."""
    if not folder.is_dir():
        raise SystemExit(f"error: no run folder {folder}")
    lines: list[str] = []
    for run_dir in sorted(path for path in folder.glob("*.run") if path.is_dir()):
        lines += compile_progress(run_dir) + [""]
    files = sorted(folder.glob("*.items.jsonl"))
    if files:
        lines += ["#### Held-out items finished", ""] + items_progress(files, planned_items)
    return "\n".join(lines).strip() or "nothing recorded yet"
