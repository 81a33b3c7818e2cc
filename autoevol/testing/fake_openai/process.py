"""The fake server in a separate process: :func:`serve_in_subprocess` and the command line (:func:`main`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from autoevol.testing.fake_openai.faults import FaultPlan, ServerStats
from autoevol.testing.fake_openai.responders import load_responder
from autoevol.testing.fake_openai.server import FakeOpenAIServer


class SubprocessServer:
    """Handle on a fake server running in another process (see :func:`serve_in_subprocess`)."""

    def __init__(self, process: subprocess.Popen, url: str) -> None:
        self.process = process
        self.url = url
        self._root = url[: -len("/v1")]

    @property
    def pid(self) -> int:
        """The server process id."""
        return self.process.pid

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self._root + path, method=method,
                                         data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> ServerStats:
        """The server's counters, fetched over ``GET /stats``."""
        return ServerStats.from_dict(self._call("GET", "/stats"))

    def reset(self) -> None:
        """Zero the server's counters (``POST /reset``)."""
        self._call("POST", "/reset")

    def cpu_seconds(self) -> float | None:
        """User + system CPU seconds the server process used so far (Linux ``/proc``), else None."""
        try:
            with open(f"/proc/{self.pid}/stat") as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def _cli_args(latency: float, faults: FaultPlan, responder: str | None, seed: int) -> list[str]:
    args = ["--port", "0", "--latency", repr(latency), "--seed", str(seed)]
    for spec in fields(FaultPlan):
        args += [f"--{spec.name.replace('_', '-')}", repr(getattr(faults, spec.name))]
    return args + (["--responder", responder] if responder else [])


@contextlib.contextmanager
def serve_in_subprocess(*, latency: float = 0.0, faults: FaultPlan | None = None,
                        responder: str | None = None, seed: int = 0,
                        startup_timeout: float = 120.0) -> Iterator[SubprocessServer]:
    """Run ``python -m autoevol.testing.fake_openai`` in a child process for the ``with`` block.

    ``responder`` is a ``"module:function"`` the child can import. The child is terminated (and
    killed if it lingers) on exit.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    # __main__.py by its path, not ``-m``: the child imports the standard library only (not autoevol, DSPy...),
    # so it listens within a fraction of a second even on a loaded machine (``-P``: no script folder on the path)
    command = [sys.executable, "-P", os.path.join(here, "__main__.py"),
               *_cli_args(latency, faults or FaultPlan(), responder, seed)]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=env)
        try:
            url = _await_listening(process, startup_timeout)
            if url is None:
                stderr.seek(0)
                raise RuntimeError(f"fake server did not start: {stderr.read().decode()[-2000:]}")
            yield SubprocessServer(process, url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            assert process.stdout is not None
            process.stdout.close()


def _await_listening(process: subprocess.Popen, timeout: float) -> str | None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            break
        line = process.stdout.readline().decode().strip()
        if not line:  # EOF: the child died
            return None
        if line.startswith("LISTENING "):
            return line.split(" ", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: serve until SIGTERM/SIGINT, after printing the LISTENING line."""
    import signal

    parser = argparse.ArgumentParser(prog="python -m autoevol.testing.fake_openai",
                                     description="A fake OpenAI-compatible chat-completions server on loopback, "
                                                 "for tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--responder", "--script", metavar="MODULE:FUNC")
    for spec in fields(FaultPlan):
        parser.add_argument(f"--{spec.name.replace('_', '-')}", type=float, default=spec.default)
    args = parser.parse_args(argv)
    faults = FaultPlan(**{spec.name: getattr(args, spec.name) for spec in fields(FaultPlan)})
    responder = load_responder(args.responder) if args.responder else None
    server = FakeOpenAIServer(responder=responder, latency=args.latency, faults=faults,
                              host=args.host, port=args.port, seed=args.seed).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"LISTENING {server.url}", flush=True)
    while not stop.wait(3600):
        pass
    server.stop()
