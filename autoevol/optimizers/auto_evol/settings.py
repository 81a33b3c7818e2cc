"""The settings of an Auto Evol-Instruct compile (:class:`CompileSettings`: every hyperparameter,
its default and the range it must be in), and which of them a resumed run must share with the run
it continues (the ``run.json`` header of its run directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from autoevol.baselines import starting_methods
from autoevol.optimizers.auto_evol.proposal import DEFAULT_MAX_METHOD_WORDS, ProposalMode
from autoevol.optimizers.auto_evol.racing import DEFAULT_ALPHA
from autoevol.optimizers.auto_evol.run_dir import RunHeader
from autoevol.optimizers.auto_evol.selection import CONFIRM_ALPHA, SELECTION_ALPHA
from autoevol.version import __version__

#: The least value of each numeric setting of an Auto Evol-Instruct compile.
SETTING_MINIMUMS = {"num_candidates": 1, "batch_size": 1, "dev_size": 1, "confirm_size": 0, "max_steps": 0,
                    "evolution_rounds": 1,
                    "temperature": 0, "patience": 1, "proposal_attempts": 1, "max_method_words": 20,
                    "num_threads": 1, "max_demos": 0, "demo_candidates": 0}
#: Marks a field that does not shape the result: left out of :meth:`CompileSettings.hyperparameters`.
_UNRECORDED = {"recorded": False}


@dataclass(frozen=True, kw_only=True)
class CompileSettings:
    """Every hyperparameter of an Auto Evol-Instruct compile (not its LMs, detector or callbacks).

    Immutable and checked when built (``ValueError`` naming the first setting out of its range).
    :class:`~autoevol.optimizers.auto_evol.loop.AutoEvolInstruct` takes one as ``settings=`` or
    builds one from its keywords; ``dataclasses.replace(settings, max_steps=3)`` gives a changed
    copy, checked again. :meth:`hyperparameters` is what the ``run.json`` header and the compiled
    evolver's metadata record.

    Example: ``AutoEvolInstruct(optimizer_lm=big, settings=CompileSettings(num_candidates=3, max_steps=4))``.
    """

    num_candidates: int = 5
    """m, candidates per step (paper: 5)."""
    batch_size: int = 10
    """Mini-batch size (paper: 10)."""
    dev_size: int = 50
    """Development set size |D| (paper: 50)."""
    confirm_size: int | None = None
    """Items held out of every selection step to confirm the final gain (``None``: ``dev_size``, see
    :attr:`confirm_items`; 0 skips the confirmation, and the result's gain is then unconfirmed)."""
    max_steps: int = 10
    """T, the most steps (paper: 10)."""
    evolution_rounds: int = 1
    """l, evolutions in a row per trajectory case (the authors' code: 1)."""
    temperature: float = 0.6
    """Sampling temperature of the optimizer LLM (paper: 0.6)."""
    top_p: float = 0.95
    """Nucleus sampling of the optimizer LLM (paper: 0.95)."""
    evol_temperature: float | None = 0.0
    """Temperature of the evol LLM (paper: 0); ``None`` keeps the LM's own."""
    patience: int = 1
    """Steps without improvement before stopping (paper: 1)."""
    racing: bool = True
    """Stop measuring candidates that cannot beat the best one (``False``: every candidate is
    measured on every dev item, as in the paper)."""
    racing_alpha: float = DEFAULT_ALPHA
    """Significance of the sign test that drops a candidate."""
    selection_alpha: float = SELECTION_ALPHA
    """Family-wise level of acceptance; the k-th candidate of the compile is accepted at
    ``selection_alpha / k`` (see :mod:`~autoevol.optimizers.auto_evol.selection`)."""
    confirm_alpha: float = CONFIRM_ALPHA
    """Level of the confirmation test of the final method against the start."""
    proposal_mode: ProposalMode = "edit"
    """``"edit"`` (rules at the end or into a step, a revised step, or a sentence replaced or
    deleted, applied to the method; suits small optimizer LMs) or ``"rewrite"`` (the whole method,
    as the paper)."""
    proposal_attempts: int = 3
    """Proposals sampled per candidate before an unusable one is given up."""
    max_method_words: int = DEFAULT_MAX_METHOD_WORDS
    """The method-length budget (the paper saw quality fall as methods grew; the default suits small
    evol LMs, see :data:`~autoevol.optimizers.auto_evol.proposal.DEFAULT_MAX_METHOD_WORDS`)."""
    answer_max_tokens: int | None = None
    """Caps the evol LM's answers used for failure detection (default: the LM's limit); a few
    hundred tokens keep the response rules intact and save time."""
    trajectory_answers: bool = True
    """Also answer and judge each case's last stage, so the analysis sees the answers and the
    verdicts of every rule (``batch_size`` more calls per step, and judge calls when a judge is set)."""
    max_demos: int = 0
    """The most demonstrations a candidate carries (0: the paper, method text only)."""
    demo_candidates: int = 2
    """New demonstration sets proposed per step (when ``max_demos > 0``)."""
    teacher_demos: bool = False
    """Also let the optimizer LM rewrite failed trajectory cases; a rewrite that passes every rule
    under the evol LM's answer joins the demonstration pool."""
    keep_demos: bool = False
    """Start from the student's demonstrations (a warm start keeps its method but by default draws
    new demonstrations from the new data)."""
    starts: tuple[str, ...] = ()
    """Starting methods raced against the student's before step 1, by name (see
    :func:`~autoevol.baselines.starting_methods`: ``weak`` and each classic operation); one replaces
    the student's method when the paired test supports it, as a step's candidate. Any sequence is
    accepted; it is kept as a tuple without repeats."""
    seed: int = 0
    """Seeds the dev split, the mini-batches and the optimizer's rollout ids."""
    keep_unchanged: bool = field(default=False, metadata=_UNRECORDED)
    """Return the starting method when the compile found nothing better, instead of raising
    :class:`~autoevol.optimizers.auto_evol.found_nothing.CompileFoundNothing`."""
    num_threads: int = field(default=4, metadata=_UNRECORDED)
    """Items evaluated in parallel."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts", tuple(dict.fromkeys(self.starts)))
        checked = {**{f.name: getattr(self, f.name) for f in fields(self)}, "confirm_size": self.confirm_items}
        for name, minimum in SETTING_MINIMUMS.items():
            if not checked[name] >= minimum:
                raise ValueError(f"{name} must be at least {minimum}")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        for name in ("racing_alpha", "selection_alpha", "confirm_alpha"):
            if not 0 < checked[name] < 1:
                raise ValueError(f"{name} must be in (0, 1)")
        if self.proposal_mode not in ("edit", "rewrite"):
            raise ValueError("proposal_mode must be 'edit' or 'rewrite'")
        unknown = sorted(set(self.starts) - set(starting_methods()))
        if unknown:
            raise ValueError(f"unknown starting method(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(starting_methods())}")

    @property
    def confirm_items(self) -> int:
        """The size of the confirmation split: ``confirm_size``, or ``dev_size`` when it is ``None``."""
        return self.dev_size if self.confirm_size is None else self.confirm_size

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that shape the result, as ``run.json`` and the evolver's metadata record them
        (``confirm_size`` resolved, ``starts`` a list; ``keep_unchanged`` and ``num_threads`` left out)."""
        recorded = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("recorded", True)}
        return {**recorded, "confirm_size": self.confirm_items, "starts": list(self.starts)}

    @classmethod
    def names(cls) -> frozenset[str]:
        """The name of every setting (the keywords :class:`AutoEvolInstruct` takes besides its LMs and callbacks)."""
        return frozenset(f.name for f in fields(cls))


