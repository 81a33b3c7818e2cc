"""``Evolver``: the compiled artifact. Its one predictor's instructions are the evolving method,
its demonstrations the worked examples shown before each instruction.

An evolver file is one JSON document: the readable ``method`` and ``demos``, autoevol's
``metadata`` (with DSPy's ``dependency_versions``), and ``evolve``, the predictor in DSPy's own
state format, so that ``dspy.Module.load`` reads the file too. Load one with ``Evolver().load(path)``
(the DSPy idiom) or :func:`load_evolver` (``autoevol.load``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy
from dspy.utils.saving import get_dependency_versions

from autoevol.metrics.rate import ItemOutcome, run_program
from autoevol.programs.demonstration import Candidate, Demo, candidate_fingerprint
from autoevol.records import Verdict
from autoevol.signatures.evolve import INITIAL_METHOD, EvolveInstruction
from autoevol.version import __version__

if TYPE_CHECKING:
    from autoevol.metrics.failure import FailureDetector

#: Identifies evolver files; bump FORMAT_VERSION when the file layout changes incompatibly.
FORMAT_NAME = "autoevol.evolver"
FORMAT_VERSION = 2
#: Versions :meth:`Evolver.load` reads (1: method and metadata only, without demonstrations).
READABLE_VERSIONS = (1, 2)
#: The key under which DSPy's state format keeps the predictor (its attribute name).
PREDICTOR = "evolve"

DemoLike = Demo | dspy.Example | Mapping[str, Any]


class EvolverFileError(ValueError):
    """An evolver file is missing, corrupt, foreign, or of an incompatible format version."""


@dataclass
class Trajectory:
    """One instruction evolved round after round: every stage (stage 0 the original) and how it ended.

    ``notes`` holds each evolution's working notes (one per stage after the original). ``verdict``
    is why the trajectory stopped early (its last stage failed), or passed; ``answer`` is the evol
    LM's answer to the last stage when the last round was answered.
    """

    stages: list[str]
    notes: list[str]
    verdict: Verdict
    answer: str | None = None


class Evolver(dspy.Module):
    """Rewrites an instruction into a harder version of itself, following an evolving method.

    The method is the instruction text of the ``evolve`` predictor's signature; optimizing the
    evolver means rewriting that text and choosing the predictor's ``demos`` (worked examples
    DSPy's adapter shows before each instruction). ``evolved_instruction`` is a fixed output
    field, so a method never has to describe the output format.

    Example:
        >>> evolver = Evolver()                                    # e_0, no demonstrations
        >>> with dspy.context(lm=lm):                              # doctest: +SKIP
        ...     evolver(instruction="Add 2 and 3.").evolved_instruction
    """

    def __init__(self, method: str = INITIAL_METHOD, *, demos: Iterable[DemoLike] = (),
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.evolve = dspy.Predict(EvolveInstruction.with_instructions(_checked_method(method)))
        self.evolve.demos = [Demo.coerce(demo).example() for demo in demos]
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def method(self) -> str:
        """The evolving method text."""
        return self.evolve.signature.instructions

    @property
    def demos(self) -> list[Demo]:
        """The demonstrations, read from the predictor (also after DSPy loaded them as dicts)."""
        return [Demo.coerce(demo) for demo in self.evolve.demos]

    @property
    def fingerprint(self) -> str:
        """A short hash of the method and its demonstrations, recorded on every output row."""
        return candidate_fingerprint(self.method, self.demos)

    @property
    def candidate(self) -> Candidate:
        """The evolver's parameters as plain data: the method and its demonstrations."""
        return Candidate(method=self.method, demos=tuple(self.demos))

    def with_method(self, method: str) -> Evolver:
        """A new Evolver following ``method``, with this one's demonstrations and a copy of its metadata."""
        return Evolver(method, demos=self.demos, metadata=copy.deepcopy(self.metadata))

    def with_demos(self, demos: Iterable[DemoLike]) -> Evolver:
        """A new Evolver with this one's method, ``demos`` and a copy of its metadata."""
        return Evolver(self.method, demos=demos, metadata=copy.deepcopy(self.metadata))

    def forward(self, instruction: str) -> dspy.Prediction:
        """Evolve one instruction; returns ``evolved_instruction`` and ``working_notes``."""
        return self.evolve(instruction=instruction)

    def trajectory(self, instruction: str, rounds: int = 1, *, detector: FailureDetector | None = None,
                   evaluate_last: Callable[[str], ItemOutcome] | None = None) -> Trajectory:
        """Evolve ``rounds`` times in a row, each stage from the previous one (S_t of the paper).

        A stage whose evolution fails (an LM error, no parseable ``evolved_instruction``) ends the
        trajectory with that verdict; with a ``detector``, so does a stage its evolution rules
        reject (``detect_evolution``: unchanged, copied the prompt, ...). With ``evaluate_last``,
        the last round is that function of the previous stage instead of a plain evolution
        (evolve, answer and judge by every rule, as the optimizer's analysis wants to see).
        ``BudgetExceeded`` and permanent LM errors propagate.

        Example:
            >>> with dspy.context(lm=lm):                          # doctest: +SKIP
            ...     Evolver().trajectory("Add 2 and 3.", rounds=2).stages
        """
        stages, notes = [instruction], []
        predictions: list[dspy.Prediction] = []

        def evolve(instruction: str) -> dspy.Prediction:
            predictions.append(self(instruction=instruction))
            return predictions[-1]

        for round_number in range(1, rounds + 1):
            if round_number == rounds and evaluate_last is not None:
                outcome = evaluate_last(stages[-1])
                if outcome.evolved is not None:
                    stages.append(outcome.evolved)
                    notes.append(outcome.notes or "")
                return Trajectory(stages, notes, outcome.verdict, outcome.answer)
            evolved, problem = run_program(evolve, "evolution", stages[-1], "evolved_instruction")
            if problem is not None:
                return Trajectory(stages, notes, problem)
            stages.append(evolved)
            notes.append(str(getattr(predictions[-1], "working_notes", "") or ""))
            verdict = detector.detect_evolution(stages[-2], evolved) if detector is not None else None
            if verdict is not None and verdict.failed:
                return Trajectory(stages, notes, verdict)
        return Trajectory(stages, notes, Verdict.passed())

    def save(self, path: str | Path, save_program: bool = False, modules_to_serialize: Any = None) -> Path:
        """Write the method, demonstrations and metadata as one JSON file (never any secret).

        The file also carries DSPy's state of the predictor (``evolve``, without any LM) and
        DSPy's ``dependency_versions``, so ``dspy.Module.load`` reads it as well. ``save_program``
        (DSPy's whole-program pickling) is not supported: an evolver is its state.
        """
        if save_program or modules_to_serialize is not None:
            raise ValueError("an Evolver is saved as its JSON state; save_program is not supported")
        path = Path(path)
        state = self.evolve.dump_state()
        state["lm"] = None  # the file describes the evolver, never an endpoint or a key
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "autoevol_version": __version__,
            "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "method": self.method,
            "method_fingerprint": self.fingerprint,
            "demos": [demo.model_dump(mode="json") for demo in self.demos],
            "metadata": {**self.metadata, "dependency_versions": get_dependency_versions()},
            PREDICTOR: state,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        temporary.replace(path)
        return path

    def load(self, path: str | Path, allow_pickle: bool = False, allow_unsafe_lm_state: bool = False) -> Evolver:
        """Load an evolver file into this evolver (method, demonstrations, metadata); returns it.

        The DSPy idiom: ``evolver = Evolver(); evolver.load("math-evolver.json")``. Reads files of
        every version in :data:`READABLE_VERSIONS`; the pickle and LM-state options of
        ``dspy.Module.load`` do not apply (an evolver file holds neither).

        Raises:
            EvolverFileError: the file is missing, not JSON, foreign, of another version, or
                inconsistent; the evolver is left unchanged.
        """
        method, demos, metadata = read_evolver_file(path)
        self.evolve.signature = self.evolve.signature.with_instructions(method)
        self.evolve.demos = [demo.example() for demo in demos]
        self.metadata = metadata
        return self


