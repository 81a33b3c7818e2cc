"""Dry-run estimates: how many LM calls a job plans, and roughly how many tokens and dollars.

Nothing here calls an LM. Prompt sizes come from formatting the real DSPy requests (ChatAdapter)
for a sample of the data; output sizes are a rough guess bounded by the output token limit.
Prices come from LiteLLM's model price map where the model is listed.

``compile`` and ``tune`` are planned by :func:`estimate_compile` (the most calls of the schedule,
:func:`compile_plan`), ``evolve`` by :func:`estimate_evolve`. Another job builds its plan from the
evolutions it runs and calls :func:`estimate_item_evaluations`, then prints it with
:func:`format_estimate`::

    estimate = estimate_item_evaluations(sample_texts, evaluations=steps * (m + 1) * dev_size,
                                         evolver=student, model="openai/gpt-4o-mini",
                                         judge_model="openai/gpt-4o-mini",
                                         extra_calls={"optimizer": steps * (1 + m)})
    print(format_estimate(estimate))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, Field

from autoevol.data import iter_items

logger = logging.getLogger(__name__)

#: Characters per token for the rough count (English text, BPE tokenizers).
CHARS_PER_TOKEN = 4.0
#: Assumed prompt size of a call whose request cannot be formatted here (optimizer, judge).
DEFAULT_PROMPT_TOKENS = 600


class RoleEstimate(BaseModel):
    """Planned calls and estimated tokens (and cost, when the price is known) for one LM role."""

    role: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    output_tokens_max: int
    cost: float | None = None
    cost_max: float | None = None


class Estimate(BaseModel):
    """What a job plans to spend, before it spends anything."""

    items: int
    sampled: int
    rounds: int = 1
    roles: list[RoleEstimate]
    notes: list[str] = []

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.roles)

    @property
    def tokens(self) -> int:
        return sum(r.input_tokens + r.output_tokens for r in self.roles)

    @property
    def cost(self) -> float | None:
        costs = [r.cost for r in self.roles]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


def count_tokens(text: str) -> int:
    """A rough token count (no tokenizer download, no network)."""
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def prompt_tokens(signature: type[dspy.Signature], inputs: Mapping[str, Any], demos: Sequence[Any] = ()) -> int:
    """Tokens of the messages DSPy's ChatAdapter sends for ``signature`` with ``inputs`` (after ``demos``)."""
    messages = dspy.ChatAdapter().format(signature, demos=list(demos), inputs=dict(inputs))
    return sum(count_tokens(str(m.get("content", ""))) for m in messages)


def prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per token of ``model`` from LiteLLM's price map, or None if unknown."""
    try:
        import litellm

        cost_map = litellm.model_cost
    except Exception:  # pragma: no cover - litellm missing or broken
        return None
    for name in (model, model.split("/", 1)[-1]):
        entry = cost_map.get(name)
        if entry and entry.get("input_cost_per_token") is not None:
            return float(entry["input_cost_per_token"]), float(entry.get("output_cost_per_token") or 0.0)
    return None


def role_estimate(role: str, model: str, calls: int, input_per_call: float, output_per_call: float,
                  max_output_tokens: int) -> RoleEstimate:
    """Totals for ``calls`` calls of one role with the given average sizes."""
    input_tokens = round(calls * input_per_call)
    output_tokens = round(calls * min(output_per_call, max_output_tokens))
    output_max = calls * max_output_tokens
    price = prices(model)
    cost = cost_max = None
    if price is not None:
        cost = input_tokens * price[0] + output_tokens * price[1]
        cost_max = input_tokens * price[0] + output_max * price[1]
    return RoleEstimate(role=role, model=model, calls=calls, input_tokens=input_tokens,
                        output_tokens=output_tokens, output_tokens_max=output_max, cost=cost, cost_max=cost_max)


