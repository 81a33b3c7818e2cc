"""Run records that survive the machine: a benchmark's folder of JSON lines, committed as it grows.

Real-model measurements here take hours, and a machine can be replaced before anyone commits its
scratch folders. A benchmark that keeps its per-item lines under ``benchmarks/runs/<name>/``
(tracked in git) calls :meth:`GitCheckpoint.due_commit` after every finished item; every
``--commit-every`` minutes the folder is committed on the current branch, alone (other staged or
modified files are left as they are). A failed commit (another git command holding the index,
say) is reported and tried again at the next item; outside a git checkout nothing is committed.

:func:`replace_section` writes a benchmark's tables into ``benchmarks/RESULTS.md`` between markers
of its own, so the file is regenerated from the records rather than edited by hand.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path


class GitCheckpoint:
    """Commits ``folder`` every ``every_minutes`` (``None``: never) and once more at :meth:`final_commit`."""

    def __init__(self, folder: Path, every_minutes: float | None, label: str) -> None:
        self.folder, self.label = folder.resolve(), label
        self.every = None if every_minutes is None else 60 * every_minutes
        self.last = time.monotonic()
        self._lock = threading.Lock()
        self.enabled = self.every is not None and self._git("rev-parse", "--is-inside-work-tree").returncode == 0
        if self.every is not None and not self.enabled:
            print(f"note: {self.folder} is not in a git checkout; its records are not committed", file=sys.stderr)

    def due_commit(self) -> None:
        """Commit the folder if the interval has passed since the last commit."""
        if self.enabled and time.monotonic() - self.last >= self.every:
            self.final_commit()

    def final_commit(self) -> None:
        """Commit the folder now, if anything in it changed."""
        if not self.enabled:
            return
        with self._lock:
            self._commit()

    def _commit(self) -> None:
        self.last = time.monotonic()
        added = self._git("add", "--", str(self.folder))
        changed = self._git("status", "--porcelain", "--", str(self.folder))
        if added.returncode != 0 or not changed.stdout.strip():
            return
        lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in self.folder.rglob("*.jsonl"))
        done = self._git("commit", "-q", "-m", f"{self.label}: run records, {lines} lines", "--", str(self.folder))
        if done.returncode != 0:
            print(f"warning: could not commit {self.folder} (will try again): {done.stderr.strip()[:200]}",
                  file=sys.stderr)
        else:
            print(f"committed {self.folder.name}: {lines} lines", file=sys.stderr, flush=True)

    def _git(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        return subprocess.run(["git", *args], cwd=self.folder, capture_output=True, text=True)


def replace_section(path: Path, name: str, markdown: str) -> None:
    """Put ``markdown`` between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in ``path``
    (replacing what was there; appended with its markers when they are missing)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text.split(begin, 1)[1]:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    path.write_text(text, encoding="utf-8")
