"""Plain Evol-Instruct: the classic hand-written evolving operations, as a baseline program.

Evol-Instruct (Xu et al., arXiv 2304.12244) rewrites each instruction with one operation picked at
random: five "in-depth" operations that make the same task harder, and one "in-breadth" operation
that writes a new, rarer instruction in the same domain. The operation texts below are our own
wording of those ideas. :class:`EvolInstructBaseline` has the call interface of
:class:`~autoevol.programs.evolver.Evolver`, so failure rates and quality can be compared directly.
"""

from __future__ import annotations

import random

import dspy

from autoevol.programs.evolver import Evolver
from autoevol.records import fingerprint
from autoevol.signatures.evolve import WEAK_METHOD, EvolveInstruction

_COMMON_TAIL = (
    " Keep the result a single instruction a person could answer, in the same language as the "
    "original, adding no more than about 10 to 20 words. Give only the rewritten instruction as the "
    "evolved instruction: do not answer it and do not describe what you changed."
)

#: The operations, by name: five in-depth ones and one in-breadth one (our own wording).
OPERATIONS: dict[str, str] = {
    "add_constraints": (
        "Make the instruction harder by adding one more constraint or requirement that the answer "
        "must satisfy, such as a limit, a condition or a required format."
    ),
    "deepen": (
        "Make the instruction harder by asking for more depth: if it touches on a question or an "
        "issue, widen or deepen what the answer has to explore about it."
    ),
    "concretize": (
        "Make the instruction harder by replacing general ideas in it with more specific, concrete "
        "ones, so that the answer has to deal with particular cases."
    ),
    "increase_reasoning": (
        "Make the instruction harder by turning a task that is solved in a few simple steps into one "
        "that explicitly needs several steps of reasoning."
    ),
    "complicate_input": (
        "Make the instruction harder by giving it a richer input to work on, such as a table, a code "
        "snippet, a formula or structured data, that the answer must use."
    ),
    "in_breadth": (
        "Write a brand-new instruction inspired by the given one: it belongs to the same domain but "
        "covers a rarer, less common topic, and is about as long and as difficult."
    ),
}

#: Operation names that keep the task (in-depth) and the one that writes a new task (in-breadth).
IN_DEPTH: tuple[str, ...] = ("add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input")
IN_BREADTH: tuple[str, ...] = ("in_breadth",)


def operation_method(name: str) -> str:
    """The full evolving method text of one operation."""
    return f"You rewrite an instruction. {OPERATIONS[name]}{_COMMON_TAIL}"


def starting_methods() -> dict[str, str]:
    """Methods a compile can race against its student's before optimizing: the paper's one-line weak
    method, and each classic operation as a method of its own, by name."""
    return {"weak": WEAK_METHOD, **{name: operation_method(name) for name in OPERATIONS}}


class EvolInstructBaseline(dspy.Module):
    """Evol-Instruct with hand-written operations, one picked per instruction.

    The pick is a seeded random choice keyed by the instruction text, so the same instruction
    always gets the same operation for a given ``seed`` (reproducible and thread-safe).

    Example:
        >>> baseline = EvolInstructBaseline(seed=0)
        >>> baseline.operation_for("Add 2 and 3.") in OPERATIONS
        True
    """

    def __init__(self, *, seed: int = 0, operations: tuple[str, ...] = IN_DEPTH + IN_BREADTH) -> None:
        super().__init__()
        unknown = [name for name in operations if name not in OPERATIONS]
        if unknown or not operations:
            raise ValueError(f"unknown or no operations: {unknown or operations}")
        self.seed = seed
        self.operations = tuple(operations)
        self.predictors_by_operation = {
            name: dspy.Predict(EvolveInstruction.with_instructions(operation_method(name))) for name in self.operations
        }

    @property
    def method(self) -> str:
        """Every operation's method text, one section per operation."""
        return "\n\n".join(f"[{name}] {operation_method(name)}" for name in self.operations)

    @property
    def fingerprint(self) -> str:
        """A short hash of the operations and the seed."""
        return fingerprint(f"evol-instruct:{self.seed}:{self.method}")

    def operation_for(self, instruction: str) -> str:
        """The operation this baseline applies to ``instruction``."""
        return random.Random(f"{self.seed}:{instruction}").choice(self.operations)

    def forward(self, instruction: str) -> dspy.Prediction:
        """Evolve one instruction with its operation; the prediction also names the ``operation``."""
        name = self.operation_for(instruction)
        prediction = self.predictors_by_operation[name](instruction=instruction)
        return dspy.Prediction(
            evolved_instruction=prediction.evolved_instruction,
            working_notes=getattr(prediction, "working_notes", ""),
            operation=name,
        )


#: The name of the initial method e_0, and of the classic operations drawn one per instruction.
INITIAL_NAME = "e0"
CLASSIC_NAME = "evol-instruct"


def method_names() -> list[str]:
    """The names :func:`named_program` knows: e_0, the classic operations, and each starting method."""
    return [INITIAL_NAME, CLASSIC_NAME, *starting_methods()]


def named_program(name: str, *, seed: int = 0) -> Evolver | EvolInstructBaseline:
    """The evolving program called ``name``, for evolving a dataset without a compiled evolver.

    ``e0`` is the initial method; ``evol-instruct`` the classic operations, one drawn per instruction
    (``seed`` chooses the draw); any other name a starting method (``weak``, ``deepen``, ...) applied
    to every instruction. Raises ``ValueError`` for an unknown name.
    """
    if name == INITIAL_NAME:
        return Evolver()
    if name == CLASSIC_NAME:
        return EvolInstructBaseline(seed=seed)
    methods = starting_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; choose from: {', '.join(method_names())}")
    return Evolver(methods[name])
