"""What a compile spent over all its runs, kept in a small record so that an interrupted run's
calls are not lost from the usage of the run that finishes.

A compile checkpoints whole phases (the start measurement, each step). A phase interrupted halfway
and resumed used to record only the calls of the run that finished it: the earlier run's calls were
answered from the call cache (on the same machine) or replayed from the measurement log (on any
machine), and so appeared nowhere. :class:`Spending` writes the running totals of a phase (or, for
GEPA, of its whole search) to a record as the work goes on; a resumed run starts from them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from autoevol.optimizers.auto_evol.records import StartRecord, UsageDelta
from autoevol.optimizers.auto_evol.roles import CompileLMs
from autoevol.optimizers.auto_evol.run_dir import RunDirError, write_json


class Spending:
    """LM usage by role, LM calls and seconds of this run since it was built, plus those of the earlier
    runs that ``record`` kept (``None``: no record, this run alone).

    ``earlier`` is what a record written by an older version lacks: the usage and seconds of a
    finished run's start record.

    Raises:
        RunDirError: ``record`` exists but cannot be read.
    """

    def __init__(self, lms: CompileLMs, record: Path | None, earlier: StartRecord | None = None) -> None:
        self.lms, self.record = lms, record
        self.before, self.clock = lms.usage(), time.monotonic()
        self.earlier_calls = 0
        self.earlier_usage = list(earlier.usage) if earlier is not None else []
        self.earlier_seconds = earlier.seconds if earlier is not None else 0.0
        if record is not None and record.exists():
            try:
                document = json.loads(record.read_text(encoding="utf-8"))
                self.earlier_calls = int(document["lm_calls"])
                if "usage" in document:
                    self.earlier_usage = [UsageDelta.model_validate(usage) for usage in document["usage"]]
                    self.earlier_seconds = float(document["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                raise RunDirError(f"{record}: unreadable record of what the compile spent") from None

    def usage(self) -> list[UsageDelta]:
        """Usage per role of the earlier runs plus this one's."""
        totals = {usage.role: usage for usage in self.earlier_usage}
        for usage in self.lms.usage_since(self.before):
            totals[usage.role] = totals[usage.role].plus(usage) if usage.role in totals else usage
        return list(totals.values())

    def calls(self) -> int:
        """LM calls of the earlier runs plus this one's, every role counted."""
        return self.earlier_calls + sum(usage.calls for usage in self.lms.usage_since(self.before))

    def seconds(self) -> float:
        """Seconds of the earlier runs plus this one's so far."""
        return round(self.earlier_seconds + time.monotonic() - self.clock, 3)

    def save(self) -> None:
        """Write the totals to the record (nothing without one)."""
        if self.record is not None:
            write_json(self.record, {"lm_calls": self.calls(), "seconds": self.seconds(),
                                     "usage": [usage.model_dump(mode="json") for usage in self.usage()]})
