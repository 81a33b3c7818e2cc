"""Progress of a compile: each step's stages report how much of their work is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StageProgress:
    """Progress of one stage of a step: ``trajectory``, ``analysis`` or ``evaluation``.

    Step 0 is the measurement of the starting method before the first step.
    """

    step: int
    stage: str
    done: int
    total: int


ProgressCallback = Callable[[StageProgress], None]


class Stage:
    """Counts the work of one stage of a step and reports it to the progress callback, if any."""

    def __init__(self, step: int, name: str, progress: ProgressCallback | None, *, planned: int = 0) -> None:
        self.step, self.name, self.progress = step, name, progress
        self.done, self.total = 0, 0
        self.plan(planned)

    def plan(self, count: int) -> None:
        """Add ``count`` items of work (a stage may learn its size in parts, as racing goes on)."""
        self.total += count
        self._report()

    def advance(self, count: int = 1) -> None:
        """Mark ``count`` items done."""
        self.done += count
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(StageProgress(step=self.step, stage=self.name, done=self.done, total=self.total))