#: Settings a resumed compile may change: a run may be extended or cut short, and keep_demos shows
#: in the starting candidate's fingerprint.
RESUMABLE_SETTINGS = frozenset({"max_steps", "patience", "keep_demos"})
#: Settings that only matter when demonstrations are on (a run without them records none of them,
#: so runs from before demonstrations resume).
DEMO_SETTINGS = frozenset({"max_demos", "demo_candidates", "teacher_demos"})


def compile_header(hyperparameters: dict[str, Any], *, start_fingerprint: str, models: dict[str, str],
                   evol_answers: dict[str, Any], detector_rules: list[str], data: dict[str, Any]) -> RunHeader:
    """The ``run.json`` of an Auto Evol-Instruct compile: what a resume must share with the run it
    continues (``evol_answers``: :func:`~autoevol.optimizers.auto_evol.roles.evol_answer_settings`)."""
    ignored = RESUMABLE_SETTINGS | (set() if hyperparameters["max_demos"] else DEMO_SETTINGS)
    settings = {key: value for key, value in hyperparameters.items() if key not in ignored}
    settings.update(models=models, **evol_answers, detector_rules=detector_rules)
    return RunHeader(autoevol_version=__version__, start_method_fingerprint=start_fingerprint,
                     settings=settings, data=data)
