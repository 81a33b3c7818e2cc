"""How many threads a new llama.cpp server should get: the cores this process may use that are free.

llama.cpp's threads meet at a barrier after every step of a token, so a server with more threads
than free cores waits for its slowest thread, which waits for whatever else holds that core.
Measured on 2 cores: two 2-thread servers side by side decoded 40 times slower than one alone,
and a 2-thread server beside one busy process 2.6 times slower. A server started with only the
free cores runs at the speed of those cores instead.

The count is taken once, when the server starts (llama.cpp cannot change it later): the cores of
this process's CPU affinity (capped by a cgroup CPU quota), less those the machine kept busy over
a short sample of ``/proc/stat``, less the threads of the other autoevol servers registered on
the machine (they may be between calls at that instant).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

#: Seconds of ``/proc/stat`` sampled to see how busy the cores are.
SAMPLE_SECONDS = 0.5

#: One reading of ``/proc/stat``: per CPU number, (busy jiffies, all jiffies).
CpuTimes = dict[int, tuple[int, int]]


def available_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def read_cpu_times(stat: str | None = None) -> CpuTimes:
    """Busy and total jiffies per CPU from ``/proc/stat`` (``stat``: its text; empty when unreadable)."""
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return {}
    times: CpuTimes = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit():
            continue
        values = [int(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def idle_cores(before: CpuTimes, after: CpuTimes, cpus: set[int]) -> float | None:
    """Cores of ``cpus`` left idle between two readings (``None`` when they say nothing)."""
    idle, seen = 0.0, False
    for cpu in cpus & before.keys() & after.keys():
        busy = after[cpu][0] - before[cpu][0]
        total = after[cpu][1] - before[cpu][1]
        if total > 0:
            idle += 1.0 - min(1.0, max(0.0, busy / total))
            seen = True
    return idle if seen else None


def free_cores(*, reserved: int = 0, sample: Callable[[], CpuTimes] = read_cpu_times,
               sleep: Callable[[float], None] = time.sleep) -> int:
    """Threads for a new server: the available cores that are idle now, less ``reserved`` (at least 1).

    ``reserved``: threads of other servers on this machine, counted as busy even when they are
    idle at the moment of the sample.
    """
    available = available_cores()
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:
        cpus = set(range(os.cpu_count() or 1))
    before = sample()
    sleep(SAMPLE_SECONDS)
    idle = idle_cores(before, sample(), cpus)
    free = available if idle is None else min(available, math.floor(idle + 0.5))
    return max(1, min(free, available - reserved))
