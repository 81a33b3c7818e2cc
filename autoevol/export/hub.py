"""Uploading an export to the Hugging Face Hub with ``datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub is not possible (library missing, no access, no network)."""


def push_to_hub(path: str | Path, repo: str, *, private: bool = False) -> None:
    """Upload an export (a file, a ``save_to_disk`` folder or a folder of round files) with ``datasets``.

    Raises:
        HubError: ``datasets`` is missing or the upload fails (one line, naming the repo).
    """
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets is a dependency
        raise HubError(f"pushing to the Hub needs the 'datasets' package ({error})") from None
    path = Path(path)
    try:
        if path.is_dir() and (path / "state.json").exists():
            data: Any = datasets.load_from_disk(str(path))
        elif path.is_dir():
            files = {p.stem.replace("-", "_"): str(p) for p in sorted(path.glob("*.parquet"))}
            if not files:
                raise HubError(f"{path}: no parquet files or saved dataset to push")
            data = datasets.load_dataset("parquet", data_files=files)
        else:
            kind = "json" if path.suffix == ".jsonl" else "parquet"
            data = datasets.load_dataset(kind, data_files={"train": str(path)})
        data.push_to_hub(repo, private=private)
    except HubError:
        raise
    except Exception as error:  # network, authentication, repository errors
        detail = " ".join(str(error).split())[:300]
        raise HubError(f"cannot push {path} to the Hub repo '{repo}': {type(error).__name__}: {detail}") from None
