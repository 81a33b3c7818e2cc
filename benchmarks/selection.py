"""Does the compile report only real gains? Compiles in scripted worlds whose truth is known.

For each world and seed, one real :class:`~autoevol.optimizers.AutoEvolInstruct` compile runs on
scripted LMs (:mod:`autoevol.testing.selection_world`); the script counts

* in the *null* world (every proposal fails as often as the start, on other items): how many
  compiles claim an improvement (return an evolver instead of raising ``NoImprovement``), the
  false-improvement rate;
* in the *better* world (every third proposal is truly ``--gain`` better): how many compiles
  return a method carrying a truly better rule, the power, and how many ended their dev selection
  on one (before the confirmation);

with ``flip`` 1.0 (equal methods fail on unrelated items) and 0.45 (about a third of the verdicts
change with the prompt, as measured with a 1.5B evol LM). Figures are printed as a Markdown table.

``--starts`` races starting methods before step 1; in a world each is exactly as good as the start.

    python benchmarks/selection.py --seeds 10
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import NamedTuple

import dspy

from autoevol.baselines import starting_methods
from autoevol.optimizers.auto_evol import AutoEvolInstruct
from autoevol.optimizers.auto_evol.found_nothing import CompileFoundNothing
from autoevol.optimizers.auto_evol.racing import DEFAULT_ALPHA
from autoevol.optimizers.auto_evol.selection import CONFIRM_ALPHA, SELECTION_ALPHA
from autoevol.programs.evolver import Evolver
from autoevol.testing.selection_world import MARK, START, SelectionWorld, instructions


class Outcome(NamedTuple):
    """One compile in a world."""

    claimed: bool  # returned an evolver (the confirmation supported its gain)
    truly_better: bool  # ... whose method carries a truly better rule
    chose_better_on_dev: bool  # the dev selection ended on a truly better method, confirmed or not
    start_rate: float  # the start's dev failure rate
    result_rate: float  # the result's dev failure rate
    evol_calls: int


def one_compile(world: SelectionWorld, args: argparse.Namespace, seed: int, dev_size: int) -> Outcome:
    """Compile ``START`` in ``world`` with the benchmark's settings and ``dev_size`` dev items."""
    confirm_size = dev_size if args.confirm_size is None else args.confirm_size
    evol_lm, optimizer_lm = world.lms()
    teleprompter = AutoEvolInstruct(
        optimizer_lm=optimizer_lm, evol_lm=evol_lm, num_candidates=args.candidates, batch_size=4,
        dev_size=dev_size, confirm_size=confirm_size, max_steps=args.steps, patience=args.steps,
        selection_alpha=args.selection_alpha, confirm_alpha=args.confirm_alpha, trajectory_answers=False,
        racing=args.racing_alpha > 0, racing_alpha=args.racing_alpha or DEFAULT_ALPHA,
        starts=args.starts, seed=seed, num_threads=args.threads)
    data = instructions(dev_size + confirm_size + 40)
    try:
        compiled, claimed = teleprompter.compile(Evolver(START), trainset=data), True
    except CompileFoundNothing as nothing:
        compiled, claimed = nothing.evolver, False
    meta, history = compiled.metadata, compiled.compile_history
    chosen = history[-1].selected.method if history else compiled.method
    return Outcome(claimed, claimed and MARK in compiled.method, MARK in chosen,
                   meta["initial_dev_failure_rate"], meta["dev_failure_rate"], evol_lm.engine.calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--dev-sizes", type=int, nargs="+", default=[50], help="one row pair per dev size")
    parser.add_argument("--confirm-size", type=int, help="default: the dev size")
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--gain", type=float, default=0.2)
    parser.add_argument("--selection-alpha", type=float, default=SELECTION_ALPHA)
    parser.add_argument("--confirm-alpha", type=float, default=CONFIRM_ALPHA)
    parser.add_argument("--racing-alpha", type=float, default=DEFAULT_ALPHA, help="0: no racing")
    parser.add_argument("--starts", nargs="*", default=[], choices=sorted(starting_methods()),
                        help="starting methods raced before step 1 (in a world each is as good as the start)")
    parser.add_argument("--flips", type=float, nargs="+", default=[1.0, 0.45])
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dspy.configure(track_usage=True)

    confirmation = "the dev size" if args.confirm_size is None else args.confirm_size
    print(f"selection: confirmation {confirmation}, {args.candidates} candidates, {args.steps} steps, "
          f"{len(args.starts)} starts raced, selection alpha {args.selection_alpha}, "
          f"confirmation alpha {args.confirm_alpha}, {args.seeds} seeds per world\n")
    print("| world | flip | dev | compiles | claimed an improvement | truly better result | truly better chosen "
          "on dev (confirmed or not) | dev rate start -> result (mean over claims) | evol LM calls per compile "
          "| seconds per compile |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for flip in args.flips:
        for dev_size in args.dev_sizes:
            for name, better_every in (("null", 0), (f"one in three {args.gain:.0%} better", 3)):
                clock = time.monotonic()
                outcomes = [one_compile(SelectionWorld(seed=seed, gain=args.gain, better_every=better_every,
                                                       flip=flip), args, seed, dev_size)
                            for seed in range(args.seeds)]
                seconds = (time.monotonic() - clock) / args.seeds
                claims = [o for o in outcomes if o.claimed]
                moved = (f"{100 * sum(o.start_rate for o in claims) / len(claims):.0f}% -> "
                         f"{100 * sum(o.result_rate for o in claims) / len(claims):.0f}%") if claims else "-"
                print(f"| {name} | {flip:g} | {dev_size} | {args.seeds} | {len(claims)} "
                      f"| {sum(o.truly_better for o in outcomes)} | {sum(o.chose_better_on_dev for o in outcomes)} "
                      f"| {moved} | {sum(o.evol_calls for o in outcomes) / args.seeds:.0f} | {seconds:.1f} |",
                      flush=True)


if __name__ == "__main__":
    main()
