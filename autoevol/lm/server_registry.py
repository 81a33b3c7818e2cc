"""The server registry: jobs on one machine that use the same GGUF file share one llama.cpp server.

Two llama.cpp servers decoding side by side on a few cores slow each other down far more than
twice (measured on 2 cores: 40 times), so a job that needs a model some other job already serves
joins that server instead of starting its own. The registry is a folder in autoevol's cache
(``$AUTOEVOL_CACHE_DIR``, else ``$XDG_CACHE_HOME/autoevol``, else ``~/.cache/autoevol``) holding one
JSON entry per model file: the server's process, address and settings, and one lease per user.
Every change happens under an exclusive ``flock`` on the entry's lock file, so a job that finds no
server starts one while the others wait for it, and a server is retired only when its last lease
is gone (see :mod:`autoevol.lm.llama_process` for how the server follows its users).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

#: The environment variable that moves autoevol's cache folder (tests point it at a temporary one).
CACHE_DIR_VARIABLE = "AUTOEVOL_CACHE_DIR"
#: What a server process carries in its command line, to tell it from a process that reused its id.
SERVER_MODULE = "autoevol.lm.llama_process"


class Lease(BaseModel):
    """One user of a server: a process, and which of its sessions holds the lease."""

    pid: int
    id: str


class ServerEntry(BaseModel):
    """A running server as the registry records it."""

    model: str
    pid: int
    api_base: str
    slots: int
    ctx_per_slot: int
    threads: int
    log: str
    prompt_cache: bool = True
    leases: list[Lease] = []


def cache_dir() -> Path:
    """autoevol's cache folder (see the module docstring for how it is chosen)."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "autoevol"


def entry_path(model: Path) -> Path:
    """Where the registry keeps the entry of the server for ``model`` (one per resolved file)."""
    resolved = model.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return cache_dir() / "servers" / f"{resolved.stem}-{digest}.json"


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the entry at ``path`` (other processes and threads wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_entry(path: Path) -> ServerEntry | None:
    """The entry at ``path``, or None when there is none (or it is unreadable)."""
    try:
        return ServerEntry.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


def write_entry(path: Path, entry: ServerEntry) -> None:
    """Replace the entry at ``path`` in one step (readers never see half of it)."""
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(entry.model_dump_json(indent=1))
    os.replace(partial, path)


def remove_entry(path: Path) -> None:
    """Forget the entry at ``path``, if any."""
    path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (an exited, unreaped zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: existence is all that can be known
    return state not in ("Z", "X")


def is_server_process(pid: int) -> bool:
    """Whether ``pid`` is a live autoevol llama.cpp server (not a zombie, not a reused id)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return SERVER_MODULE.encode() in command and process_alive(pid)


def running_server_threads(pids: Iterable[int] | None = None) -> int:
    """Threads of the autoevol llama.cpp servers running on this machine (``pids``: the processes to
    look at; default: every process).

    Read from the servers' command lines, not from a registry: servers of jobs with another cache
    folder count too.
    """
    if pids is None:
        pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    total = 0
    for pid in pids:
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # exited meanwhile
        if SERVER_MODULE in arguments and "--threads" in arguments[:-1] and process_alive(pid):
            value = arguments[arguments.index("--threads") + 1]
            total += int(value) if value.isdigit() else 0
    return total


def retire(path: Path, pid: int, dead: set[int]) -> bool:
    """Remove the entry of server ``pid`` unless one of its leases belongs to a live process.

    Called by the server when it saw no live user; the leases are read again under the lock, so
    a user who joined meanwhile keeps the server. ``dead``: processes already known to have
    exited. Returns whether the server should end.
    """
    with locked(path):
        entry = read_entry(path)
        if entry is None or entry.pid != pid:
            return True
        if any(lease.pid not in dead and process_alive(lease.pid) for lease in entry.leases):
            return False
        remove_entry(path)
        return True
