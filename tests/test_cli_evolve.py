"""``autoevol evolve`` through the installed entry point: bad input, budgets, resume, retry, dry run."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from autoevol.data import read_rows
from autoevol.testing.fake_openai import FakeOpenAIServer, chat_adapter_responder, request_key

BAD = Path(__file__).parent / "bad_inputs"
sys.path.insert(0, str(BAD))
import make_corpus  # noqa: E402

PROBE_KEY = request_key([{"role": "user", "content": "Reply with OK."}])
# The fake server shares this process (and its GIL) with the CLI: a generous timeout, so that a loaded
# machine does not turn a slow answer into a retry; tests still bound repeats by the retries reported.
FAST = ["--timeout", "30", "--retries", "2", "--backoff", "0.01", "--concurrency", "8"]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """A fake server of this test's own: its counts hold this test's requests only."""
    with FakeOpenAIServer() as fake:
        yield fake


def _command(args, url):
    command = [shutil.which("autoevol") or "autoevol", "evolve", *map(str, args)]
    if url:
        command += ["--evol-lm", "openai/fake", "--api-base", url, *FAST]
    return command


ENV = {**os.environ, "OPENAI_API_KEY": "test", "COLUMNS": "200"}


def entry_point(*args: str | Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``autoevol`` console script in a subprocess (about 2 s of start-up each)."""
    return subprocess.run(_command(args, url), capture_output=True, text=True, env=ENV, timeout=120)


