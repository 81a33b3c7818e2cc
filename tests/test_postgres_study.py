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

pytest.importorskip("psycopg2", reason="psycopg2-binary (test extra) is needed for PostgreSQL studies")


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
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

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE studies")
        connection.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/studies"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
    time.sleep(3)  # more than the grace period (2 s)
    finish(workers(postgres, study, [1], heartbeat=1))
    states = {t.number: t.state.name for t in load_study(study, postgres).trials}
    assert states[running[0].number] == "FAIL"
    assert "COMPLETE" in states.values()
