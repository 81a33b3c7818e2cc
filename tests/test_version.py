"""Tests for autoevol.version: the version comes from the installed package metadata."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import autoevol
from autoevol import version as version_module
from autoevol.version import UNKNOWN_VERSION, __version__, installed_version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_version_is_the_installed_metadata_and_matches_pyproject() -> None:
    declared = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    assert __version__ == importlib.metadata.version("autoevol") == declared


def test_package_reexports_the_ground_floor_version() -> None:
    assert autoevol.__version__ == __version__
    assert "__version__" in autoevol.__all__


def test_a_distribution_without_metadata_reports_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version_module, "version", not_installed)
    assert installed_version() == UNKNOWN_VERSION
    assert installed_version("autoevol-not-a-real-distribution") == UNKNOWN_VERSION