def autoevol(*args: str | Path, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The same ``main()`` as the console script, in this process (fast): exit code, stdout, stderr."""
    from autoevol.cli import main

    command = _command(args, url)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", ["autoevol", *command[1:]]), mock.patch.dict(os.environ, ENV):
        try:
            main()
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return subprocess.CompletedProcess(command, code, stdout.getvalue(), stderr.getvalue())


def autoevol_many(runs: dict[str, list], url: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run several commands at once (each is a separate process; this only saves wall time)."""
    started = {key: subprocess.Popen(_command(args, url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=ENV) for key, args in runs.items()}
    results = {}
    for key, process in started.items():
        stdout, stderr = process.communicate(timeout=120)
        results[key] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results


def reported(result: subprocess.CompletedProcess[str], column: str) -> int:
    """A column of the command's "LM usage" table (e.g. ``retries``), summed over its roles."""
    lines = result.stderr.split("LM usage", 1)[1].splitlines()
    names = [name.strip() for name in next(line for line in lines if column in line).strip(" ┃").split("┃")]
    rows = [[cell.strip() for cell in line.strip(" │").split("│")] for line in lines if line.startswith("│")]
    assert rows, result.stderr
    return sum(int(row[names.index(column)]) for row in rows)


def seed(path: Path, n: int, *, start: int = 0) -> Path:
    path.write_text("".join(json.dumps({"id": f"s{i}", "instruction": f"Add {i} and {i + 1}, then explain."}) + "\n"
                            for i in range(start, start + n)))
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


ERRORS = {
    "empty.jsonl": "no rows", "blank_lines.jsonl": "no rows", "empty.csv": "no rows",
    "header_only.csv": "only a header", "wrong_column.csv": "no instruction column",
    "invalid_json_row3.jsonl": "row 3", "missing_comma_row3.json": "row 3",
    "non_utf8_row2.jsonl": "row 2", "non_utf8_row2.csv": "row 2", "duplicate_ids.jsonl": "row 3",
    "null_id_row2.jsonl": "row 2", "missing_column_row2.jsonl": "row 2",
    "not_an_object_row2.jsonl": "row 2", "not_parquet.parquet": "parquet",
    "wrong_schema.parquet": "no instruction column", "unknown.txt": "unsupported input format",
}


def test_bad_files_through_the_installed_entry_point(tmp_path, server):
    names = ["invalid_json_row3.jsonl", "wrong_schema.parquet"]
    runs = {}
    for name in names:
        shutil.copyfile(BAD / name, tmp_path / name)
        runs[name] = [tmp_path / name, "-o", tmp_path / f"{name}.out.jsonl"]
    for name, result in autoevol_many(runs, server.url).items():
        assert_one_line_error(result, name, ERRORS[name])
        assert result.returncode == 2
        assert (tmp_path / name).read_bytes() == (BAD / name).read_bytes()


def test_budget_stop_through_the_installed_entry_point(tmp_path, server):
    result = entry_point(seed(tmp_path / "seed.jsonl", 20), "-o", tmp_path / "out.jsonl", "--max-calls", "4",
                         url=server.url)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "call budget of 4" in result.stderr


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_bad_files_fail_in_one_line_naming_file_and_row(tmp_path, server, name):
    shutil.copyfile(BAD / name, tmp_path / name)
    result = autoevol(tmp_path / name, "-o", tmp_path / "out.jsonl", url=server.url)
    assert_one_line_error(result, name, ERRORS[name])
    assert result.returncode == 2
    assert (tmp_path / name).read_bytes() == (BAD / name).read_bytes()
    assert not (tmp_path / "out.jsonl").exists()
    assert not list(tmp_path.glob("out.jsonl.partial*"))  # nothing started, nothing to clean up
    assert server.stats.requests == 0  # no LM call was made for a bad file


@pytest.mark.parametrize("name, failed", [("null_and_numeric.jsonl", 6), ("sharegpt_no_human.jsonl", 2),
                                          ("long_instruction.jsonl", 1)])
def test_bad_rows_become_failed_rows(tmp_path, server, name, failed):
    if name == "long_instruction.jsonl":
        data = make_corpus.write_large(tmp_path)
    else:
        data = tmp_path / name
        shutil.copyfile(BAD / name, data)
    before = data.read_bytes()
    out = tmp_path / "out.jsonl"
    result = autoevol(data, "-o", out, url=server.url)
    assert result.returncode == 0, result.stderr
    rows = list(read_rows(out))
    bad = [row for row in rows if row["failed"]]
    assert len(bad) == failed and all(row["rule"] == "bad_input" and row["reason"] for row in bad)
    assert len({row["id"] for row in rows}) == len(rows)
    assert data.read_bytes() == before


def test_existing_output_is_untouched_without_overwrite(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 3)
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    result = autoevol(data, "-o", out, url=server.url)
    assert_one_line_error(result, "out.jsonl", "--overwrite")
    assert out.read_text() == "precious\n"
    assert autoevol(data, "-o", out, "--overwrite", url=server.url).returncode == 0
    assert len(list(read_rows(out))) == 3


def test_dry_run_plans_calls_and_spends_nothing(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 25)
    result = autoevol(data, "-o", tmp_path / "out.jsonl", "--dry-run", "--rounds", "2",
                      "--evol-lm", "openai/gpt-4o-mini", "--api-base", server.url)  # a call would reach the server
    assert result.returncode == 0, result.stderr
    assert "100 calls" in result.stdout  # 25 items x 2 rounds x (evolve + answer)
    assert "$" in result.stdout  # gpt-4o-mini has a known price
    assert server.stats.requests == 0
    assert not (tmp_path / "out.jsonl").exists() and not list(tmp_path.glob("out.jsonl.partial*"))


def test_resume_without_an_unfinished_job_is_an_error(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 3)
    result = autoevol(data, "-o", tmp_path / "out.jsonl", "--resume", url=server.url)
    assert_one_line_error(result, "no unfinished job")


def test_budget_stops_cleanly_and_the_rerun_completes_without_repeating_calls(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 30)
    out = tmp_path / "out.jsonl"
    first = autoevol(data, "-o", out, "--max-calls", "10", url=server.url)
    assert first.returncode == 3, first.stderr
    assert "--resume" in first.stderr and "call budget of 10" in first.stderr
    assert not out.exists()
    stats = server.stats
    # the budget counts calls, not attempts: a retried call may have been answered twice
    assert stats.ok - stats.completions_by_key.get(PROBE_KEY, 0) <= 10 + reported(first, "retries")
    partial = list(read_rows(Path(str(out) + ".partial.jsonl")))
    assert 0 < len(partial) <= 5
    second = autoevol(data, "-o", out, "--resume", url=server.url)
    assert second.returncode == 0, second.stderr
    ids = [row["id"] for row in read_rows(out)]
    assert sorted(ids) == sorted(f"s{i}:r1" for i in range(30))
    repeated = {k: v for k, v in server.stats.repeated_completions.items() if k != PROBE_KEY}
    # every call completed before the stop is a cache hit; a repeat can only be a retried call
    assert sum(n - 1 for n in repeated.values()) <= reported(first, "retries") + reported(second, "retries")
    assert reported(second, "calls") <= 2 * (30 - len(partial)) + 1  # only the missing rows (and the probe)
    assert not list(tmp_path.glob("out.jsonl.partial*"))  # journal and call cache removed


def test_token_budget_stops_at_the_limit(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 30)
    result = autoevol(data, "-o", tmp_path / "out.jsonl", "--max-tokens", "2000", url=server.url)
    assert result.returncode == 3 and "token budget" in result.stderr


def failing_for_odd(messages, body):
    """Unparseable answers for instructions mentioning an odd number first."""
    text = json.dumps(messages)
    if any(f"Add {i} and" in text for i in range(1, 20, 2)):
        return "no fields here"
    return chat_adapter_responder(messages, body)


def test_retry_failed_reruns_only_failed_rows(tmp_path, server):
    data = seed(tmp_path / "seed.jsonl", 10)
    first_out = tmp_path / "first.jsonl"
    with FakeOpenAIServer(responder=failing_for_odd) as flaky:
        assert autoevol(data, "-o", first_out, url=flaky.url).returncode == 0
    first = {row["id"]: row for row in read_rows(first_out)}
    failed = {i for i, row in first.items() if row["failed"]}
    assert failed == {f"s{i}:r1" for i in range(1, 10, 2)}
    assert all(first[i]["rule"] == "unparseable" for i in failed)
    before = first_out.read_bytes()
    out = tmp_path / "second.jsonl"
    result = autoevol("--retry-failed", first_out, "-o", out, url=server.url)
    assert result.returncode == 0, result.stderr
    second = {row["id"]: row for row in read_rows(out)}
    assert set(second) == set(first) and len(list(read_rows(out))) == 10
    for i, row in second.items():
        if i in failed:
            assert not row["failed"] and row["root_id"] == first[i]["root_id"]
        else:
            assert row == first[i]
    # only the 5 failed rows were evaluated: evolve + answer each (plus the probe), each answered once
    # unless a retry had the server answer it twice
    assert 10 <= server.stats.ok - server.stats.completions_by_key.get(PROBE_KEY, 0) <= 10 + reported(result, "retries")
    assert first_out.read_bytes() == before
