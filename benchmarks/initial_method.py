"""e_0's wording on a small evol LM: evolution failures and where the output tokens go, per wording.

Every held-out item of the measurement seed sets (the split of ``quality.py``: the same seed, the
last ``--held-out`` items of the shuffle, so no compile of that benchmark saw them) is evolved once
with each wording of e_0, and the evolution rules judge the rewrite (no answer, no judge: the
failures e_0's wording is about, ``truncated``, ``complexity_decreased``, ``unchanged``, happen
there). The wordings of one item run one after the other, so a run stopped anywhere leaves paired
outcomes.

- ``2026-12-02``: e_0 as the quality runs of 2026-12-02 measured it (kept here verbatim);
- ``2026-12-06``: the first rewording, notes short and the rewrite written once (kept verbatim);
- ``2026-12-06b``: the second, which also asks to keep the original and add the planned requirements;
- ``current``: ``autoevol.INITIAL_METHOD`` with the evolving signature as it is now (when it is
  none of the above). ``--wordings`` picks some of them.

Each finished item is one JSON line in ``benchmarks/runs/NAME/`` (``--name``, default
``initial-method``; tracked in git), committed every ``--commit-every`` minutes and when the run
stops; a rerun skips the items already there, so an interrupted run continues on any machine.
``--budget-minutes`` stops the run cleanly (exit code 3), as in ``quality.py``.
``--report`` prints the tables from the lines alone, without an LM; ``--results-md FILE`` also
writes them into FILE's ``initial-method`` section (``benchmarks/RESULTS.md``, regenerated from the
records).

    python benchmarks/initial_method.py --lm local:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --budget-minutes 60
    python benchmarks/initial_method.py --report --results-md benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dspy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quality  # noqa: E402
import seeds  # noqa: E402
from quality_eval import ItemLog, format_seconds, read_lines, role_usage, usage_delta  # noqa: E402
from run_records import GitCheckpoint, replace_section  # noqa: E402

from autoevol.data import iter_items  # noqa: E402
from autoevol.lm import parse_spec  # noqa: E402
from autoevol.metrics.failure import FailureDetector  # noqa: E402
from autoevol.optimizers.auto_evol.roles import evol_answer_settings  # noqa: E402
from autoevol.optimizers.auto_evol.selection import compare  # noqa: E402
from autoevol.programs.evolver import Evolver  # noqa: E402
from autoevol.records import SeedItem, fingerprint  # noqa: E402

SECTION_TITLE = "## e_0's wording on a small evol LM (`benchmarks/initial_method.py`, issue 28 item 4)"
#: The paired difference between two wordings is reported with this one-sided sign-test level.
LEVEL = 0.05

#: e_0 and the notes field's description as the quality runs of 2026-12-02 measured them.
E0_2026_12_02 = """\
You turn an instruction into a harder version of itself. Work through four steps and write your \
work for steps 1 to 3 in the working notes.

Step 1 - Options: read the instruction carefully and list every way it could be made more complex: \
added constraints or requirements, deeper or broader questions, more concrete details, more \
reasoning steps, richer inputs. Never change the language the instruction is written in.

Step 2 - Plan: choose several options from your list that fit together and write a short plan for \
combining them.

Step 3 - Rewrite: carry out the plan. The rewritten instruction may add only about 10 to 20 words \
to the original and must stay a single instruction a person could answer.

Step 4 - Review: reread the rewrite, remove anything unreasonable or contradictory, and make sure \
it is only a more complex version of the original instruction, asking for the same kind of answer. \
Give the final rewritten instruction alone as the evolved instruction: do not answer it, and do \
not mention these steps."""
NOTES_2026_12_02 = "your work on the method's steps before the final rewrite"

#: e_0 of 2026-12-06 (commit 49e9786): short notes, the rewrite written once, everything of the original kept.
E0_2026_12_06 = """\
You turn an instruction into a harder version of itself in four steps. Keep the working notes \
short: the options of step 1 and the plan of step 2, a few words each. Write the rewrite only once, \
as the evolved instruction.

Step 1 - Options: list the ways the instruction could be made more complex: added constraints or \
requirements, deeper or broader questions, more concrete details, more reasoning steps, richer \
inputs. Never change the language the instruction is written in.

