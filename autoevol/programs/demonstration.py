"""Demonstrations: worked examples an Evolver shows the evol LM before each instruction.

A demonstration is plain data: an instruction, the working notes of its rewrite and the evolved
instruction, plus where it came from. The Evolver keeps its demonstrations as the ``demos`` of
its ``evolve`` predictor (``dspy.Example`` with the signature's fields), so DSPy's adapter puts
them in the prompt as it does for any few-shot program, and DSPy's own state format carries them.

A candidate of a compile is an evolving method together with its demonstrations
(:class:`Candidate`); its fingerprint is the method's when it carries none. It is the one type for
that pair: a compile's measured methods are candidates, and its candidate records hold one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import dspy
from pydantic import BaseModel, ConfigDict, Field, computed_field

from autoevol.records import fingerprint

#: How a demonstration came to be: a successful evolution seen during a compile (``observed``), a
#: rewrite the optimizer LM wrote for a failed trajectory case that then passed every rule
#: (``teacher``), or one given by the user (``given``).
DemoOrigin = Literal["observed", "teacher", "given"]

#: The signature fields a demonstration fills, in the order DSPy shows them.
DEMO_FIELDS = ("instruction", "working_notes", "evolved_instruction")


class Demo(BaseModel):
    """One worked example: an instruction and a good harder rewrite of it, with its working notes."""

    model_config = ConfigDict(frozen=True)

    instruction: str
    working_notes: str = ""
    evolved_instruction: str
    origin: DemoOrigin = "given"
    item_id: str | None = Field(default=None, description="the training item it was drawn from")
    step: int | None = Field(default=None, description="the compile step that found it")

    @property
    def key(self) -> str:
        """A short hash of the three fields the evol LM sees (provenance left out)."""
        return fingerprint(json.dumps([self.instruction, self.working_notes, self.evolved_instruction],
                                      ensure_ascii=False))

    def example(self) -> dspy.Example:
        """The demonstration as DSPy's predictor keeps it: the signature's fields and the provenance."""
        return dspy.Example(**self.model_dump())

    @classmethod
    def coerce(cls, value: Demo | dspy.Example | Mapping[str, Any]) -> Demo:
        """A Demo from a Demo, a ``dspy.Example`` or a mapping (as DSPy's state format stores demos)."""
        if isinstance(value, Demo):
            return value
        data = value.toDict() if isinstance(value, dspy.Example) else dict(value)
        missing = [name for name in ("instruction", "evolved_instruction") if not isinstance(data.get(name), str)]
        if missing:
            raise ValueError(f"a demonstration needs the text field(s) {', '.join(missing)}")
        known = {name: data[name] for name in cls.model_fields if data.get(name) is not None}
        known["working_notes"] = str(known.get("working_notes") or "")
        return cls(**known)


class Candidate(BaseModel):
    """A compile's candidate: an evolving method and the demonstrations it carries."""

    model_config = ConfigDict(frozen=True)

    method: str
    demos: tuple[Demo, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """The method's fingerprint without demonstrations; otherwise one over both (serialized with
        the candidate, and computed again, not read, when a record is loaded)."""
        return candidate_fingerprint(self.method, self.demos)


def candidate_fingerprint(method: str, demos: Iterable[Demo] = ()) -> str:
    """A short hash of a method and its demonstrations (the method's own when there are none)."""
    keys = [demo.key for demo in demos]
    return fingerprint(method) if not keys else fingerprint(json.dumps([method, keys], ensure_ascii=False))


def demo_keys(demos: Iterable[Demo]) -> frozenset[str]:
    """A demonstration set as a comparable value (order does not matter)."""
    return frozenset(demo.key for demo in demos)
