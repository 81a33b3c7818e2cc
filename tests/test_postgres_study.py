"""One study, several worker processes, a real PostgreSQL server (``postgres_server`` in conftest.py;
Debian's package, installed by .ci/run)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from autoevol.optimizers.tuning import StudyError, load_study
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles
from tests.test_cli_tune import (
    REPETITIONS, WORKERS, assert_one_study_from_workers, start_together, tune_arguments, write_seed,
)


@pytest.fixture(scope="module")
def postgres(postgres_server) -> str:
    """One database for this module's studies (each test uses study names of its own)."""
    return postgres_server("studies")


def workers(storage: str, study: str, shares: list[int], folder: Path, **options) -> list[subprocess.Popen]:
    """One ``run_worker`` process per share, working in ``folder`` (where a PostgreSQL study keeps its
    trial artifacts by default)."""
    code = ("import sys; from autoevol.testing.study import run_worker; "
            f"run_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), seed=int(sys.argv[4]), **{options!r})")
    return [subprocess.Popen([sys.executable, "-c", code, storage, study, str(n), str(i)], cwd=folder,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, n in enumerate(shares)]


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]


@pytest.mark.parametrize("count", [1, 2])
def test_workers_share_one_study(postgres, count, capsys, tmp_path):
    total = 8
    study = f"shared-{count}"
    started = time.perf_counter()
    finish(workers(postgres, study, [total // count] * count, tmp_path))
    seconds = time.perf_counter() - started
    trials = load_study(study, postgres).trials
    numbers = [t.number for t in trials]
    assert len(trials) == total and sorted(numbers) == list(range(total))
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in trials) == 1
    with capsys.disabled():
        print(f"\n[measured] PostgreSQL, {count} worker(s): {total} trials in {seconds:.1f} s "
              f"= {total / seconds:.2f} trials/s (including process start-up)")


def heartbeat_age_query(url: str, study: str, number: int, *, deadline: float = 60.0):
    """Poll trial ``number``'s heartbeat row: yields ``clock - heartbeat`` in seconds (``None`` while the
    trial has no heartbeat row yet) until the caller stops or ``deadline`` passes."""
    import psycopg2

    query = ("SELECT EXTRACT(EPOCH FROM clock_timestamp()::timestamp - h.heartbeat) FROM trial_heartbeats h "
             "JOIN trials t ON t.trial_id = h.trial_id JOIN studies s ON s.study_id = t.study_id "
             "WHERE s.study_name = %s AND t.number = %s")
    give_up = time.monotonic() + deadline
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        while time.monotonic() < give_up:
            with connection.cursor() as cursor:
                cursor.execute(query, (study, number))
                row = cursor.fetchone()
            yield float(row[0]) if row else None
            time.sleep(0.2)
    finally:
        connection.close()


def wait_for_heartbeat(url: str, study: str, number: int) -> bool:
    """Whether trial ``number`` got its first heartbeat row (Optuna's heartbeat thread writes it a moment
    after the trial turns RUNNING; a trial killed before that has no heartbeat and is never failed)."""
    return any(age is not None for age in heartbeat_age_query(url, study, number))


def wait_until_stale(url: str, study: str, number: int, *, grace: float) -> bool:
    """Poll the database until trial ``number``'s last heartbeat is older than ``grace`` seconds."""
    return any(age is not None and age > grace for age in heartbeat_age_query(url, study, number))


def test_storages_opened_at_the_same_instant_on_a_fresh_database_all_open(postgres_server):
    """Optuna creates its schema check-then-create: unguarded, most of these would fail on pg_type."""
    import threading

    from autoevol.optimizers.tuning import open_storage

    for repetition in range(3):
        url = postgres_server(f"fresh_{repetition}")
        barrier, errors = threading.Barrier(4), []

        def open_now() -> None:
            barrier.wait()
            try:
                open_storage(url)
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=open_now) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert optuna.get_all_study_summaries(open_storage(url)) == []  # a usable, empty schema


def test_tune_processes_started_together_share_one_postgresql_study(postgres_server, tmp_path):
    """Workers released at the same moment on a fresh database race to create its schema and the study,
    then to claim the queued paper-defaults trial: none fails and the queued trial runs once."""
    seed = write_seed(tmp_path)
    with FakeOpenAIServer(responder=both_roles()) as server:
        for repetition in range(REPETITIONS):
            storage = postgres_server("together")
            results = start_together([tune_arguments(seed, storage, "together", server, "--trials", "1")
                                      for _ in range(WORKERS)], tmp_path, tmp_path / f"gate-{repetition}")
            assert_one_study_from_workers(results, load_study("together", storage), WORKERS)


def running_trial(url: str, study: str, worker: subprocess.Popen, *, deadline: float = 300.0) -> int:
    """The number of the first RUNNING trial of ``study``, once ``worker`` has started it.

    Until the worker has created the study, there is no study to read; any other error, or the worker
    ending first, is reported as it is.
    """
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if worker.poll() is not None:
            _, err = worker.communicate()
            pytest.fail(f"the worker ended (exit {worker.returncode}) before running a trial: {err[-2000:]}")
        try:
            trials = load_study(study, url).get_trials(deepcopy=False)
        except StudyError as error:
            if f"no study '{study}'" not in str(error):
                raise
            trials = []
        running = [t.number for t in trials if t.state.name == "RUNNING"]
        if running:
            return running[0]
        time.sleep(0.2)
    pytest.fail(f"the worker started no trial of {study!r} in {deadline:.0f} s")


def test_killed_worker_trial_is_failed_by_heartbeat(postgres, tmp_path):
    study = "heartbeat"
    (victim,) = workers(postgres, study, [1], tmp_path, slow=True, heartbeat=1)
    number = running_trial(postgres, study, victim)
    assert wait_for_heartbeat(postgres, study, number), "the running trial never got a heartbeat"
    victim.kill()
    victim.wait()
    assert wait_until_stale(postgres, study, number, grace=2), "the dead worker's heartbeat never aged"
    finish(workers(postgres, study, [1], tmp_path, heartbeat=1))
    states = {t.number: t.state.name for t in load_study(study, postgres).trials}
    assert states[number] == "FAIL"
    assert "COMPLETE" in states.values()
