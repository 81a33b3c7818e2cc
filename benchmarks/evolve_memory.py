"""Peak RSS of ``autoevol evolve`` as the input grows (fake server answering instantly).

    python benchmarks/evolve_memory.py [ROWS ...]     # default: 10000 50000 200000
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

from autoevol.testing.fake_openai import serve_in_subprocess


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, serve_in_subprocess(latency=0.0) as server:
        for rows in sizes:
            data = Path(tmp) / f"seed{rows}.jsonl"
            with open(data, "w") as handle:
                for i in range(rows):
                    handle.write(json.dumps({"id": f"m{i}", "instruction": f"Explain fact number {i} in detail."}) + "\n")
            out = Path(tmp) / f"out{rows}.jsonl"
            command = ["/usr/bin/time", "-f", "%M", shutil.which("autoevol") or "autoevol", "evolve", str(data),
                       "-o", str(out), "--evol-lm", "openai/fake", "--api-base", server.url, "--concurrency", "32"]
            started = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True,
                                    env={**os.environ, "OPENAI_API_KEY": "x"})
            seconds = time.monotonic() - started
            peak_kb = int(result.stderr.strip().splitlines()[-1]) if result.returncode == 0 else -1
            print(f"[measured] {rows} rows: exit {result.returncode}, peak RSS {peak_kb / 1024:.0f} MB, "
                  f"{seconds:.0f} s ({rows / seconds:.0f} rows/s)", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 50_000, 200_000])
