"""Suite-wide rules and shared components.

1. Under CI (``CI=true``) no test may skip. Tests that need a real component (the embedded llama.cpp
   model, PostgreSQL, headless Chromium, Ray) skip with a reason on a machine that lacks it. Under
   CI every one of those components is installed (``.ci/run`` does it), so a skip there means a test
   silently did not run: it is reported as a failure instead, with the skip's reason, and a green
   CI means every test ran.
2. No test writes into the repository. The files of the checkout that git does not track, or that
   differ from the last commit, are listed before the run and after it; a file that appeared,
   changed or vanished in between fails the run and is named (Python's byte-code caches, pytest's
   own cache and the running interpreter's environment, such as README's ``.venv``, excepted).
3. Every test starts from the same process-wide settings, whatever ran before it: the logging
   configuration, DSPy's global settings and the environment variables are put back as they were
   after each test (an in-process CLI run configures logging and may install DSPy's adapter).

Shared component: ``postgres_server``, a PostgreSQL server of the suite's own.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

STRICT = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# ----------------------------------------------------------------------------- 1. no skips under CI


def _reason(longrepr: object) -> str:
    """The message of a skip report (pytest stores it as a (path, line, message) tuple)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refuse(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI ({_reason(report.longrepr)}); with CI=true every test must run: "
                       "install the missing component (bash .ci/run installs all of them)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped and not hasattr(report, "wasxfail"):
        _refuse(report)


_refused_modules: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    outcome = yield
    report = outcome.get_result()
    if STRICT and report.skipped:  # a whole module skipped at import (pytest.importorskip at top level)
        # failing the collector would stop the whole run before any test; the run fails at the end instead
        _refused_modules.append(f"{report.nodeid}: {_reason(report.longrepr)}")


# ----------------------------------------------------------------------------- 2. the repository untouched

#: Path parts of files the run may leave in the checkout: byte code that imports write, pytest's cache.
RUNNER_FILES = ("__pycache__", ".pytest_cache")


def _checkout(start: Path) -> Path | None:
    """The top folder of the git checkout holding ``start``, or None (no git, or not a checkout)."""
    try:
        found = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True,
                               text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else None


def _environment_inside(root: Path) -> list[str]:
    """A git pathspec that leaves out the running interpreter's environment when it lies in the checkout
    (README's commands install into ``.venv`` there); packages may write there at run time."""
    try:
        inside = Path(sys.prefix).resolve().relative_to(root.resolve())
    except ValueError:
        return []
    return ["--", ".", f":(exclude){inside.as_posix()}"] if inside.parts else []


def _loose_files(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every file of the checkout that is untracked, ignored or changed since the last commit, with its
    size and modification time (None for a tracked file that is missing)."""
    listed = subprocess.run(["git", "-C", str(root), "status", "--porcelain=v1", "-z", "--ignored=traditional",
                             "--untracked-files=all", *_environment_inside(root)],
                            capture_output=True, check=True, timeout=300).stdout
    files: dict[str, tuple[int, int] | None] = {}
    entries = iter(listed.decode("utf-8", "surrogateescape").split("\0"))
    for entry in entries:
        if not entry:
            continue
        status, path = entry[:2], entry[3:]
        if "R" in status or "C" in status:
            next(entries, None)  # a rename names its source next
        if any(part in RUNNER_FILES for part in Path(path).parts):
            continue
        try:
            stat = (root / path).stat()
        except OSError:
            files[path] = None
        else:
            files[path] = (stat.st_size, stat.st_mtime_ns)
    return files


@dataclass
class RepositoryWatch:
    """The checkout's loose files when the run started, and what the run did to them."""

    root: Path | None = None
    before: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)

    def start(self, start: Path) -> None:
        self.root = _checkout(start)
        if self.root is not None:
            self.before = _loose_files(self.root)

    def finish(self) -> None:
        if self.root is None:
            return
        after = _loose_files(self.root)
        self.written = sorted(path for path in set(self.before) | set(after)
                              if self.before.get(path, "absent") != after.get(path, "absent"))


_watch = RepositoryWatch()


def pytest_sessionstart(session: pytest.Session) -> None:
    _watch.start(Path(__file__).resolve().parent)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _watch.finish()
    if (_refused_modules or _watch.written) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: object) -> None:
    if _refused_modules:
        terminalreporter.section("modules skipped under CI (refused: every test must run)")  # type: ignore[attr-defined]
        for line in _refused_modules:
            terminalreporter.write_line(line)  # type: ignore[attr-defined]
    if _watch.written:
        terminalreporter.section(f"files written into the repository {_watch.root} "  # type: ignore[attr-defined]
                                 "(refused: a test writes only under its temporary folder)")
        for path in _watch.written:
            terminalreporter.write_line(path)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- 3. process-wide settings


@dataclass
class ProcessSettings:
    """What a test may change for the whole process: logging, DSPy's global settings, the environment."""

    loggers: dict[str, tuple[int, bool, bool, list[logging.Handler]]]
    environment: dict[str, str]
    dspy: dict[str, object] | None

    @classmethod
    def save(cls) -> ProcessSettings:
        dspy = _dspy_settings()
        return cls(_logger_states(), dict(os.environ), dict(dspy) if dspy is not None else None)

    def restore(self) -> None:
        now = _logger_states()
        for name, (level, propagate, disabled, handlers) in self.loggers.items():
            if now.get(name) != (level, propagate, disabled, handlers):
                logger = logging.getLogger(name or None)
                logger.setLevel(level)
                logger.propagate, logger.disabled, logger.handlers[:] = propagate, disabled, handlers
        if os.environ != self.environment:
            os.environ.clear()
            os.environ.update(self.environment)
        dspy = _dspy_settings()
        if dspy is not None and self.dspy is not None and dspy != self.dspy:
            dspy.clear()
            dspy.update(self.dspy)


def _logger_states() -> dict[str, tuple[int, bool, bool, list[logging.Handler]]]:
    """Level, propagation, disabled flag and handlers of the root logger ("") and of every named logger."""
    named = [("", logging.getLogger()), *list(logging.root.manager.loggerDict.items())]
    return {name: (logger.level, logger.propagate, logger.disabled, list(logger.handlers))
            for name, logger in named if isinstance(logger, logging.Logger)}


def _dspy_settings() -> dict[str, object] | None:
    """DSPy's process-wide settings (what ``dspy.configure`` writes), when DSPy is imported."""
    module = sys.modules.get("dspy.dsp.utils.settings")
    return getattr(module, "main_thread_config", None)


@pytest.fixture(autouse=True)
def _process_settings_restored() -> Iterator[None]:
    """Puts logging, DSPy's settings and the environment back as they were before the test."""
    saved = ProcessSettings.save()
    yield
    saved.restore()


# ----------------------------------------------------------------------------- PostgreSQL


def pg_bin(name: str) -> str | None:
    """A PostgreSQL program: Debian's versioned folder first, else the PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[str], str]]:
    """A PostgreSQL server of the suite's own (data in a temporary folder, stopped at the end).

    Yields ``new_database(name)``: it creates a new, empty database whose name starts with ``name``
    and returns its URL, so every caller gets a database no other test uses.
    """
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
    numbers = itertools.count()
    try:
        import psycopg2

        def new_database(name: str) -> str:
            database = f"{name}_{next(numbers)}"
            connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            connection.autocommit = True
            connection.cursor().execute(f"CREATE DATABASE {database}")
            connection.close()
            return f"postgresql://postgres@127.0.0.1:{port}/{database}"

        yield new_database
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
