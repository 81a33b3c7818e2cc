"""Scripted worlds of known truth for the compile's selection: is a reported gain real?

Every evolving method has a true failure rate: ``start_rate`` lowered by ``gain`` for each
``[better]`` mark its text carries. Which items a method fails is drawn per item: with probability
``flip`` from a hash of the method and the item (a new prompt changes the verdict), otherwise from
a hash of the item alone (the verdict every method of that rate shares). ``flip=1`` makes methods
of equal rate fail on entirely different items; the small evol LM measured here changes about a
third of its verdicts when its prompt changes (15 and 13 discordant items of 40), which
``flip=0.45`` resembles (two methods of rate 0.5 then disagree on about 35% of the items). A failed evolution returns the instruction unchanged (rule ``unchanged``).

The optimizer LM proposes edits with a fresh rule each time; in the *null* world
(``better_every=0``) no rule changes the rate, so every accepted candidate is noise; with
``better_every=3`` every third proposal carries the mark and is truly ``gain`` better.

Compiles in a world start from :data:`START`, a fixed method of its own, so that rewording e_0
does not draw the world's verdicts anew.

Example:
    >>> world = SelectionWorld(seed=1, better_every=3)
    >>> evol_lm, optimizer_lm = world.lms()
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from autoevol.lm.managed import ManagedLM
from autoevol.testing.scripted import ScriptedRequest, edit_reply, scripted_lm

#: The mark of a truly better rule.
MARK = "[better]"
#: The starting method of a compile in a world (fixed, unlike e_0's wording).
START = "Rewrite the given instruction into a harder version of itself, keeping every part of it."


def unit(*parts: str) -> float:
    """A stable number in [0, 1) for the given texts."""
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12], 16) / 16**12


class SelectionWorld:
    """The evol and optimizer scripts of one world, and the truth behind them."""

    def __init__(self, *, seed: int = 0, start_rate: float = 0.5, gain: float = 0.2, better_every: int = 0,
                 flip: float = 1.0, floor: float = 0.05) -> None:
        self.seed, self.start_rate, self.gain, self.floor = seed, start_rate, gain, floor
        self.better_every, self.flip = better_every, flip
        self.proposals = 0
        self._lock = threading.Lock()

    def failure_rate(self, method: str) -> float:
        """The true failure rate of a method."""
        return max(self.floor, self.start_rate - self.gain * method.count(MARK))

    def fails(self, method: str, instruction: str) -> bool:
        """Whether ``method`` fails to evolve ``instruction`` (deterministic)."""
        own = unit(str(self.seed), "flip", method, instruction) < self.flip
        draw = unit(str(self.seed), method, instruction) if own else unit(str(self.seed), instruction)
        return draw < self.failure_rate(method)

    def evol(self, request: ScriptedRequest) -> dict[str, Any]:
        if "evolved_instruction" in request.outputs:
            text = request.inputs.get("instruction", "")
            if self.fails(request.instructions, text):
                return {"working_notes": "nothing to add", "evolved_instruction": text}
            return {"working_notes": "add a requirement",
                    "evolved_instruction": f"{text} Then justify each step and give two worked examples."}
        return {"answer": "A complete, careful answer that covers every part of the task in detail."}

    def optimizer(self, request: ScriptedRequest) -> dict[str, Any]:
        if "new_rules" in request.outputs:
            with self._lock:
                self.proposals += 1
                number = self.proposals
            better = self.better_every > 0 and number % self.better_every == 0
            rule = (f"Keep every part of the task and add one fitting requirement, variant {number} {MARK}" if better
                    else f"Keep every part of the task and vary one detail, variant {number}.")
            return edit_reply([rule])
        if "issues" in request.outputs:
            return {"issues": json.dumps([]), "feedback": "Make every rewrite change the instruction."}
        return {name: "ok" for name in request.outputs}

    def lms(self) -> tuple[ManagedLM, ManagedLM]:
        """(evol LM, optimizer LM), both scripted, without DSPy's cache."""
        return (scripted_lm(self.evol, role="evol", cache=False),
                scripted_lm(self.optimizer, role="optimizer", cache=False))


def instructions(count: int) -> list[str]:
    """``count`` distinct plain instructions for a world's compile."""
    return [f"Describe method {i} for planning a trip of {i % 9 + 2} days on a budget." for i in range(count)]
