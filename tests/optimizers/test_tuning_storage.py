"""Study storages shared by independently started workers: claiming a queued trial (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import event

from autoevol.optimizers.tuning.storage import (
    SQLITE_LOCK_SECONDS,
    AtomicClaimStorage,
    StudyError,
    open_storage,
    with_atomic_claim,
)
from autoevol.optimizers.tuning.study import load_study, open_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Bound on how long one side waits for the other; only reached when the code under test deadlocks.
GUARD_SECONDS = 60.0


class PausedClaim:
    """Holds worker A inside its claim of a queued trial, right after its first statement reached the
    database, until worker B has sent the write of its own claim of the same trial (or finished).

    This is the interleaving of two workers started at the same instant: both listed the queued trial
    as WAITING, and both now try to mark it RUNNING.
    """

    def __init__(self, storage_a: optuna.storages.RDBStorage, storage_b: optuna.storages.RDBStorage,
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.a_inside_claim = threading.Event()
        self.b_writing = threading.Event()
        self.claiming = False
        self.paused = False
        claim = storage_a.set_trial_state_values

        def observed_claim(trial_id: int, state: optuna.trial.TrialState, values: Any = None) -> bool:
            self.claiming = state == optuna.trial.TrialState.RUNNING
            try:
                return claim(trial_id, state, values)
            finally:
                self.claiming = False

        monkeypatch.setattr(storage_a, "set_trial_state_values", observed_claim)
        event.listen(storage_a.engine, "after_cursor_execute", self._pause_a)
        event.listen(storage_b.engine, "before_cursor_execute", self._see_b_write)

    def _pause_a(self, *args: Any) -> None:
        if self.claiming and not self.paused:
            self.paused = True
            self.a_inside_claim.set()
            assert self.b_writing.wait(GUARD_SECONDS), "worker B never tried to claim the queued trial"

    def _see_b_write(self, connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TRIALS"):
            self.b_writing.set()


def in_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``function`` in a thread; the returned call joins it and gives its result (or raises its error)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except Exception as error:  # handed to the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(GUARD_SECONDS)
        assert not thread.is_alive(), "a worker is stuck"
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def users_rdb_storage(url: str) -> optuna.storages.BaseStorage:
    """A plain Optuna ``RDBStorage`` object, as a ``tune(storage=...)`` caller makes it, seen as tune sees it."""
    return with_atomic_claim(optuna.storages.RDBStorage(url))


def database_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty database of ``kind``: a SQLite file, or a database on the suite's PostgreSQL server
    (with the psycopg2 driver named, as a user making an ``RDBStorage`` of their own names it)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/race.db"
    url = request.getfixturevalue("postgres_server")("race")
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("make_storage", [open_storage, users_rdb_storage], ids=["url", "storage-object"])
def test_two_workers_never_both_claim_the_queued_trial(tmp_path, monkeypatch, request, make_storage, kind):
    """Two workers that ask for a trial at the same moment while one trial is queued: exactly one of
    them runs the queued trial, the other gets a new one. (When both ran it, the slower one's tell
    failed with Optuna's "Cannot tell a COMPLETE trial".) On PostgreSQL, B's write waits for A's
    row lock: A is let go as soon as B has sent it."""
    url = database_url(kind, tmp_path, request)
    storage_a, storage_b = make_storage(url), make_storage(url)
    study_a = optuna.create_study(storage=storage_a, study_name="race")
    study_a.enqueue_trial({"x": 0.5}, user_attrs={"queued": True})
    study_b = optuna.load_study(storage=storage_b, study_name="race")
    paused = PausedClaim(storage_a, storage_b, monkeypatch)

    asked_a = in_thread(study_a.ask)
    assert paused.a_inside_claim.wait(GUARD_SECONDS), "worker A never claimed the queued trial"
    trial_b = study_b.ask()
    trial_a = asked_a()

    assert sorted([trial_a.number, trial_b.number]) == [0, 1]
    trials = study_a.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.RUNNING] * 2
    assert [bool(t.user_attrs.get("queued")) for t in trials] == [True, False]
    for trial in (trial_a, trial_b):
        trial.suggest_float("x", 0.0, 1.0)
    study_a.tell(trial_a, 1.0)
    study_b.tell(trial_b, 2.0)  # each worker tells the trial it alone ran
    assert [t.state for t in study_a.get_trials(deepcopy=False)] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study_a.trials[0].params == {"x": 0.5}


def test_claiming_keeps_optunas_answers_for_trials_that_are_not_queued(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/claims.db")
    study = optuna.create_study(storage=storage, study_name="claims")
    study.enqueue_trial({"x": 0.5})
    queued = study.trials[0]._trial_id
    assert storage.set_trial_state_values(queued, optuna.trial.TrialState.RUNNING) is True
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING and study.trials[0].datetime_start is not None
    assert storage.set_trial_state_values(queued, optuna.trial.TrialState.RUNNING) is False  # already running
    storage.set_trial_state_values(queued, optuna.trial.TrialState.COMPLETE, [1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_state_values(queued, optuna.trial.TrialState.RUNNING)
    with pytest.raises(KeyError):
        storage.set_trial_state_values(queued + 100, optuna.trial.TrialState.RUNNING)


@pytest.mark.parametrize("message", ["UNIQUE constraint failed: alembic_version.version_num",
                                     "table studies already exists"])
def test_a_sqlite_schema_another_worker_is_creating_is_retried(tmp_path, monkeypatch, message):
    """Two workers creating a new SQLite file's tables at once: the slower one's INSERT of the schema
    version (or CREATE TABLE) fails on the faster one's; opening the storage again then succeeds."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from autoevol.optimizers.tuning import storage as tuning_storage

    real_init = tuning_storage.AtomicClaimStorage.__init__
    attempts = []

    def racing_init(self, *args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        if len(attempts) == 1:
            kind = (IntegrityError, sqlite3.IntegrityError) if "UNIQUE" in message else \
                (OperationalError, sqlite3.OperationalError)
            raise kind[0]("INSERT INTO alembic_version ...", {}, kind[1](message))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(tuning_storage.AtomicClaimStorage, "__init__", racing_init)
    storage = open_storage(f"sqlite:///{tmp_path}/fresh.db")
    assert len(attempts) == 2
    assert optuna.create_study(storage=storage, study_name="fresh").study_name == "fresh"


def test_a_storage_object_of_the_caller_claims_atomically_and_is_left_as_it_was(tmp_path):
    mine = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/mine.db")
    study, _ = open_study("mine", storage=mine)
    assert type(mine) is optuna.storages.RDBStorage
    atomic = with_atomic_claim(mine)
    assert isinstance(atomic, AtomicClaimStorage) and atomic.engine is mine.engine
    assert with_atomic_claim(atomic) is atomic
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    assert with_atomic_claim(journal) is journal
    queued = study.trials[0]._trial_id  # the paper-defaults trial open_study queued
    assert atomic.set_trial_state_values(queued, optuna.trial.TrialState.RUNNING) is True
    assert atomic.set_trial_state_values(queued, optuna.trial.TrialState.RUNNING) is False


def test_messages_name_the_callers_storage_object_and_never_its_password(tmp_path):
    mine = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/theirs.db")
    optuna.create_study(storage=mine, study_name="theirs", direction="maximize")
    with pytest.raises(StudyError) as refused:
        open_study("theirs", storage=mine)
    assert f"'theirs' in RDBStorage sqlite:///{tmp_path}/theirs.db exists with direction maximize" in str(refused.value)
    assert "AtomicClaimStorage" not in str(refused.value)
    # Optuna keeps the URL to show it; a server with a password is named like this (a "/" in the
    # password too), though none can be reached from a test
    mine.url = "postgresql://autoevol:s3cr/et@db.example/studies"
    with pytest.raises(StudyError) as missing:
        load_study("nope", storage=mine)
    assert "no study 'nope' in RDBStorage postgresql://autoevol:***@db.example/studies" in str(missing.value)
    assert "s3cr" not in str(missing.value) and "et@" not in str(missing.value)
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    with pytest.raises(StudyError, match="no study 'nope' in JournalStorage "):
        load_study("nope", storage=journal)


def test_sqlite_workers_wait_for_each_others_locks_longer_than_sqlites_default(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/wait.db")
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_LOCK_SECONDS * 1000
