"""SIGKILL ``autoevol evolve`` at random points of its work; the resumed job loses, duplicates and re-pays nothing."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

from autoevol.data import read_rows
from autoevol.testing.fake_openai import request_key, serve_in_subprocess

ROWS = 100
CONCURRENCY = 4
PROBE_KEY = request_key([{"role": "user", "content": "Reply with OK."}])


#: Journal lines (of 2 * ROWS) after which the three kills land: one window each, chosen at random in it.
KILL_WINDOWS = [(5, 40), (70, 110), (130, 170)]


def journal_lines(journal: Path) -> int:
    """Complete rows in the journal so far (a torn last line does not count)."""
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def wait_for_lines(journal: Path, target: int, process: subprocess.Popen, deadline: float = 120.0) -> int:
    """Poll until the journal holds ``target`` rows, the process ends, or ``deadline`` seconds pass."""
    give_up = time.monotonic() + deadline
    while (lines := journal_lines(journal)) < target and process.poll() is None and time.monotonic() < give_up:
        time.sleep(0.005)
    return lines if process.poll() is None else min(lines, target - 1)


def test_sigkill_then_resume_gives_one_row_per_input_and_repeats_no_completed_call(tmp_path: Path):
    data = tmp_path / "seed.jsonl"
    data.write_text("".join(json.dumps({"id": f"k{i}", "instruction": f"List {i} prime numbers and explain."})
                            + "\n" for i in range(ROWS)))
    out = tmp_path / "out.jsonl"
    rng = random.Random(1234)
    env = {**os.environ, "OPENAI_API_KEY": "test"}
    with serve_in_subprocess(latency=0.05) as server:
        command = [shutil.which("autoevol") or "autoevol", "evolve", str(data), "-o", str(out), "--evol-lm",
                   "openai/fake", "--api-base", server.url, "--timeout", "30", "--retries", "2", "--backoff", "0.01",
                   "--concurrency", str(CONCURRENCY), "--rounds", "2"]
        journal = Path(str(out) + ".partial.jsonl")
        written = []
        # each kill lands after a random number of journal lines (rows), counted over all runs so far
        for run, (low, high) in enumerate(KILL_WINDOWS):
            log = tmp_path / f"run-{run}.log"
            with open(log, "wb") as stderr:
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
                target = rng.randint(low, high)
                reached = wait_for_lines(journal, target, process)
                process.send_signal(signal.SIGKILL)
                process.wait()
            assert reached >= target, f"the job ended before {target} rows: {log.read_text()[-2000:]}"
            written.append(journal_lines(journal))
        assert not out.exists()
        assert written == sorted(written) and written[-1] < 2 * ROWS, written  # every kill landed mid-job
        final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        assert final.returncode == 0, final.stderr
        stats = server.stats()
    ids = [row["id"] for row in read_rows(out)]
    expected = [f"k{i}:r{r}" for i in range(ROWS) for r in (1, 2)]
    assert sorted(ids) == sorted(expected)  # exactly one row per input per round
    repeated = {key: n for key, n in stats.repeated_completions.items() if key != PROBE_KEY}
    # Only calls in flight at a kill may be paid again (answered by the server, not yet committed to
    # the call cache): at most `concurrency` per kill. Every call completed before a kill is a cache hit.
    assert sum(n - 1 for n in repeated.values()) <= 3 * CONCURRENCY, repeated
    assert stats.ok <= len(expected) * 2 + 4 * 3 * CONCURRENCY
    assert not list(tmp_path.glob("out.jsonl.partial*"))
