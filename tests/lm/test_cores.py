"""A new server's threads: the cores this process may use that are free, less other servers' threads."""

from __future__ import annotations

import os

import pytest

from autoevol.lm import cores
from autoevol.lm.cores import available_cores, free_cores, idle_cores, read_cpu_times

STAT = """cpu  300 0 100 500 100 0 0 0 0 0
cpu0 100 0 50 300 50 0 0 0 0 0
cpu1 200 0 50 200 50 0 0 0 0 0
intr 12345
"""


def test_the_cores_this_process_may_use_are_its_affinity_at_most():
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


def test_cpu_times_are_read_per_cpu_with_iowait_counted_as_idle():
    assert read_cpu_times(STAT) == {0: (150, 500), 1: (250, 500)}


def test_idle_cores_are_summed_over_the_given_cpus_only():
    before = {0: (0, 0), 1: (0, 0), 2: (0, 0)}
    after = {0: (100, 100), 1: (25, 100), 2: (0, 100)}  # cpu0 busy, cpu1 a quarter busy, cpu2 idle
    assert idle_cores(before, after, {0, 1}) == pytest.approx(0.75)
    assert idle_cores(before, after, {0, 1, 2}) == pytest.approx(1.75)
    assert idle_cores(before, before, {0, 1}) is None  # no time passed: nothing to say


def machine(monkeypatch, cpus: int, busy: list[float]):
    """This process may use ``cpus`` cores; between two samples core i was ``busy[i]`` busy."""
    monkeypatch.setattr(cores, "available_cores", lambda: cpus)
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(cpus)))
    readings = iter([{i: (0, 0) for i in range(len(busy))},
                     {i: (round(100 * share), 100) for i, share in enumerate(busy)}])
    return {"sample": lambda: next(readings), "sleep": lambda seconds: None}


def test_a_quiet_machine_gives_every_core(monkeypatch):
    assert free_cores(**machine(monkeypatch, 2, [0.05, 0.1])) == 2
    assert free_cores(**machine(monkeypatch, 8, [0.0] * 8)) == 8


def test_busy_cores_are_left_to_their_work(monkeypatch):
    assert free_cores(**machine(monkeypatch, 2, [1.0, 0.1])) == 1  # one busy process
    assert free_cores(**machine(monkeypatch, 4, [1.0, 1.0, 0.2, 0.0])) == 2
    assert free_cores(**machine(monkeypatch, 2, [1.0, 1.0])) == 1  # never fewer than one thread


def test_other_servers_threads_are_reserved_even_while_they_are_idle(monkeypatch):
    assert free_cores(reserved=2, **machine(monkeypatch, 2, [0.0, 0.0])) == 1
    assert free_cores(reserved=2, **machine(monkeypatch, 8, [0.0] * 8)) == 6


def test_cpus_outside_the_affinity_mask_are_not_counted(monkeypatch):
    # four idle cores on the machine, but this process may use two of them
    assert free_cores(**machine(monkeypatch, 2, [0.0, 0.0, 0.0, 0.0])) == 2


def test_without_a_readable_proc_stat_every_available_core_is_used(monkeypatch):
    monkeypatch.setattr(cores, "available_cores", lambda: 3)
    assert free_cores(sample=lambda: {}, sleep=lambda seconds: None) == 3
