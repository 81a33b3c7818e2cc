"""The server registry: where entries live, who counts as a live user, when a server may retire."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoevol.lm.server_registry import (
    CACHE_DIR_VARIABLE, Lease, ServerEntry, entry_path, process_alive, read_entry, retire, write_entry,
)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _entry(pid: int, *users: int) -> ServerEntry:
    return ServerEntry(model="m.gguf", pid=pid, api_base="http://127.0.0.1:1/v1", slots=2, ctx_per_slot=4096,
                       threads=2, log="server.log", leases=[Lease(pid=user, id=str(user)) for user in users])


def _exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_one_entry_per_model_file_inside_the_cache_folder(tmp_path, cache):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    alias = tmp_path / "alias.gguf"
    alias.symlink_to(model)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    assert entry_path(model) == entry_path(alias)  # the same file by another name: one server
    assert entry_path(model) != entry_path(other)
    assert entry_path(model).parent == cache / "servers"


def test_an_exited_process_is_not_alive_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    state = Path(f"/proc/{child.pid}/stat")
    while state.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not yet waited for
        time.sleep(0.01)
    assert not process_alive(child.pid)
    child.wait()
    assert process_alive(os.getpid()) and not process_alive(child.pid)


def test_a_server_retires_only_when_no_lease_holder_is_alive(tmp_path):
    path = tmp_path / "cache" / "servers" / "m.json"
    path.parent.mkdir(parents=True)
    dead = _exited_pid()
    write_entry(path, _entry(1234, os.getpid(), dead))
    assert retire(path, 1234, dead=set()) is False  # this process holds a lease: keep serving
    assert read_entry(path) is not None
    write_entry(path, _entry(1234, dead))
    assert retire(path, 1234, dead=set()) is True and read_entry(path) is None
    write_entry(path, _entry(99, os.getpid()))
    assert retire(path, 1234, dead=set()) is True  # the entry names another server: this one is done
    assert read_entry(path).pid == 99  # and that one's entry is left alone



def test_running_server_threads_add_up_the_threads_of_live_servers_only():
    from autoevol.lm.server_registry import SERVER_MODULE, running_server_threads

    def fake_server(*arguments: str) -> subprocess.Popen:  # a command line like a server's
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *arguments])

    servers = [fake_server("-m", SERVER_MODULE, "--threads", "3"), fake_server("-m", SERVER_MODULE, "--threads", "2")]
    others = [fake_server("-m", "some.other.module", "--threads", "8"), fake_server("-m", SERVER_MODULE)]
    gone = _exited_pid()
    try:
        pids = [p.pid for p in servers + others] + [gone, os.getpid()]
        assert running_server_threads(pids) == 5
        servers[0].kill()
        servers[0].wait()
        assert running_server_threads(pids) == 2
    finally:
        for process in servers + others:
            process.kill()
            process.wait()
