"""LM calls per optimization step, and how often the step selects the truly best method.

Part A (measured): real ``AutoEvolInstruct`` compiles with scripted LMs. Every method carries its
true failure rate in its text; the scripted evol LM fails items accordingly (item difficulty shared
between methods with weight ``rho``; a share ``early`` of the failures is caught by the cheap
evolution rules, the rest by the response rules after an answer); the scripted optimizer proposes
candidates whose true rates are drawn around the incumbent's. The LM calls of every step are read
from the step records (cache hits are free and not counted) and set against the paper's schedule,
``batch x l + m + m + m x dev x 2`` calls per step. Racing on and off, same seeds.

Part B (simulated, paired): ``--sim-steps`` steps of the selection alone, through the same
``racing.race`` the teleprompter uses: full measurement and racing see the same simulated outcomes;
how often each selects the truly best method (incumbent included), and the calls it costs.

Candidate model (per step): incumbent rate r0 ~ U(0.15, 0.6); each candidate is "broken" with
probability 0.2 (rate ~ U(0.6, 0.95)), else r0 + N(-0.03, spread), clipped to [0.02, 0.95].

    python benchmarks/compile_calls.py [--compiles 10] [--steps 10] [--sim-steps 1000] [--early 0.5]
                                       [--alpha 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from autoevol.lm import CallPolicy
from autoevol.optimizers import AutoEvolInstruct, StepRecord
from autoevol.optimizers.auto_evol.racing import DEFAULT_ALPHA, DEFAULT_LOOKS, race
from autoevol.programs.evolver import Evolver
from autoevol.testing.scripted import ScriptedRequest, scripted_lm

_RATE = re.compile(r"\[true failure rate (0\.\d+)\]")


@dataclass(frozen=True)
class Scenario:
    """How candidates' true failure rates relate to the incumbent's, and how outcomes correlate."""

    name: str
    spread: float = 0.12
    broken: float = 0.2
    shift: float = -0.03
    rho: float = 0.5

    def candidate_rate(self, incumbent: float, rng: random.Random) -> float:
        if rng.random() < self.broken:
            return rng.uniform(0.6, 0.95)
        return min(0.95, max(0.02, incumbent + rng.gauss(self.shift, self.spread)))


SCENARIOS = (
    Scenario("default"),
    Scenario("close candidates", spread=0.05, broken=0.0),
    Scenario("close, no drift", spread=0.05, broken=0.0, shift=0.0),
    Scenario("wide candidates", spread=0.2, broken=0.3),
    Scenario("independent items", rho=0.0),
)


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def method_text(rate: float, tag: str) -> str:
    return (f"Rewrite the instruction into a harder version of itself, variant {tag}. "
            f"[true failure rate {rate:.4f}]")


def true_rate(text: str) -> float:
    match = _RATE.search(text)
    return float(match.group(1)) if match else 0.45


# ------------------------------------------------------------------------------------ Part A


class SimulatedEvolLM:
    """Fails item ``n`` under a method with rate ``p`` when its (partly shared) difficulty < ``p``."""

    def __init__(self, scenario: Scenario, early: float) -> None:
        self.scenario, self.early = scenario, early

    def fails(self, method: str, number: int) -> bool:
        shared = unit("item", number)
        own = unit("own", method, number)
        difficulty = shared if unit("mix", method, number) < self.scenario.rho else own
        return difficulty < true_rate(method)

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        if "evolved_instruction" not in request.outputs:
            if "(ambiguous)" in request.inputs["instruction"]:
                return {"answer": "Sure, which of the options do you mean?"}
            return {"answer": "A complete answer that addresses each requirement in turn."}
        text, method = request.inputs["instruction"], request.instructions
        number = int(re.search(r"#(\d+)", text).group(1))
        tag = hashlib.sha256(method.encode()).hexdigest()[:6]
        if not self.fails(method, number):
            return {"working_notes": "-", "evolved_instruction": f"{text} Also handle case {tag}."}
        if unit("stage", method, number) < self.early:
            return {"working_notes": "-", "evolved_instruction": text}  # caught before answering
        return {"working_notes": "-", "evolved_instruction": f"{text} Also handle case {tag} (ambiguous)."}


class SimulatedOptimizerLM:
    """Proposes candidates whose true rates are drawn around the current method's."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario, self.seed = scenario, seed
        self.analyses = 0
        self.proposed: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: ScriptedRequest) -> dict[str, str]:
        if "issues" in request.outputs:
            with self._lock:
                self.analyses += 1
                number = self.analyses
            return {"issues": "[]", "feedback": f"sample {number}"}
        current = request.inputs["current_method"]
        number = int(re.search(r"sample (\d+)", request.inputs["feedback"]).group(1))
        rng = random.Random(f"{self.seed}:{number}")
        rate = self.scenario.candidate_rate(true_rate(current), rng)
        with self._lock:
            self.proposed.setdefault(current, []).append(rate)
        return {"improved_method": method_text(rate, f"{self.seed}-{number}")}


