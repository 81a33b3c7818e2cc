"""``Evolver``: the compiled artifact. Its one predictor's instructions are the evolving method."""

from __future__ import annotations

import copy
import datetime as _dt
import json
from pathlib import Path
from typing import Any

import dspy

from autoevol.records import fingerprint
from autoevol.signatures.evolve import INITIAL_METHOD, EvolveInstruction

#: Identifies evolver files; bump FORMAT_VERSION when the file layout changes incompatibly.
FORMAT_NAME = "autoevol.evolver"
FORMAT_VERSION = 1


class EvolverFileError(ValueError):
    """An evolver file is missing, corrupt, foreign, or of an incompatible format version."""


class Evolver(dspy.Module):
    """Rewrites an instruction into a harder version of itself, following an evolving method.

    The method is the instruction text of the ``evolve`` predictor's signature; optimizing the
    evolver means rewriting that text. ``evolved_instruction`` is a fixed output field, so a
    method never has to describe the output format.

    Example:
        >>> evolver = Evolver()                                    # e_0
        >>> with dspy.context(lm=lm):                              # doctest: +SKIP
        ...     evolver(instruction="Add 2 and 3.").evolved_instruction
    """

    def __init__(self, method: str = INITIAL_METHOD, *, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not method or not method.strip():
            raise ValueError("an evolving method cannot be empty")
        self.evolve = dspy.Predict(EvolveInstruction.with_instructions(method.strip()))
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def method(self) -> str:
        """The evolving method text."""
        return self.evolve.signature.instructions

    @property
    def fingerprint(self) -> str:
        """A short hash of the method, recorded on every output row."""
        return fingerprint(self.method)

    @property
    def candidate(self) -> dict[str, str]:
        """The method as plain data: ``{predictor_name: instruction_text}``."""
        return {"evolve": self.method}

    def with_method(self, method: str) -> Evolver:
        """A new Evolver following ``method``, with a copy of this one's metadata."""
        return Evolver(method, metadata=copy.deepcopy(self.metadata))

    def forward(self, instruction: str) -> dspy.Prediction:
        """Evolve one instruction; returns ``evolved_instruction`` and ``working_notes``."""
        return self.evolve(instruction=instruction)

    def trajectory(self, instruction: str, rounds: int = 1) -> list[str]:
        """Evolve ``rounds`` times in a row; returns every stage, stage 0 being the original."""
        stages = [instruction]
        for _ in range(rounds):
            stages.append(self(instruction=stages[-1]).evolved_instruction)
        return stages

    def save(self, path: str | Path) -> Path:
        """Write the method and metadata as one JSON file (never any secret)."""
        from autoevol import __version__

        path = Path(path)
        document = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "autoevol_version": __version__,
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "method": self.method,
            "method_fingerprint": self.fingerprint,
            "metadata": self.metadata,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Evolver:
        """Read an evolver file written by :meth:`save`."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EvolverFileError(f"{path}: no such evolver file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EvolverFileError(f"{path}: not an evolver file (invalid JSON: {error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
            raise EvolverFileError(f"{path}: not an evolver file (no '{FORMAT_NAME}' format marker)")
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise EvolverFileError(
                f"{path}: evolver format version {version} is not supported by this autoevol "
                f"(expects version {FORMAT_VERSION})"
            )
        method = document.get("method")
        if not isinstance(method, str) or not method.strip():
            raise EvolverFileError(f"{path}: the evolver file has no method text")
        return cls(method, metadata=document.get("metadata") or {})
