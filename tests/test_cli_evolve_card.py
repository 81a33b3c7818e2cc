"""``autoevol evolve --out FOLDER`` writes the dataset card ``export --card`` writes; a user's README is kept."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import datasets
import pytest
import yaml

from autoevol.data import read_rows
from autoevol.export import CARD_MARKER, OUTPUT_FIELDS
from autoevol.signatures.evolve import INITIAL_METHOD
from autoevol.testing.fake_openai import FakeOpenAIServer

FAST = ["--timeout", "30", "--retries", "2", "--backoff", "0.01", "--concurrency", "4"]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as fake:
        yield fake


def run(*args: str | Path) -> tuple[int, str]:
    """``main()`` of the console script in this process: exit code and stderr (where rich prints)."""
    from autoevol.cli import main

    stderr = io.StringIO()
    code = 0
    env = {**os.environ, "OPENAI_API_KEY": "test", "COLUMNS": "200"}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", ["autoevol", *map(str, args)]), mock.patch.dict(os.environ, env):
        try:
            main()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return code, stderr.getvalue()


def evolve(data: Path, out: Path, url: str, *extra: str) -> tuple[int, str]:
    return run("evolve", data, "--out", out, "--evol-lm", "openai/fake", "--api-base", url, *FAST, *extra)


def seed(path: Path) -> Path:
    """Four instructions and one empty one (a ``bad_input`` row, so the card has a failure to count)."""
    rows = [{"id": f"s{i}", "instruction": f"Add {i} and {i + 1}, then explain."} for i in range(4)]
    rows.append({"id": "empty", "instruction": ""})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:200]
    return yaml.safe_load(card.split("\n---\n", 1)[0].removeprefix("---\n"))


def headings(card: str) -> list[str]:
    return [line for line in card.splitlines() if line.startswith("## ")]


def test_folder_output_gets_the_export_card_and_still_loads(tmp_path, server):
    out = tmp_path / "evolved"
    code, stderr = evolve(seed(tmp_path / "seed.jsonl"), out, server.url, "--rounds", "2")
    assert code == 0, stderr[-2000:]
    loaded = datasets.load_from_disk(str(out))
    rows = list(read_rows(out))
    assert len(loaded) == len(rows) and "README.md" not in loaded.column_names
    card = (out / "README.md").read_text(encoding="utf-8")
    meta = front_matter(card)
    assert "autoevol" in meta["tags"] and meta["pretty_name"] and meta["size_categories"] == ["n<1K"]
    assert "configs" not in meta  # a save_to_disk folder is read with load_from_disk, not data_files
    assert CARD_MARKER in card and "## How the data was made" in card
    assert INITIAL_METHOD.splitlines()[0] in card and "Method fingerprint(s)" in card
    assert "| evol | `openai/fake` |" in card
    for setting in ("| engine | `local` |", "| rounds | `2` |", "| concurrency | `4` |", "| max_output_tokens |"):
        assert setting in card, setting
    failed = Counter(row["rule"] for row in rows if row["failed"])
    assert failed["bad_input"] >= 1
    for rule, count in failed.items():
        assert f"| {rule} | {count} |" in card
    by_round = Counter(row["round"] for row in rows)
    for round_no, count in by_round.items():
        assert f"| {round_no} | {count} |" in card
    for name in OUTPUT_FIELDS:
        assert f"| {name} |" in card

    # the same card as `autoevol export --card` writes (one function): its sections, its front matter
    code, stderr = run("export", out, "--to", tmp_path / "train", "--mode", "mixed", "--card", "--no-quality")
    assert code == 0, stderr[-2000:]
    exported = (tmp_path / "train" / "README.md").read_text(encoding="utf-8")
    assert headings(exported) == headings(card)
    assert set(front_matter(exported)) == set(meta)

    # a second run with --overwrite replaces our own card
    (out / "README.md").write_text(card.replace("## How the data was made", "## edited"), encoding="utf-8")
    code, stderr = evolve(tmp_path / "seed.jsonl", out, server.url, "--overwrite")
    assert code == 0, stderr[-2000:]
    again = (out / "README.md").read_text(encoding="utf-8")
    assert "## edited" not in again and "| rounds | `1` |" in again
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_users_readme_is_never_replaced(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl")
    out = tmp_path / "evolved"
    assert evolve(data, out, server.url)[0] == 0
    (out / "README.md").write_text("# my own notes\n", encoding="utf-8")
    code, stderr = evolve(data, out, server.url, "--overwrite")
    assert code == 2 and "README.md" in stderr and "Traceback" not in stderr
    assert (out / "README.md").read_text(encoding="utf-8") == "# my own notes\n"
    assert len(datasets.load_from_disk(str(out))) == 5  # the earlier output is untouched

    # export --card next to a user's README: refused before anything is written
    notes = tmp_path / "export" / "README.md"
    notes.parent.mkdir()
    notes.write_text("mine\n", encoding="utf-8")
    code, stderr = run("export", out, "--to", notes.parent / "train.jsonl", "--mode", "mixed", "--card",
                       "--no-quality", "--overwrite")
    assert code == 2 and "was not written by autoevol" in stderr
    assert notes.read_text(encoding="utf-8") == "mine\n" and not (notes.parent / "train.jsonl").exists()


def test_file_outputs_get_no_card(tmp_path, server):
    out = tmp_path / "out" / "evolved.jsonl"
    code, stderr = evolve(seed(tmp_path / "seed.jsonl"), out, server.url)
    assert code == 0, stderr[-2000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["evolved.jsonl"]
