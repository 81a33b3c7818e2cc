"""The process that hosts llama.cpp's native server: ``python -m autoevol.lm.llama_process``.

It loads one GGUF file into ``xllamacpp.Server`` (llama.cpp's own C++ HTTP server, with parallel
slots, continuous batching, a prompt cache per slot, GBNF grammars and JSON-schema outputs),
writes the address it listens on to the file descriptor given with ``--ready-fd``, and serves
until its last user is gone. A crash of the model takes down this process only.

Its users are the processes that hold a lease on it in the server registry
(:mod:`autoevol.lm.server_registry`). While the model loads, nobody else can know the server
exists, so the process that started it is its only user and a parent-death signal (SIGKILL) ends
it at once if that process dies. Once loaded, the server watches every user through a pidfd
(the kernel reports the death of any of them at once, whatever killed it) and ends itself with
``os._exit`` as soon as none is alive: no generation is finished for a job that is gone. A
parent-death signal alone would tie the server to the one job that started it, which would stop
it under the feet of a second job sharing it.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import select
import sys
import threading
from pathlib import Path

from autoevol.lm.server_registry import process_alive, read_entry, retire

logger = logging.getLogger(__name__)

#: The repetition penalty a request gets unless it sets its own: 1.1, the default of the server
#: autoevol used before (llama-cpp-python's), so that sampling stays as it was (llama.cpp's own
#: default is 1.0, no penalty).
REPEAT_PENALTY = 1.1
#: How often the lease list is read again for users who joined (their deaths wake it at once).
LEASE_POLL_SECONDS = 0.5
PR_SET_PDEATHSIG = 1


def set_parent_death_signal(signum: int) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies (0 disarms it)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except OSError:  # not Linux: the lease watcher alone ends the server
        pass


class UserWatcher(threading.Thread):
    """Ends this process as soon as none of the processes that use the server is alive.

    Args:
        registry_file: the registry entry whose ``leases`` name the users.
        first_user: the process that started the server, a user until the entry names others.
    """

    def __init__(self, registry_file: Path, first_user: int) -> None:
        super().__init__(name="autoevol-user-watcher", daemon=True)
        self.registry_file = registry_file
        self.first_user = first_user
        self._pidfds: dict[int, int] = {}
        self._dead: set[int] = set()
        self._published = False

    def users(self) -> set[int]:
        """The user processes named by the registry entry (the first user until it is written)."""
        entry = read_entry(self.registry_file)
        if entry is not None and entry.pid == os.getpid():
            self._published = True
            return {lease.pid for lease in entry.leases}
        if self._published:  # the entry was removed or now names another server: this one is done
            return set()
        return {self.first_user}

    def run(self) -> None:
        poller = select.poll()
        while True:
            users = {pid for pid in self.users() if pid not in self._dead and process_alive(pid)}
            if not users and (not self._published or retire(self.registry_file, os.getpid(), self._dead)):
                logger.info("no user of this server is alive; exiting")
                os._exit(0)
            for pid in set(self._pidfds) - users:
                fd = self._pidfds.pop(pid)
                poller.unregister(fd)
                os.close(fd)
            for pid in users - set(self._pidfds):
                try:
                    fd = os.pidfd_open(pid)
                except (AttributeError, OSError):  # gone already, or no pidfd support: seen by polling
                    continue
                self._pidfds[pid] = fd
                poller.register(fd, select.POLLIN)
            owner = {fd: pid for pid, fd in self._pidfds.items()}
            for fd, _ in poller.poll(LEASE_POLL_SECONDS * 1000):  # a readable pidfd: that process exited
                self._dead.add(owner[fd])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m autoevol.lm.llama_process", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--ctx-per-slot", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-prompt-cache", action="store_true",
                        help="process every prompt whole (with one slot: identical requests, identical replies)")
    parser.add_argument("--registry-file", required=True, type=Path)
    parser.add_argument("--user", required=True, type=int, help="the process that starts the server")
    parser.add_argument("--ready-fd", required=True, type=int, help="where the listening address is written")
    return parser.parse_args(argv)


def serve(args: argparse.Namespace) -> int:
    """Load the model, report the address, and serve until the watcher ends the process."""
    import xllamacpp

    UserWatcher(args.registry_file, args.user).start()
    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.hostnames = [args.host]
    params.port = 0  # any free port; the address is reported once the server listens
    params.n_parallel = args.slots
    params.n_ctx = args.slots * args.ctx_per_slot  # divided evenly between the slots
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.sampling.penalty_repeat = REPEAT_PENALTY
    params.cache_prompt = not args.no_prompt_cache
    params.endpoint_metrics = True
    params.endpoint_slots = True
    try:
        server = xllamacpp.Server(params)
    except Exception as error:  # noqa: BLE001 - reported to the parent as one line
        print(f"llama.cpp server failed to start: {error}", file=sys.stderr, flush=True)
        return 1
    set_parent_death_signal(0)  # from now on the watcher follows every user, the parent included
    with os.fdopen(args.ready_fd, "w") as ready:
        ready.write(server.listening_address + "\n")
    print(f"serving {args.model.name} at {server.listening_address} with {args.slots} slots of "
          f"{args.ctx_per_slot} tokens and {args.threads} threads", file=sys.stderr, flush=True)
    threading.Event().wait()  # the watcher, or a signal's default action, ends the process
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return serve(_parse(argv))


if __name__ == "__main__":
    sys.exit(main())