@dataclass
class CompileCalls:
    steps: list[StepRecord]
    start_calls: int
    best_picked: int
    seconds: float


def measure_compile(scenario: Scenario, *, racing: bool, seed: int, steps: int, early: float,
                    batch: int, dev: int, m: int, alpha: float = DEFAULT_ALPHA) -> CompileCalls:
    evol_lm = scripted_lm(SimulatedEvolLM(scenario, early), role="evol", policy=CallPolicy(max_retries=0))
    optimizer = SimulatedOptimizerLM(scenario, seed)
    optimizer_lm = scripted_lm(optimizer, role="optimizer", policy=CallPolicy(max_retries=0))
    data = [f"Instruction #{n}: explain topic {n} to a newcomer." for n in range(dev + 10 * batch)]
    start_rate = random.Random(seed).uniform(0.15, 0.6)
    teleprompter = AutoEvolInstruct(optimizer_lm=optimizer_lm, evol_lm=evol_lm, num_candidates=m, batch_size=batch,
                                    dev_size=dev, max_steps=steps, patience=steps, racing=racing,
                                    racing_alpha=alpha, seed=seed, num_threads=1,
                                    proposal_mode="rewrite",  # the scripted optimizer writes whole methods
                                    keep_unchanged=True)  # a compile that finds nothing still has steps to count
    clock = time.perf_counter()
    compiled = teleprompter.compile(Evolver(method_text(start_rate, f"start-{seed}")), trainset=data)
    history = compiled.compile_history
    start_calls = evol_lm.usage.calls + optimizer_lm.usage.calls - sum(_calls(r) for r in history)
    best = sum(_picked_truly_best(record) for record in history)
    return CompileCalls(history, start_calls, best, time.perf_counter() - clock)


def _calls(record: StepRecord) -> int:
    return sum(usage.calls for usage in record.usage)


def _picked_truly_best(record: StepRecord) -> bool:
    candidates = [true_rate(c.candidate.method) for c in record.candidates
                  if c.candidate is not None and not c.invalid]
    rates = [true_rate(record.incumbent.method), *candidates]
    selected = true_rate(record.selected.method)
    return selected <= min(rates) + 1e-12


# ------------------------------------------------------------------------------------ Part B


@dataclass
class SelectionStats:
    steps: int = 0
    full_best: int = 0
    raced_best: int = 0
    agree: int = 0
    full_items: int = 0
    raced_items: int = 0
    full_calls: dict[float, float] | None = None
    raced_calls: dict[float, float] | None = None


def simulate_selection(scenario: Scenario, steps: int, *, seed: int, dev: int, m: int,
                       looks: Sequence[float], alpha: float, early_shares: Sequence[float]) -> SelectionStats:
    rng = random.Random(seed)
    stats = SelectionStats(full_calls={e: 0.0 for e in early_shares}, raced_calls={e: 0.0 for e in early_shares})
    for _ in range(steps):
        incumbent = rng.uniform(0.15, 0.6)
        rates = [incumbent] + [scenario.candidate_rate(incumbent, rng) for _ in range(m)]
        shared = [rng.random() for _ in range(dev)]
        outcomes = {k: [(shared[i] if rng.random() < scenario.rho else rng.random()) < rates[k] for i in range(dev)]
                    for k in range(m + 1)}
        keys = list(range(m + 1))
        truth = min(keys, key=lambda k: rates[k])
        full, full_counter = _race(outcomes, keys, dev, looks=(), alpha=alpha)
        raced, raced_counter = _race(outcomes, keys, dev, looks=looks, alpha=alpha)
        stats.steps += 1
        stats.full_best += full.best(keys) == truth
        stats.raced_best += raced.best(keys) == truth
        stats.agree += full.best(keys) == raced.best(keys)
        stats.full_items += sum(full_counter.items.values())
        stats.raced_items += sum(raced_counter.items.values())
        for early in early_shares:  # an item costs an evolution, plus an answer unless caught early
            stats.full_calls[early] += full_counter.calls(early)
            stats.raced_calls[early] += raced_counter.calls(early)
    return stats


class _Counter:
    """Counts candidate (not incumbent: its results are cached) items measured, failed and passed."""

    def __init__(self, outcomes: dict[int, list[bool]]) -> None:
        self.outcomes = outcomes
        self.items: dict[int, int] = {}
        self.failures: dict[int, int] = {}

    def __call__(self, keys: Sequence[int], start: int, stop: int) -> dict[int, list[bool]]:
        for key in keys:
            if key != 0:
                self.items[key] = self.items.get(key, 0) + stop - start
                self.failures[key] = self.failures.get(key, 0) + sum(self.outcomes[key][start:stop])
        return {key: self.outcomes[key][start:stop] for key in keys}

    def calls(self, early: float) -> float:
        items, failures = sum(self.items.values()), sum(self.failures.values())
        return 2 * items - early * failures


