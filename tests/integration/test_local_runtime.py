"""The embedded runtime on the real server: calls in flight overlap, servers follow their jobs, jobs share.

Nothing here waits for a fixed time: each step waits for what the server or the job reports
(a slot processing, a line printed, a process gone), bounded only to turn a hang into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from autoevol.lm import CallPolicy, LMSession

pytestmark = pytest.mark.integration
#: Only a guard against a hang: a busy 2-core machine is many times slower than a quiet one.
HANG = 900.0

#: A job: opens a session on the embedded model, reports its server, then does what stdin says:
#: ``end`` (leave normally), ``error`` (raise inside the session), ``generate`` (start a long
#: generation and report it, then wait to be killed).
JOB = """
import json, sys, threading
from autoevol.lm import CallPolicy, LMSession
with LMSession(concurrency=2, policy=CallPolicy(max_retries=0)) as session:
    lm = session.lm("local", role="evol", max_tokens=2000)
    server = session.servers[0]
    print(json.dumps({"pid": server.pid, "url": server.url, "started_here": server.started_here}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "end":
            break
        if command == "error":
            raise RuntimeError("the job failed")
        if command == "generate":
            messages = [{"role": "user", "content": "Tell a very long story."}]
            threading.Thread(target=lm, kwargs={"messages": messages, "extra_body": {"ignore_eos": True}},
                             daemon=True).start()
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def _busy_slots(url: str) -> int:
    return sum(1 for slot in _get(f"{url}/slots") if slot["is_processing"])


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


class Job:
    """A job process running :data:`JOB`, talked to through its stdin and stdout."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", JOB], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert line, self.process.stderr.read()  # type: ignore[union-attr]
        self.server: dict[str, Any] = json.loads(line)

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def finish(self) -> int:
        return self.process.wait(timeout=HANG)


def test_calls_in_flight_overlap_on_the_server(tmp_path):
    """Two calls of one session are decoded at the same time: the server shows both slots busy."""
    seen: list[int] = []
    with LMSession(concurrency=2, policy=CallPolicy(max_retries=0), server_log_dir=tmp_path) as session:
        lm = session.lm("local", role="evol", max_tokens=400)
        url = session.servers[0].url
        assert len(_get(f"{url}/slots")) == 2  # the slots follow the session's concurrency
        messages = [{"role": "user", "content": "Tell a very long story."}]

        def call() -> None:
            try:
                lm(messages=messages, extra_body={"ignore_eos": True})
            except Exception:  # noqa: BLE001 - the session ends while the call runs: that is the plan
                pass

        calls = [threading.Thread(target=call, daemon=True) for _ in range(2)]
        for call in calls:
            call.start()

        def both_busy() -> bool:
            seen.append(_busy_slots(url))
            return seen[-1] == 2 or not any(call.is_alive() for call in calls)

        _wait_for(both_busy, "the calls to run")
    assert max(seen) == 2, seen


@pytest.mark.parametrize("ending", ["end", "error", "SIGTERM", "SIGKILL"])
def test_the_server_is_gone_when_its_job_ends(ending, leftover_llama_servers):
    job = Job()
    pid, url = job.server["pid"], job.server["url"]
    assert job.server["started_here"] and _running(pid)
    if ending in ("end", "error"):
        job.send(ending)
        code = job.finish()
        assert (code == 0) if ending == "end" else (code != 0 and "the job failed" in job.process.stderr.read())
    else:  # killed in the middle of a generation, which the server must not finish for nobody
        job.send("generate")
        _wait_for(lambda: _busy_slots(url) > 0, "the generation to start")
        job.process.send_signal(getattr(signal, ending))
        job.finish()
    _wait_for(lambda: not _running(pid), "the server to stop")
    assert not leftover_llama_servers()


def test_two_jobs_share_one_server_until_the_last_ends(leftover_llama_servers, own_server_registry):
    first, second = Job(), Job()
    pid, url = first.server["pid"], first.server["url"]
    assert second.server["pid"] == pid and not second.server["started_here"]
    second.send("end")
    assert second.finish() == 0
    assert _running(pid)  # the second job's end leaves the first one's server serving
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HANG) as response:
        assert json.loads(response.read())["choices"][0]["message"]["content"] is not None
    first.send("end")
    assert first.finish() == 0
    _wait_for(lambda: not _running(pid), "the server to stop")
    assert not leftover_llama_servers()
    assert not list((own_server_registry / "servers").glob("*.json"))  # the registry forgot it


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_server_started_beside_busy_processes_leaves_their_cores_to_them(tmp_path):
    """A server with more threads than free cores waits at every barrier for a busy core; it gets only
    the free ones (at least one)."""
    from autoevol.lm.cores import available_cores

    available = available_cores()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(min(2, available))]
    try:
        _wait_for(lambda: all(_cpu_ticks(hog.pid) > 10 for hog in hogs), "the busy processes to run")
        with LMSession(concurrency=1, policy=CallPolicy(max_retries=0), server_log_dir=tmp_path) as session:
            session.lm("local", role="evol", max_tokens=8)
            threads = session.servers[0].n_threads
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert threads is not None and 1 <= threads <= max(1, available - len(hogs)), (threads, available)