def load_evolver(path: str | Path) -> Evolver:
    """A new Evolver read from an evolver file (``autoevol.load``)."""
    return Evolver().load(path)


def read_evolver_file(path: str | Path) -> tuple[str, list[Demo], dict[str, Any]]:
    """The method, demonstrations and metadata of an evolver file, checked."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvolverFileError(f"{path}: no such evolver file") from None
    except IsADirectoryError:
        raise EvolverFileError(f"{path}: a folder, not an evolver file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvolverFileError(f"{path}: not an evolver file (invalid JSON: {error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise EvolverFileError(f"{path}: not an evolver file (no '{FORMAT_NAME}' format marker)")
    version = document.get("format_version")
    if version not in READABLE_VERSIONS:
        raise EvolverFileError(f"{path}: evolver format version {version} is not supported by this autoevol "
                               f"(reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    method = document.get("method")
    if not isinstance(method, str) or not method.strip():
        raise EvolverFileError(f"{path}: the evolver file has no method text")
    try:
        demos = [Demo.coerce(demo) for demo in document.get("demos") or []]
    except (TypeError, ValueError) as error:
        raise EvolverFileError(f"{path}: invalid demonstration in 'demos' ({error})") from None
    _check_dspy_state(path, document.get(PREDICTOR), method.strip(), demos)
    metadata = dict(document.get("metadata") or {})
    metadata.pop("dependency_versions", None)
    return method.strip(), demos, metadata


def _check_dspy_state(path: Path, state: Any, method: str, demos: list[Demo]) -> None:
    """DSPy's copy of the predictor must say what ``method`` and ``demos`` say (edit both, or drop it)."""
    if state is None:
        return
    try:
        instructions = state["signature"]["instructions"]
        their_demos = [Demo.coerce(demo) for demo in state.get("demos") or []]
    except (KeyError, TypeError, ValueError):
        raise EvolverFileError(f"{path}: the '{PREDICTOR}' block is not DSPy predictor state") from None
    if " ".join(str(instructions).split()) != " ".join(method.split()):
        raise EvolverFileError(f"{path}: 'method' and DSPy's '{PREDICTOR}.signature.instructions' differ; "
                               f"edit both, or remove the '{PREDICTOR}' block")
    if [demo.key for demo in their_demos] != [demo.key for demo in demos]:
        raise EvolverFileError(f"{path}: 'demos' and DSPy's '{PREDICTOR}.demos' differ; edit both, or remove "
                               f"the '{PREDICTOR}' block")


def _checked_method(method: str) -> str:
    if not method or not method.strip():
        raise ValueError("an evolving method cannot be empty")
    return method.strip()
