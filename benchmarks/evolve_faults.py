"""Throughput of ``autoevol evolve`` at 0%, 10% and 30% injected faults, as a share of fault-free.

    python benchmarks/evolve_faults.py [ROWS]     # default 1000
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoevol.testing.fake_openai import FaultPlan, serve_in_subprocess


def plan(rate: float) -> FaultPlan:
    share = rate / 5
    return FaultPlan(error_500=share, rate_limit_429=share, retry_after=0.2, timeout=share, hang_seconds=5.0,
                     drop=share, garbage=share)


def main(rows: int) -> None:
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "seed.jsonl"
        data.write_text("".join(json.dumps({"id": f"f{i}", "instruction": f"Describe item {i}."}) + "\n"
                                for i in range(rows)))
        for rate in (0.0, 0.1, 0.3):
            with serve_in_subprocess(latency=0.05, faults=plan(rate), seed=1) as server:
                out = Path(tmp) / f"out{rate}.jsonl"
                command = [shutil.which("autoevol") or "autoevol", "evolve", str(data), "-o", str(out),
                           "--evol-lm", "openai/fake", "--api-base", server.url, "--concurrency", "32",
                           "--timeout", "1", "--retries", "3", "--backoff", "0.1"]
                started = time.monotonic()
                result = subprocess.run(command, capture_output=True, text=True,
                                        env={**os.environ, "OPENAI_API_KEY": "x"})
                speed = rows / (time.monotonic() - started)
                base = base or speed
                failed = sum(1 for line in open(out) if json.loads(line)["failed"]) if out.exists() else -1
                print(f"[measured] faults {rate:.0%}: exit {result.returncode}, {speed:.1f} rows/s "
                      f"({speed / base:.0%} of fault-free), failed rows {failed}, requests {server.stats().requests}",
                      flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