Step 2 - Plan: choose several options from your list that fit together and write a short plan for \
combining them.

Step 3 - Rewrite: carry out the plan. The rewritten instruction may add only about 10 to 20 words \
to the original and must stay a single instruction a person could answer. Everything the original \
contains stays in the rewrite, copied as it is: its task, inputs, examples, data, code and function \
signatures.

Step 4 - Review: compare the rewrite with the original: nothing of it may be missing, nothing may \
be unreasonable or contradictory, and it must ask for the same kind of answer. Give the final \
rewritten instruction alone as the evolved instruction: do not answer it, and do not mention these \
steps."""
NOTES_2026_12_06 = "short notes on the method's steps before the final rewrite (never the rewrite itself)"

#: The second rewording (commit d77cadd): the original kept and the planned requirements added to it.
E0_2026_12_06B = """\
You turn an instruction into a harder version of itself in four steps. Keep the working notes \
short: the options of step 1 and the plan of step 2, a few words each. Write the rewrite once, \
as the evolved instruction.

Step 1 - Options: list ways to make the instruction more complex: added constraints or \
requirements, deeper or broader questions, more concrete details, more reasoning steps, richer \
inputs. Never change the language the instruction is written in.

Step 2 - Plan: choose several options from your list that fit together and write a short plan for \
combining them.

Step 3 - Rewrite: carry out the plan. The rewritten instruction may add only about 10 to 20 words \
to the original and must stay a single instruction a person could answer. Keep everything the \
original contains (its task, inputs, examples, data, code and function signatures) and add the \
planned requirements to it.

Step 4 - Review: compare the rewrite with the original: nothing of it may be missing, the planned \
additions must be there, nothing may be unreasonable or contradictory, and it must ask for the \
same kind of answer. Give the final rewritten instruction alone as the evolved instruction: do not \
answer it, and do not mention these steps."""


def wordings() -> dict[str, Evolver]:
    """The measured wordings of e_0 by name, each an Evolver with its whole signature."""
    named = {"2026-12-02": (E0_2026_12_02, NOTES_2026_12_02), "2026-12-06": (E0_2026_12_06, NOTES_2026_12_06),
             "2026-12-06b": (E0_2026_12_06B, NOTES_2026_12_06)}
    evolvers = {}
    for name, (method, notes) in named.items():
        evolvers[name] = Evolver(method)
        evolvers[name].evolve.signature = evolvers[name].evolve.signature.with_updated_fields("working_notes",
                                                                                             desc=notes)
    current = Evolver()
    if all(signature_text(current) != signature_text(evolver) for evolver in evolvers.values()):
        evolvers["current"] = current
    return evolvers


def signature_text(evolver: Evolver) -> str:
    """What the evol LM is told: the method and every field's description."""
    fields = {name: field.json_schema_extra.get("desc") for name, field in evolver.evolve.signature.fields.items()}
    return json.dumps({"method": evolver.method, "fields": fields}, sort_keys=True)


def held_out_items(name: str, held_out: int, seed: int) -> list[SeedItem]:
    """The held-out items of seed set ``name`` in ``quality.py``'s split."""
    try:
        path = seeds.prepare(name)
    except seeds.SeedSetError as error:
        raise SystemExit(f"error: {error}") from None
    items = [item for item in iter_items(path) if item.problem is None]
    return quality.split(items, held_out, seed)[1]


def words(text: str | None) -> int:
    return len((text or "").split())


def measure(evolver: Evolver, item: SeedItem, detector: FailureDetector) -> dict[str, Any]:
    """Evolve ``item`` once and judge the rewrite by the evolution rules."""
    trajectory = evolver.trajectory(item.instruction, rounds=1, detector=detector)
    rewrite = trajectory.stages[1] if len(trajectory.stages) > 1 else None
    verdict = trajectory.verdict
    return {"failed": verdict.failed, "rule": verdict.rule if verdict.failed else None,
            "reason": (verdict.reason or "")[:200] if verdict.failed else None,
            "original_words": words(item.instruction),
            "notes_words": words(trajectory.notes[0] if trajectory.notes else None),
            "rewrite_words": words(rewrite)}


