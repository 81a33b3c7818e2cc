"""Where autoevol studies live: Optuna storages (SQLite, PostgreSQL, MySQL, journal files) and artifact folders.

Several workers may open the same storage at the same moment; opening an RDB storage whose schema
another worker is creating right then is retried (:func:`open_storage`), and a queued trial is claimed
by exactly one of them (:class:`AtomicClaimStorage`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._rdb.models import TrialModel
from optuna.trial import TrialState
from sqlalchemy import orm
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///autoevol-studies.db"
#: Attempts at opening an RDB storage whose schema other workers may be creating at the same moment.
SCHEMA_ATTEMPTS = 8
#: How long a SQLite connection waits for another worker's write lock before "database is locked"
#: (sqlite3's default of 5 s is short for several workers on a loaded machine).
SQLITE_LOCK_SECONDS = 60


class StudyError(ValueError):
    """A study cannot be opened or used: unreachable storage, missing driver, or a mismatched study."""


def mask_url(url: str) -> str:
    """``url`` (or a message holding URLs) with any password replaced by ``***``.

    A password runs from the user's ``:`` to the ``@`` of the host and may hold a ``/``; it holds
    no whitespace and no ``@`` (which a URL must percent-encode).
    """
    return re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", url)


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".journal"))


def _journal_path(url: str) -> Path:
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def _driver_url(url: str) -> str:
    """``postgresql://`` with the psycopg2 driver when psycopg 3 (SQLAlchemy 2.1's default) is absent."""
    import importlib.util

    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme) and importlib.util.find_spec("psycopg") is None \
                and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


def open_storage(url: str | None = None, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, retry_failed: int = 0) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any RDB URL (SQLite, PostgreSQL, MySQL) or a journal file.

    A journal file is ``journal:PATH`` or a path ending in ``.log``/``.journal`` (Optuna's
    ``JournalFileBackend``: no database, works on a shared file system). With ``heartbeat_interval``
    (seconds), a trial whose worker died is marked FAIL after ``grace_period`` seconds; with
    ``retry_failed`` > 0 it is also re-queued that many times.
    """
    url = url or DEFAULT_STORAGE
    callback = (optuna.storages.RetryFailedTrialCallback(max_retry=retry_failed) if retry_failed else None)
    try:
        if is_journal(url):
            from optuna.storages.journal import JournalFileBackend

            path = _journal_path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_SECONDS}}
        elif url.startswith(("postgresql", "mysql")):
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        return _rdb_storage(_driver_url(url), engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                            grace_period=grace_period, failed_trial_callback=callback)
    except (ImportError, ModuleNotFoundError) as error:
        raise StudyError(f"storage {mask_url(url)}: the database driver is missing "
                         f"({error}); install it, e.g. pip install psycopg2-binary for PostgreSQL") from None
    except Exception as error:  # sqlalchemy errors, bad URLs, unreachable servers
        detail = " ".join(str(error).split())
        detail = mask_url(detail)[:300]
        raise StudyError(f"cannot open study storage {mask_url(url)}: {type(error).__name__}: {detail}") from None


class AtomicClaimStorage(optuna.storages.RDBStorage):
    """An ``RDBStorage`` on which two workers can never both claim the same queued trial.

    A worker starts a queued (WAITING) trial, such as the paper-defaults trial, by marking it RUNNING.
    Optuna does that as a read (``SELECT ... FOR UPDATE``) followed by a write. SQLite ignores ``FOR
    UPDATE``, and Python's sqlite3 opens the transaction only at the write, so two workers that ask at
    the same moment can both read WAITING and both mark the trial RUNNING: both run it, and the slower
    one's tell then fails with "Cannot tell a COMPLETE trial". Here the claim is one conditional write
    (``UPDATE ... WHERE state = WAITING``) that exactly one worker wins on any database; the loser
    gets Optuna's own answer (``False``, or the error for a finished or unknown trial).
    """

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        try:
            with orm.Session(self.engine) as session, session.begin():
                won = session.query(TrialModel).filter(
                    TrialModel.trial_id == trial_id, TrialModel.state == TrialState.WAITING,
                ).update({TrialModel.state: TrialState.RUNNING}, synchronize_session=False)
                if won:
                    session.get(TrialModel, trial_id).datetime_start = datetime.now()
        except SQLAlchemyError as error:
            raise optuna.exceptions.StorageInternalError(f"claiming trial {trial_id} failed: {error}") from error
        return True if won else super().set_trial_state_values(trial_id, state)


def with_atomic_claim(storage: optuna.storages.BaseStorage) -> optuna.storages.BaseStorage:
    """``storage`` with :class:`AtomicClaimStorage`'s claim of queued trials, for a storage object a caller made.

    A plain ``RDBStorage`` is returned as an :class:`AtomicClaimStorage` over the same state (engine,
    heartbeat settings); the caller's object itself is left as it is. Other storages (journal files,
    in-memory, already atomic) are returned unchanged.
    """
    if not isinstance(storage, optuna.storages.RDBStorage) or isinstance(storage, AtomicClaimStorage):
        return storage
    atomic = AtomicClaimStorage.__new__(AtomicClaimStorage)
    atomic.__dict__ = storage.__dict__  # one engine and one set of settings, seen through the atomic claim
    return atomic


def _rdb_storage(url: str, **options: Any) -> optuna.storages.RDBStorage:
    """``RDBStorage(url)``, retried when another worker is creating the same schema at this moment.

    Optuna creates its tables on first use with check-then-create statements; on a fresh database
    two workers started at the same instant can both see a table missing, and the slower one's
    ``CREATE`` then fails on a duplicate catalog entry. Once the faster one has finished, the schema
    exists and the next attempt succeeds.
    """
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return AtomicClaimStorage(url, **options)
        except Exception as error:
            if attempt + 1 >= SCHEMA_ATTEMPTS or not _is_schema_race(error):
                raise
            logger.info("storage schema is being created by another worker (%s); retrying", type(error).__name__)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _is_schema_race(error: BaseException) -> bool:
    """Whether ``error`` is a concurrent ``CREATE`` of the same table, type, index or version row
    (PostgreSQL and MySQL wording, and SQLite's "table ... already exists" / "UNIQUE constraint failed")."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    text = str(error).lower()
    return isinstance(error, (IntegrityError, ProgrammingError, OperationalError)) and any(
        words in text for words in ("already exists", "duplicate key", "duplicate entry", "unique constraint failed"))


def default_artifact_dir(url: str | None) -> Path:
    """Where trial artifacts go by default: a folder next to a SQLite or journal file, else ./."""
    url = url or DEFAULT_STORAGE
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///"):])
        return path.with_name(path.name + "-artifacts")
    if is_journal(url):
        path = _journal_path(url)
        return path.with_name(path.name + "-artifacts")
    return Path("autoevol-artifacts")
