"""run_in_threads: order kept, progress reported as items finish, the first error raised."""

from __future__ import annotations

import threading

import pytest

from autoevol.threads import run_in_threads


def test_results_keep_the_order_of_the_items():
    assert run_in_threads(lambda x: x * x, range(6), num_threads=3) == [0, 1, 4, 9, 16, 25]


def test_progress_is_reported_while_other_items_still_run():
    reported = threading.Event()

    def work(item: int) -> bool:
        if item == 0:
            return True
        return reported.wait(timeout=30)  # item 1 finishes only once item 0 has been reported

    counts: list[int] = []

    def on_done(count: int) -> None:
        counts.append(count)
        reported.set()

    assert run_in_threads(work, [0, 1], num_threads=2, on_done=on_done) == [True, True]
    assert sum(counts) == 2 and len(counts) == 2


def test_the_first_error_is_raised_and_pending_items_are_cancelled():
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 0:
            raise ValueError("bad item 0")
        return item

    with pytest.raises(ValueError, match="bad item 0"):
        run_in_threads(work, range(50), num_threads=1)
    assert len(started) < 50
