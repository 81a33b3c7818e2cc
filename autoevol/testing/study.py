"""A scripted world for hyperparameter studies: more candidates and more steps lower the failure rate.

The evolving method's *level* is the number of ``[refined]`` marks in it. The optimizer LM, asked
for an improved method, adds a mark with probability ``improve_p`` per candidate (seeded RNG), so a
step with more candidates is more likely to find a better method and more steps compound. The evol
LM fails an instruction (returns it unchanged, rule ``unchanged``) when the instruction's stable hash
bucket is below the failure share of the method's level; otherwise it evolves it, and answers every
answer request well. Failure rate therefore falls with the level, the same way on dev and held-out
items.

Example:
    >>> world = StudyWorld(seed=0)
    >>> evol, optimizer = world.lms()
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Callable
from typing import Any

from autoevol.lm.managed import ManagedLM
from autoevol.testing.scripted import ScriptedRequest, edit_reply, scripted_lm

MARK = "[refined]"


def bucket(text: str) -> float:
    """A stable number in [0, 1) for a text."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0x100000000


def level_of(method: str) -> int:
    return method.count(MARK)


def seed_instructions(count: int, prefix: str = "task") -> list[str]:
    """``count`` distinct, plain instructions."""
    return [f"Explain {prefix} number {i} about sorting lists of {i + 2} integers." for i in range(count)]


class StudyWorld:
    """Both scripts of a study (evol and optimizer) and the law linking level to failure rate."""

    def __init__(self, *, seed: int = 0, improve_p: float = 0.3, base_rate: float = 0.9,
                 gain: float = 0.25, floor: float = 0.05) -> None:
        self.improve_p = improve_p
        self.base_rate = base_rate
        self.gain = gain
        self.floor = floor
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def fail_share(self, level: int) -> float:
        return max(self.floor, self.base_rate - self.gain * level)

    def evol(self, request: ScriptedRequest) -> dict[str, Any]:
        if "evolved_instruction" in request.outputs:
            text = request.inputs.get("instruction", "")
            if bucket(text.split(" Then ")[0]) < self.fail_share(level_of(request.instructions)):
                return {"working_notes": "nothing to add", "evolved_instruction": text}
            return {"working_notes": "add a constraint",
                    "evolved_instruction": f"{text} Then justify each step and give two examples."}
        return {"answer": "Here is a complete and careful answer with all the details requested."}

    def optimizer(self, request: ScriptedRequest) -> dict[str, Any]:
        if "improved_method" in request.outputs:
            current = request.inputs.get("current_method", "")
            with self._lock:
                better = self._rng.random() < self.improve_p
            return {"improved_method": f"{current} {MARK}" if better else current + " Be careful."}
        if "new_rules" in request.outputs:  # an edit proposal: one rule, better with improve_p
            with self._lock:
                better = self._rng.random() < self.improve_p
                number = self._rng.randrange(10**6)
            rule = f"Keep the task and add one fitting requirement {MARK}" if better else f"Be careful, note {number}."
            return edit_reply([rule])
        if "issues" in request.outputs:
            return {"issues": json.dumps([]), "feedback": "Make every rewrite change the instruction."}
        return {name: "ok" for name in request.outputs}

    def lms(self, **kwargs: Any) -> tuple[ManagedLM, ManagedLM]:
        """(evol LM, optimizer LM), both scripted (DSPy's cache off: every trial draws afresh)."""
        kwargs.setdefault("cache", False)
        return (scripted_lm(self.evol, role="evol", **kwargs),
                scripted_lm(self.optimizer, role="optimizer", **kwargs))


def chat_responder(world: StudyWorld, role: str):
    """A responder for :class:`autoevol.testing.fake_openai.FakeOpenAIServer` playing ``role``."""
    from autoevol.testing.scripted import _WANTED, format_fields, parse_fields

    script = world.evol if role == "evol" else world.optimizer

    def respond(messages: list[dict], body: dict) -> str:
        def text(message: dict) -> str:
            content = message.get("content")
            if isinstance(content, list):
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content or ""

        system = "".join(text(m) for m in messages if m.get("role") == "system")
        user = text([m for m in messages if m.get("role") == "user"][-1])
        cut = user.rfind("Respond with the corresponding output fields")
        outputs = [n for n in _WANTED.findall(user[cut:]) if n != "completed"] if cut >= 0 else []
        inputs = parse_fields(user[:cut] if cut >= 0 else user)
        request = ScriptedRequest(system=system, user=user, inputs=inputs, outputs=outputs,
                                  temperature=body.get("temperature"))
        return format_fields(script(request))

    return respond


def both_roles(seed: int = 0) -> Callable[[list[dict], dict], str]:
    """A fake-server responder answering the evol and the optimizer requests of a new ``StudyWorld(seed=seed)``.

    Each call makes a world of its own, so the optimizer's draws of one server never depend on the
    requests another server (or an earlier test) answered.
    """
    world = StudyWorld(seed=seed)
    roles = {role: chat_responder(world, role) for role in ("evol", "optimizer")}
    optimizer_fields = ("improved_method", "`[[ ## new_rules ## ]]`", "`[[ ## issues ## ]]`")

    def respond(messages: list[dict], body: dict) -> str:
        user = str(messages[-1].get("content", "")) if messages else ""
        role = "optimizer" if any(field in user for field in optimizer_fields) else "evol"
        return roles[role](messages, body)

    return respond


SPACE = {"num_candidates": {"low": 1, "high": 4}, "max_steps": {"low": 1, "high": 2}, "batch_size": 2,
         "dev_size": {"low": 6, "high": 8}, "evolution_rounds": 1}


class SlowTeleprompter:
    """Sleeps ``seconds`` per step (to kill a worker mid-trial in tests); returns the student."""

    seconds = 30.0

    def __init__(self, params: dict[str, Any], step_callback: Any) -> None:
        self.callback = step_callback

    def compile(self, student: Any, *, trainset: Any, valset: Any = None) -> Any:
        import time

        time.sleep(self.seconds)
        self.callback(1, {"selected": {"failure_rate": 0.5}})
        return student


def run_worker(storage: str, study_name: str, n_trials: int, *, seed: int = 0, slow: bool = False,
               heartbeat: int | None = None) -> None:
    """One study worker on scripted LMs (used by the multi-process tests as ``python -c``)."""
    import optuna

    from autoevol.optimizers.tuning import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evol, optimizer = StudyWorld(seed=seed).lms()
    items = seed_instructions(40)
    tune(items[:30], heldout=items[30:], n_trials=n_trials, storage=storage, study_name=study_name,
         search_space=SPACE, evol_lm=evol, optimizer_lm=optimizer, seed=seed, num_threads=1,
         heartbeat_interval=heartbeat, grace_period=2 * heartbeat if heartbeat else None,
         teleprompter_factory=SlowTeleprompter if slow else None)