def _race(outcomes: dict[int, list[bool]], keys: list[int], dev: int, *, looks: Sequence[float],
          alpha: float) -> tuple[object, _Counter]:
    counter = _Counter(outcomes)
    return race(keys, counter, dev, looks=looks, alpha=alpha, protected=[0]), counter


# ------------------------------------------------------------------------------------ report


def paper_schedule(batch: int, rounds: int, m: int, dev: int) -> int:
    return batch * rounds + m + m + m * dev * 2


def part_a(args: argparse.Namespace) -> None:
    paper = paper_schedule(args.batch, 1, args.m, args.dev)
    print(f"Part A: measured calls per step (real compiles, scripted LMs, scenario 'default', "
          f"early share {args.early}, batch {args.batch}, dev {args.dev}, m {args.m}, l 1, alpha {args.alpha})")
    print(f"  paper's schedule: {args.batch} + {args.m} + {args.m} + {args.m}x{args.dev}x2 = {paper} calls per step")
    rows = []
    for racing in (False, True):
        runs = [measure_compile(SCENARIOS[0], racing=racing, seed=args.seed + k, steps=args.steps, early=args.early,
                                batch=args.batch, dev=args.dev, m=args.m, alpha=args.alpha)
                for k in range(args.compiles)]
        per_step = [_calls(record) for run in runs for record in run.steps]
        evol = [sum(u.calls for u in r.usage if u.role == "evol") for run in runs for r in run.steps]
        optimizer = [sum(u.calls for u in r.usage if u.role == "optimizer") for run in runs for r in run.steps]
        picked = sum(run.best_picked for run in runs)
        label = "ours, racing" if racing else "ours, caching only"
        rows.append((label, statistics.mean(per_step)))
        print(f"  {label:<20} {statistics.mean(per_step):7.1f} calls/step (evol {statistics.mean(evol):.1f}, "
              f"optimizer {statistics.mean(optimizer):.1f}; min {min(per_step)}, max {max(per_step)}) over "
              f"{len(per_step)} steps; {1 - statistics.mean(per_step) / paper:.1%} fewer than the paper; "
              f"picked the truly best method in {picked}/{len(per_step)} steps; "
              f"one-off start measurement {statistics.mean(r.start_calls for r in runs):.0f} calls; "
              f"{sum(r.seconds for r in runs):.1f}s")


def part_b(args: argparse.Namespace) -> None:
    early_shares = (0.0, args.early)
    paper = paper_schedule(args.batch, 1, args.m, args.dev)
    overhead = args.batch + 2 * args.m
    print(f"\nPart B: selection over {args.sim_steps} simulated steps per scenario (paired; looks {DEFAULT_LOOKS}, "
          f"alpha {args.alpha}); calls per step = {overhead} (trajectory and optimizer) + evaluation")
    header = (f"  {'scenario':<18} {'best: full':>10} {'racing':>7} {'ratio':>6} {'agree':>6} "
              f"{'items full':>10} {'racing':>7} " + " ".join(f"{'fewer calls e=' + str(e):>17}" for e in early_shares))
    print(header)
    for scenario in SCENARIOS:
        stats = simulate_selection(scenario, args.sim_steps, seed=args.seed, dev=args.dev, m=args.m,
                                   looks=DEFAULT_LOOKS, alpha=args.alpha, early_shares=early_shares)
        n = stats.steps
        savings = " ".join(f"{1 - (overhead + stats.raced_calls[e] / n) / paper:>17.1%}" for e in early_shares)
        print(f"  {scenario.name:<18} {stats.full_best / n:>10.3f} {stats.raced_best / n:>7.3f} "
              f"{stats.raced_best / max(stats.full_best, 1):>6.3f} {stats.agree / n:>6.3f} "
              f"{stats.full_items / n:>10.1f} {stats.raced_items / n:>7.1f} {savings}")
    print("  (best: share of steps selecting the truly best method; ratio = racing / full; agree: same "
          "selection; items: candidate dev items measured per step; e: share of failures caught before answering)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compiles", type=int, default=10, help="Part A: compiles per setting (seeds)")
    parser.add_argument("--steps", type=int, default=10, help="Part A: steps per compile")
    parser.add_argument("--sim-steps", type=int, default=1000, help="Part B: simulated steps per scenario")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--dev", type=int, default=50)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--early", type=float, default=0.5, help="share of failures caught before answering")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="racing significance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    part_a(args)
    part_b(args)


if __name__ == "__main__":
    main()
