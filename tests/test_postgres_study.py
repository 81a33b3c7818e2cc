"""One study, several worker processes, a real PostgreSQL server (Debian's package, installed by .ci/run)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from autoevol.optimizers.tuning import load_study
from autoevol.testing.fake_openai import FakeOpenAIServer
from autoevol.testing.study import both_roles
from tests.test_cli_tune import (
    REPETITIONS, WORKERS, assert_one_study_from_workers, start_together, tune_command, write_seed,
)


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    """A PostgreSQL server of our own; yields a function that creates a fresh database and gives its URL."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary (test extra) is needed for PostgreSQL studies")
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="autoevol-pg-"))  # pytest's tmp is private to root: postgres needs a way in
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=100", "start"],
                   check=True, capture_output=True)
    try:
        import psycopg2

        def new_database(name: str) -> str:
            connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            connection.autocommit = True
            connection.cursor().execute(f"CREATE DATABASE {name}")
            connection.close()
            return f"postgresql://postgres@127.0.0.1:{port}/{name}"

        yield new_database
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(postgres_server):
    return postgres_server("studies")


def workers(storage: str, study: str, shares: list[int], **options) -> list[subprocess.Popen]:
    code = ("import sys; from autoevol.testing.study import run_worker; "
            f"run_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), seed=int(sys.argv[4]), **{options!r})")
    return [subprocess.Popen([sys.executable, "-c", code, storage, study, str(n), str(i)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, n in enumerate(shares)]


def finish(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]


@pytest.mark.parametrize("count", [1, 2])
def test_workers_share_one_study(postgres, count, capsys):
    total = 8
    study = f"shared-{count}"
    started = time.perf_counter()
    finish(workers(postgres, study, [total // count] * count))
    seconds = time.perf_counter() - started
    trials = load_study(study, postgres).trials
    numbers = [t.number for t in trials]
    assert len(trials) == total and sorted(numbers) == list(range(total))
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    assert sum(bool(t.user_attrs.get("paper_defaults")) for t in trials) == 1
    with capsys.disabled():
        print(f"\n[measured] PostgreSQL, {count} worker(s): {total} trials in {seconds:.1f} s "
              f"= {total / seconds:.2f} trials/s (including process start-up)")


def wait_until_stale(url: str, study: str, number: int, *, grace: float, deadline: float = 60.0) -> bool:
    """Poll the database until trial ``number``'s last heartbeat is older than ``grace`` seconds."""
    import psycopg2

    query = ("SELECT clock_timestamp()::timestamp - h.heartbeat > %s * interval '1 second' FROM trial_heartbeats h "
             "JOIN trials t ON t.trial_id = h.trial_id JOIN studies s ON s.study_id = t.study_id "
             "WHERE s.study_name = %s AND t.number = %s")
    give_up = time.monotonic() + deadline
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        while time.monotonic() < give_up:
            with connection.cursor() as cursor:
                cursor.execute(query, (grace, study, number))
                row = cursor.fetchone()
            if row and row[0]:
                return True
            time.sleep(0.2)
    finally:
        connection.close()
    return False


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
    seed = write_seed(tmp_path)
    with FakeOpenAIServer(responder=both_roles) as server:
        for repetition in range(REPETITIONS):  # a fresh database each time: the workers also race to make the schema
            storage = postgres_server(f"together_{repetition}")
            results = start_together([tune_command(seed, storage, "together", server, "--trials", "1")
                                      for _ in range(WORKERS)], tmp_path)
            assert_one_study_from_workers(results, load_study("together", storage), WORKERS)


def test_killed_worker_trial_is_failed_by_heartbeat(postgres):
    study = "heartbeat"
    (victim,) = workers(postgres, study, [1], slow=True, heartbeat=1)
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            running = [t for t in load_study(study, postgres).trials if t.state.name == "RUNNING"]
        except Exception:
            running = []
        if running:
            break
    assert running, "the worker never started its trial"
    victim.kill()
    victim.wait()
    assert wait_until_stale(postgres, study, running[0].number, grace=2), "the dead worker's heartbeat never aged"
    finish(workers(postgres, study, [1], heartbeat=1))
    states = {t.number: t.state.name for t in load_study(study, postgres).trials}
    assert states[running[0].number] == "FAIL"
    assert "COMPLETE" in states.values()