def _mean(values: Sequence[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def demo_tokens(signature: type[dspy.Signature], sample: Sequence[str], rewrite_tokens: float) -> float:
    """Prompt tokens one more demonstration adds to an evolve call: its fields and the adapter's framing.

    A demonstration shows an instruction like ``sample``'s, its working notes and its rewrite
    (``rewrite_tokens`` for both, as an evolution's output is estimated).
    """
    text = sample[0] if sample else ""
    framing = (prompt_tokens(signature, {"instruction": text}, [dspy.Example(
        instruction="", working_notes="", evolved_instruction="")]) - prompt_tokens(signature, {"instruction": text}))
    return framing + _mean([count_tokens(t) for t in sample], 0) + rewrite_tokens


def estimate_item_evaluations(
    sample: Sequence[str],
    *,
    evaluations: int,
    evolver: Any,
    model: str,
    max_output_tokens: int = 768,
    answers: int | None = None,
    judge_model: str | None = None,
    judge_output_tokens: int = 10,
    judge_max_tokens: int = 64,
    answer_model: str | None = None,
    extra_calls: Mapping[str, int] | None = None,
    extra_model: str | None = None,
    demos_shown: int = 0,
    teacher_calls: int = 0,
) -> Estimate:
    """Estimate ``evaluations`` evolutions of items like ``sample``, and the evol LM's answers to them.

    The evolve prompts include the evolver's own demonstrations.

    Args:
        sample: instruction texts representative of the data.
        evaluations: how many evolutions the job runs with ``evolver`` (items x rounds, or the
            dev measurements and trajectory stages of an optimizer).
        evolver: the program whose predictors format the evolve prompts: an ``Evolver`` (one
            predictor), or the classic operations (one predictor per operation, taken in turn
            over ``sample``).
        model: the evol LM model string (used for prices).
        answers: evol-LM answers to evolutions (default: one per evaluation); an optimizer
            answers more (teacher rewrites) or fewer (trajectory stages before the last).
        judge_model: also plan one judge call per answer, billed to this model (the judge runs
            after the answer, only when every cheap rule passed, so an upper bound).
        judge_output_tokens: the estimated output of one judge call.
        judge_max_tokens: the output token limit of a judge call.
        answer_model: a separate answer LM: also plan one final answer per evaluation (made only
            for evolutions that pass, so an upper bound).
        extra_calls: further calls per role (e.g. ``{"optimizer": 40}``), of default prompt size.
        extra_model: the model of those extra calls (default ``model``).
        demos_shown: demonstrations beyond the evolver's own in the evolve prompts, summed over all
            evolve calls (a compile choosing demonstrations).
        teacher_calls: evolutions the ``extra_model`` writes with the evolve prompt and no
            demonstrations (``teacher_demos``).
    """
    answers = evaluations if answers is None else answers
    predictors = evolver.predictors()
    signature = predictors[0].signature
    turns = [predictors[index % len(predictors)] for index in range(len(sample))]
    bare_in = [prompt_tokens(predictor.signature, {"instruction": text}) for predictor, text in zip(turns, sample)]
    evolve_in = [prompt_tokens(predictor.signature, {"instruction": text}, predictor.demos)
                 for predictor, text in zip(turns, sample)] if any(p.demos for p in predictors) else bare_in
    text_tokens = [count_tokens(text) for text in sample]
    # the evolution restates the instruction with more in it, after some working notes
    evolve_out = _mean([2 * t + 150 for t in text_tokens], 200)
    answer_in = evolve_out  # the answer's prompt is the evolved instruction alone (a plain chat message)
    answer_out = 350.0
    evol_calls = evaluations + answers
    shown = demos_shown * demo_tokens(signature, sample, evolve_out) if demos_shown else 0.0
    per_call = max(1, evol_calls)
    roles = [role_estimate("evol", model, evol_calls,
                           (evaluations * _mean(evolve_in, DEFAULT_PROMPT_TOKENS) + answers * answer_in + shown)
                           / per_call, (evaluations * evolve_out + answers * answer_out) / per_call,
                           max_output_tokens)]
    if judge_model:
        roles.append(role_estimate("judge", judge_model, answers, _mean(bare_in, DEFAULT_PROMPT_TOKENS)
                                   + evolve_out, judge_output_tokens, judge_max_tokens))
    if answer_model:
        roles.append(role_estimate("answer", answer_model, evaluations, answer_in, answer_out, max_output_tokens))
    for role, calls in (extra_calls or {}).items():
        roles.append(role_estimate(role, extra_model or model, calls, DEFAULT_PROMPT_TOKENS, 400, max_output_tokens))
    if teacher_calls:
        roles.append(role_estimate("teacher", extra_model or model, teacher_calls,
                                   _mean(bare_in, DEFAULT_PROMPT_TOKENS), evolve_out, max_output_tokens))
    skipped = " (and so is the answer model's final answer)" if answer_model else ""
    if judge_model:
        skipped += "; the judge runs only when the answer passed every cheap rule"
    notes = ["calls are an upper bound: the answer call is skipped when an evolution already fails" + skipped,
             f"tokens are estimated at {CHARS_PER_TOKEN:g} characters per token from the formatted prompts"]
    if any(r.cost is None for r in roles):
        notes.append("no price is known for some model; cost not estimated for it")
    return Estimate(items=evaluations, sampled=len(sample), roles=roles, notes=notes)


class CompilePlan(BaseModel):
    """The most calls one compile makes, by kind (caching, racing and early stopping only lower them)."""

    evolutions: int = Field(description="evol-LM evolutions with the student's prompt: dev measurements and "
                                        "trajectory stages")
    answers: int = Field(description="evol-LM answers, each one judged when a judge is set: dev measurements, "
                                     "trajectory last stages, teacher rewrites")
    optimizer_calls: int = Field(description="analyses and proposals, every proposal attempt counted")
    teacher_calls: int = Field(0, description="optimizer-LM rewrites of failed trajectory cases (teacher_demos)")
    demos_shown: int = Field(0, description="demonstrations in evolve prompts beyond the student's own, summed "
                                            "over the steps' evolutions")


def compile_plan(*, steps: int, candidates: int, batch_size: int, dev_size: int, rounds: int,
                 trajectory_answers: bool = True, proposal_attempts: int = 3, max_demos: int = 0,
                 demo_candidates: int = 2, teacher_demos: bool = False, own_demos: int = 0,
                 confirm_size: int = 0, starts: int = 0) -> CompilePlan:
    """Upper bound of the calls of one compile at the paper's schedule (no caching, no racing).

    The starting method is measured once on the dev set (evolve, answer, judge each item). Each
    step evolves the mini-batch ``rounds`` times in a row; with ``trajectory_answers`` (or
    demonstrations on) each case's last stage is also answered and judged, ``batch_size``
    answers. The optimizer LM analyses the trajectory once per candidate and proposes up to
    ``proposal_attempts`` times (an unusable proposal is resampled), and every candidate is
    measured on the whole dev set. With ``max_demos > 0`` (see
    :class:`~autoevol.optimizers.auto_evol.demos.DemoSearch`) ``demo_candidates`` demonstration sets are
    measured on the dev set too; with ``teacher_demos`` the optimizer LM rewrites every failed
    case and the evol LM answers each rewrite, counted as if every case failed; and every
    evolution of the step shows up to ``max_demos`` demonstrations (``own_demos`` of them are
    the student's and already in its prompt). At the end the final method and the starting method
    are measured on the ``confirm_size`` items of the confirmation split; ``starts`` starting
    methods raced before step 1 are each measured on the dev set.
    """
    demos = max_demos > 0
    trajectory = batch_size * rounds
    measured = (candidates + (demo_candidates if demos else 0)) * dev_size
    answered = batch_size if trajectory_answers or demos else 0
    teacher = batch_size if demos and teacher_demos else 0
    shown = steps * (trajectory + measured) * max(0, max_demos - own_demos) if demos else 0
    once = (1 + starts) * dev_size + 2 * confirm_size  # the start, the raced starts, the confirmation
    return CompilePlan(evolutions=once + steps * (trajectory + measured),
                       answers=once + steps * (answered + measured + teacher),
                       optimizer_calls=steps * candidates * (1 + proposal_attempts),
                       teacher_calls=steps * teacher, demos_shown=shown)


def estimate_compile(
    sample: Sequence[str],
    *,
    steps: int,
    candidates: int,
    batch_size: int,
    dev_size: int,
    rounds: int,
    evolver: Any,
    model: str,
    optimizer_model: str,
    max_output_tokens: int = 1024,
    trials: int = 1,
    heldout: int = 0,
    trajectory_answers: bool = True,
    proposal_attempts: int = 3,
    judge_model: str | None = None,
    judge_max_tokens: int = 160,
    max_demos: int = 0,
    demo_candidates: int = 2,
    teacher_demos: bool = False,
    keep_demos: bool = False,
    confirm_size: int = 0,
    starts: int = 0,
) -> Estimate:
    """Plan of ``trials`` compiles (one for ``autoevol compile``) and their held-out evaluations.

    The settings mean what they mean to :class:`~autoevol.optimizers.AutoEvolInstruct`, with its
    defaults (see :func:`compile_plan`). ``judge_model`` is the judge LM's model (``None``: no
    judge), planned for every answer (a judge row of its own). The student's own
    demonstrations stay in its prompts only with ``keep_demos``, as in the compile.
    """
    if not keep_demos and getattr(evolver, "demos", None):
        evolver = evolver.with_demos(())
    own_demos = len(evolver.demos) if keep_demos else 0
    plan = compile_plan(steps=steps, candidates=candidates, batch_size=batch_size, dev_size=dev_size, rounds=rounds,
                        trajectory_answers=trajectory_answers, proposal_attempts=proposal_attempts,
                        max_demos=max_demos, demo_candidates=demo_candidates, teacher_demos=teacher_demos,
                        own_demos=own_demos, confirm_size=confirm_size, starts=starts)
    heldout_shown = heldout * max(0, max_demos - own_demos)  # the compiled evolver's demonstrations
    estimate = estimate_item_evaluations(
        sample, evaluations=trials * (plan.evolutions + heldout), answers=trials * (plan.answers + heldout),
        evolver=evolver, model=model, max_output_tokens=max_output_tokens, judge_model=judge_model,
        judge_output_tokens=40, judge_max_tokens=judge_max_tokens,  # a verdict and one sentence
        extra_calls={"optimizer": trials * plan.optimizer_calls}, extra_model=optimizer_model,
        demos_shown=trials * (plan.demos_shown + heldout_shown), teacher_calls=trials * plan.teacher_calls)
    notes = [("the paper's schedule without caching or racing, each candidate with its analysis and all "
              f"{proposal_attempts} proposal attempt(s): an upper bound (calls retried after LM errors not counted)")]
    if trajectory_answers or max_demos > 0:
        notes.append("trajectory: the last stage of every case is answered" + (" and judged" if judge_model else ""))
    if max_demos > 0:
        teacher = "; a teacher rewrite for every trajectory case, as if all failed" if teacher_demos else ""
        notes.append(f"demonstrations: up to {max_demos} in every evolve prompt of the steps, "
                     f"{demo_candidates} new set(s) measured on the dev set per step{teacher}")
    estimate.notes[:0] = notes
    return estimate


def estimate_evolve(
    data: str | Path,
    *,
    evolver: Any,
    model: str,
    column: str | None = None,
    id_column: str | None = None,
    limit: int | None = None,
    rounds: int = 1,
    max_output_tokens: int = 768,
    judge_model: str | None = None,
    answer_model: str | None = None,
    sample_size: int = 50,
) -> Estimate:
    """Plan of ``autoevol evolve``: reads (streams) the whole input once to count its items.

    Raises ``DataError`` for unreadable input, like the job itself would. Bad rows (empty, null)
    are counted but cost nothing.
    """
    sample: list[str] = []
    items = bad = 0
    for item in iter_items(data, column=column, id_column=id_column, limit=limit):
        if item.problem:
            bad += 1
            continue
        items += 1
        if len(sample) < sample_size:
            sample.append(item.instruction)
    estimate = estimate_item_evaluations(sample, evaluations=items * rounds, evolver=evolver, model=model,
                                         max_output_tokens=max_output_tokens, judge_model=judge_model,
                                         answer_model=answer_model)
    estimate.items, estimate.rounds = items, rounds
    if bad:
        estimate.notes.append(f"{bad} bad input rows are written as failed without any call")
    if rounds > 1:
        estimate.notes.append("rounds after the first only evolve rows that succeeded: an upper bound")
    return estimate


def format_estimate(estimate: Estimate) -> str:
    """A few plain lines for a terminal."""
    lines = [f"dry run: {estimate.items} items x {estimate.rounds} round(s), prompts sampled from "
             f"{estimate.sampled} items; nothing was sent to any LM"]
    for r in estimate.roles:
        cost = f", ~${r.cost:.4f} (at most ${r.cost_max:.4f})" if r.cost is not None else ", cost unknown"
        lines.append(f"  {r.role} ({r.model}): {r.calls} calls, ~{r.input_tokens} input tokens, "
                     f"~{r.output_tokens} output tokens (at most {r.output_tokens_max}){cost}")
    total_cost = estimate.cost
    lines.append(f"  total: {estimate.calls} calls, ~{estimate.tokens} tokens"
                 + (f", ~${total_cost:.4f}" if total_cost is not None else ""))
    lines += [f"  note: {note}" for note in estimate.notes]
    return "\n".join(lines)