def run(args: argparse.Namespace, checkpoint: GitCheckpoint | None) -> None:
    """Evolve every held-out item with every wording, item by item, each wording in turn."""
    detector = FailureDetector(disable=args.disable_rule or ())
    available = wordings()
    unknown = sorted(set(args.wordings or ()) - set(available))
    if unknown:
        raise SystemExit(f"error: unknown wording(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    evolvers = {name: evolver for name, evolver in available.items() if name in (args.wordings or available)}
    records = quality.RUNS_DIR / args.name
    with quality.lm_session(args, concurrency=1) as session:
        lm = session.lm(args.lm, role="evol", api_base=args.api_base, max_tokens=args.max_tokens)
        quality.probe(lm, args.lm)
        settings = {"lm": parse_spec(args.lm).display_name, "max_tokens": args.max_tokens,
                    **evol_answer_settings(lm), "rules": detector.rule_ids}
        write_header(records, settings, args)
        for set_name in args.sets:
            items = held_out_items(set_name, args.held_out, args.seed)
            logs = {name: ItemLog(records / f"{set_name}.{name}.items.jsonl", resume=True) for name in evolvers}
            keys = {name: [line_key(settings, evolver, item) for item in items] for name, evolver in evolvers.items()}
            todo = sum(key not in logs[name].lines for name in evolvers for key in keys[name])
            print(f"{set_name}: {len(items)} held-out items x {len(evolvers)} wordings, {todo} evolutions to run",
                  file=sys.stderr, flush=True)
            done, started = 0, time.monotonic()
            for index, item in enumerate(items):
                for name, evolver in evolvers.items():
                    if keys[name][index] in logs[name].lines:
                        continue
                    before, clock = role_usage(session), time.monotonic()
                    with dspy.context(lm=lm):
                        line = measure(evolver, item, detector)
                    usage = usage_delta(role_usage(session), before).get("evol", {})
                    logs[name].append({"key": keys[name][index], "set": set_name, "wording": name, "index": index,
                                       "id": item.id, **line, "input_tokens": usage.get("input_tokens", 0),
                                       "output_tokens": usage.get("output_tokens", 0),
                                       "seconds": round(time.monotonic() - clock, 2)})
                    if checkpoint is not None:
                        checkpoint.due_commit()
                    done += 1
                    elapsed = time.monotonic() - started
                    print(f"[{set_name}] {done}/{todo} evolutions, elapsed {format_seconds(elapsed)}, "
                          f"ETA {format_seconds(elapsed / done * (todo - done))}", file=sys.stderr, flush=True)


def write_header(records: Path, settings: dict[str, Any], args: argparse.Namespace) -> None:
    """``run.json``: what every line of the folder was measured with (the LM, its cap, the rules, the split)."""
    records.mkdir(parents=True, exist_ok=True)
    header = {**settings, "held_out": args.held_out, "seed": args.seed}
    (records / "run.json").write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")


def line_key(settings: dict[str, Any], evolver: Evolver, item: SeedItem) -> str:
    """What decides one line's outcome, hashed: the settings, the whole signature, the item."""
    return fingerprint(json.dumps({"settings": settings, "signature": signature_text(evolver),
                                   "item": item.instruction}, sort_keys=True, ensure_ascii=False))


# ------------------------------------------------------------------------------ report


def report(runs_dir: Path) -> str:
    """Per seed set, each later wording against the first (2026-12-02) on the items both finished:
    failures by rule, lengths, output tokens and time, and the paired comparison."""
    by_set: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for line in (line for path in sorted(runs_dir.glob("*.items.jsonl")) for line in read_lines(path)):
        by_set.setdefault(line["set"], {}).setdefault(line["wording"], {})[line["id"]] = line
    header_file = runs_dir / "run.json"
    header = json.loads(header_file.read_text(encoding="utf-8")) if header_file.exists() else {}
    sections = [f"Evol LM {header.get('lm', '?')}, output cap {header.get('max_tokens', '?')} tokens, "
                f"{header.get('held_out', '?')} held-out items per set (split seed {header.get('seed', '?')})."]
    order = list(wordings())
    for set_name, by_wording in sorted(by_set.items()):
        names = [name for name in order if name in by_wording]
        for name in names[1:]:
            shared = sorted(set(by_wording[names[0]]) & set(by_wording[name]))
            if not shared:
                continue
            rows = ["| wording | failed / items | failures by rule | notes words / item | rewrite words / item "
                    "(original) | output tokens / item | seconds / item |", "|---|---:|---|---:|---:|---:|---:|"]
            rows += [_row(wording, [by_wording[wording][item] for item in shared]) for wording in (names[0], name)]
            paired = compare([by_wording[name][item]["failed"] for item in shared],
                             [by_wording[names[0]][item]["failed"] for item in shared], level=LEVEL)
            rows.append(f"\n{name} against {names[0]}: {paired.describe()}.")
            sections.append(f"### {set_name}: {name} against {names[0]}\n\n" + "\n".join(rows))
    return "\n\n".join(sections) if len(sections) > 1 else "no finished items"


def _row(wording: str, lines: list[dict[str, Any]]) -> str:
    """One wording's table row over ``lines``."""
    rules = Counter(line["rule"] for line in lines if line["failed"])

    def mean(key: str) -> float:
        return sum(float(line.get(key) or 0) for line in lines) / len(lines)

    return (f"| {wording} | {sum(line['failed'] for line in lines)} / {len(lines)} | "
            f"{', '.join(f'{rule} {count}' for rule, count in rules.most_common()) or '-'} | "
            f"{mean('notes_words'):.0f} | {mean('rewrite_words'):.0f} ({mean('original_words'):.0f}) | "
            f"{mean('output_tokens'):.0f} | {mean('seconds'):.1f} |")


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--lm", help="LM spec of the evol role: 'local:FILE.gguf' or a DSPy model")
    parse.add_argument("--api-base", default=None)
    parse.add_argument("--sets", nargs="+", choices=sorted(seeds.SEED_SETS), default=["humaneval", "self-instruct"])
    parse.add_argument("--wordings", nargs="+", default=None, help="the wordings to run (default: all)")
    parse.add_argument("--held-out", type=int, default=40)
    parse.add_argument("--seed", type=int, default=0)
    parse.add_argument("--max-tokens", type=int, default=450, help="the evol LM's output cap (the quality runs' 450)")
    parse.add_argument("--disable-rule", action="append", help="leave a failure rule out (repeatable)")
    parse.add_argument("--timeout", type=float, default=900.0)
    parse.add_argument("--retries", type=int, default=2)
    parse.add_argument("--reproducible", action="store_true",
                       help="the local model on one slot without the prompt cache (docs/local.md)")
    parse.add_argument("--budget-minutes", type=float, default=None,
                       help="stop cleanly after this long (no LM call starts later); rerun to continue")
    parse.add_argument("--name", default="initial-method", help="the records' folder under benchmarks/runs/")
    parse.add_argument("--commit-every", type=float, default=30.0, metavar="MINUTES",
                       help="commit the records this often while running, and when the run stops")
    parse.add_argument("--no-commit", action="store_true", help="never commit the records")
    parse.add_argument("--report", action="store_true", help="print the tables from the finished lines and stop")
    parse.add_argument("--results-md", type=Path, default=None,
                       help="also write the tables into this file's initial-method section")
    parse.set_defaults(resume=True)  # the records are always continued
    return parse


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not args.report:
        if not args.lm:
            raise SystemExit("error: --lm is required unless --report is given")
        logging.basicConfig(level=logging.WARNING)
        for noisy in ("LiteLLM", "httpx", "dspy"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        quality.run_recorded(args, "initial_method.py", run)
    tables = report(quality.RUNS_DIR / args.name)
    print(tables)
    if args.results_md is not None:
        command = "python benchmarks/initial_method.py --report --results-md benchmarks/RESULTS.md"
        replace_section(args.results_md, "initial-method",
                        f"{SECTION_TITLE}\n\nRegenerated by `{command}` from `benchmarks/runs/{args.name}/`: each "
                        "held-out item evolved once per wording, judged by the evolution rules only (no answer, no "
                        f"judge).\n\n{tables}")


if __name__ == "__main__":
    main()
