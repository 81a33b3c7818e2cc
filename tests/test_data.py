"""Tests for autoevol.data: reading seed items in every format, bad inputs, writing outputs."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoevol.data import (
    MAX_INSTRUCTION_CHARS,
    OUTPUT_FORMATS,
    DataError,
    count_rows,
    detect_column,
    iter_items,
    output_format,
    read_rows,
    write_rows,
)
from autoevol.records import EvolvedRow, SeedItem

CORPUS = Path(__file__).parent / "bad_inputs"


def _load_make_corpus():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_corpus = _load_make_corpus()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def items(path, **kwargs) -> list[SeedItem]:
    return list(iter_items(path, **kwargs))


def error_of(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        items(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return info.value


# --------------------------------------------------------------------------- formats


def test_jsonl_reads_rows_with_detected_id_and_line_numbers(tmp_path):
    path = tmp_path / "seed.jsonl"
    path.write_text(
        '{"id": 7, "instruction": "Add 2 and 3."}\n\n{"id": "x", "instruction": "Name a color."}\n',
        encoding="utf-8",
    )
    assert items(path) == [
        SeedItem(id="7", instruction="Add 2 and 3.", row=1),
        SeedItem(id="x", instruction="Name a color.", row=3),
    ]


def test_jsonl_ids_default_to_row_index(tmp_path):
    path = write_jsonl(tmp_path / "seed.jsonl", [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}])
    assert [i.id for i in items(path)] == ["0", "1", "2"]


def test_given_id_column_and_column(tmp_path):
    path = write_jsonl(
        tmp_path / "seed.jsonl",
        [
            {"id": 1, "uid": "u1", "instruction": "no", "text": "one"},
            {"id": 2, "uid": "u2", "instruction": "no", "text": "two"},
        ],
    )
    got = items(path, column="text", id_column="uid")
    assert [(i.id, i.instruction) for i in got] == [("u1", "one"), ("u2", "two")]


def test_missing_given_columns_are_named(tmp_path):
    path = write_jsonl(tmp_path / "seed.jsonl", [{"instruction": "a", "text": "b"}])
    assert str(error_of(path, column="prompt")) == (
        f"{path}, row 1: column 'prompt' not found; columns are: instruction, text"
    )
    assert "id column 'uid' not found" in str(error_of(path, id_column="uid"))


def test_json_array_is_parsed_incrementally(tmp_path, monkeypatch):
    import autoevol.data.json_files as data

    monkeypatch.setattr(data, "_READ_CHUNK", 7)  # force elements to straddle chunk boundaries
    rows = [{"question": f"q{i} ünïcode " + "y" * i, "n": 123456789 + i} for i in range(50)]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    got = items(path)
    assert [i.instruction for i in got] == [r["question"] for r in rows]
    assert [i.row for i in got] == list(range(1, 51))


def test_json_file_may_hold_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "seed.json", [{"query": "a"}, {"query": "b"}])
    assert [i.instruction for i in items(path)] == ["a", "b"]


def test_pretty_printed_json_object_explains_accepted_shapes(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps({"data": [{"instruction": "a"}]}, indent=2), encoding="utf-8")
    message = str(error_of(path))
    assert message.startswith(f"{path}, row 1: invalid JSON")
    assert "JSON array of objects or one JSON object per line" in message


def test_empty_json_array_has_no_rows(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text("[ ]", encoding="utf-8")
    assert "no rows" in str(error_of(path))


def test_csv_with_bom_quoted_newlines_and_ids(tmp_path):
    path = tmp_path / "seed.csv"
    text = '\ufeffid,instruction\nA,"line one\nline two"\n\nB,"say ""hi"""\n'
    path.write_bytes(text.encode("utf-8"))
    assert items(path) == [
        SeedItem(id="A", instruction="line one\nline two", row=1),
        SeedItem(id="B", instruction='say "hi"', row=2),
    ]


def test_csv_short_row_is_an_error(tmp_path):
    path = tmp_path / "seed.csv"
    path.write_text("id,instruction\n1,a\n2\n", encoding="utf-8")
    assert str(error_of(path)) == f"{path}, row 2: row has 1 fields but the header has 2"


def test_csv_empty_id_is_an_error(tmp_path):
    path = tmp_path / "seed.csv"
    path.write_text("id,instruction\n,a\n", encoding="utf-8")
    assert str(error_of(path)) == f"{path}, row 1: id is empty (column 'id')"


def test_parquet_streams_batches_and_reads_needed_columns(tmp_path):
    path = tmp_path / "seed.parquet"
    n = 2500
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(n)],
            "prompt": [f"p{i}" for i in range(n)],
            "blob": [b"x"] * n,
        }
    )
    pq.write_table(table, path, row_group_size=600)
    got = items(path, id_column="key")
    assert len(got) == n
    assert got[0] == SeedItem(id="k0", instruction="p0", row=1)
    assert got[-1] == SeedItem(id=f"k{n - 1}", instruction=f"p{n - 1}", row=n)


def test_saved_dataset_folder(tmp_path):
    import datasets

    folder = tmp_path / "seed_ds"
    dataset = datasets.Dataset.from_dict({"id": ["a", "b"], "instruction": ["one", "two"]})
    dataset.save_to_disk(str(folder))
    assert items(folder) == [
        SeedItem(id="a", instruction="one", row=1),
        SeedItem(id="b", instruction="two", row=2),
    ]
    assert count_rows(folder) == 2


def test_saved_dataset_dict_uses_train_split(tmp_path):
    import datasets

    folder = tmp_path / "seed_dd"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"prompt": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"prompt": ["x"]}),
        }
    ).save_to_disk(str(folder))
    assert [i.instruction for i in items(folder)] == ["t1", "t2"]


def test_folder_that_is_not_a_dataset(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    message = str(error_of(folder))
    assert message.startswith(f"{folder}: a folder that is not a dataset saved with save_to_disk")


# --------------------------------------------------------------------------- column detection


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["id", "query", "question", "prompt", "instruction"], "instruction"),
        (["query", "prompt"], "prompt"),
        (["query", "question"], "question"),
        (["query", "output"], "query"),
        (["id", "Instruction"], "Instruction"),
        (["conversations", "id"], "conversations"),
        (["messages"], "messages"),
        (["messages", "prompt"], "prompt"),
    ],
)
def test_detect_column(columns, expected):
    assert detect_column(columns) == expected


def test_detect_column_lists_the_columns():
    with pytest.raises(DataError) as info:
        detect_column(["id", "text"])
    assert "columns are: id, text" in str(info.value)
    assert info.value.path is None


def test_sharegpt_conversations_yield_one_item_per_human_turn(tmp_path):
    conversation = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "What is 2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "user", "value": "And 3+3?"},
    ]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"id": "c1", "conversations": conversation}])
    assert items(path) == [
        SeedItem(id="c1-0", instruction="What is 2+2?", row=1, turn=0),
        SeedItem(id="c1-1", instruction="And 3+3?", row=1, turn=1),
    ]


def test_openai_messages_with_text_parts(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in "ab"]}]},
        {"messages": [{"role": "user", "content": None}]},
    ]
    got = items(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert [(i.id, i.instruction, i.turn, i.problem) for i in got] == [
        ("0-0", "Hello", 0, None),
        ("1-0", "a\nb", 0, None),
        ("2-0", "", 0, "instruction is null"),
    ]


def test_conversation_in_parquet(tmp_path):
    path = tmp_path / "chat.parquet"
    turns = [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"}]
    pq.write_table(pa.table({"conversations": [turns]}), path)
    assert items(path) == [SeedItem(id="0-0", instruction="q1", row=1, turn=0)]


# --------------------------------------------------------------------------- limit and streaming


def test_limit_counts_input_rows_and_stops_reading(tmp_path):
    path = tmp_path / "seed.jsonl"
    lines = '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}\nnot json\n'
    path.write_text(lines, encoding="utf-8")
    assert [i.instruction for i in items(path, limit=2)] == ["a", "b"]
    assert items(path, limit=0) == []
    assert "row 4" in str(error_of(path))


def test_limit_counts_conversation_rows_not_turns(tmp_path):
    turns = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": turns}] * 3)
    assert [i.id for i in items(path, limit=1)] == ["0-0", "0-1"]


def test_first_item_does_not_read_the_whole_jsonl(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(100_000):
            fh.write(json.dumps({"instruction": f"task {i}"}) + "\n")
        fh.write("{broken\n")  # reading the whole file would raise on this line
    iterator = iter_items(path)
    assert next(iterator) == SeedItem(id="0", instruction="task 0", row=1)
    iterator.close()
    with pytest.raises(DataError, match=r"big\.jsonl, row 100001: invalid JSON"):
        for _ in iter_items(path):
            pass


def test_first_item_does_not_read_the_whole_json_array_or_csv(tmp_path):
    array = tmp_path / "big.json"
    body = ",".join(json.dumps({"prompt": f"p{i}"}) for i in range(20_000))
    array.write_text("[" + body + ", {broken", encoding="utf-8")
    assert next(iter_items(array)).instruction == "p0"
    table = tmp_path / "big.csv"
    table.write_bytes(b"prompt\n" + b"".join(b"p%d\n" % i for i in range(20_000)) + b"\xff\n")
    assert next(iter_items(table)).instruction == "p0"
    assert str(error_of(table)).startswith(f"{table}, row 20001: not valid UTF-8")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.jsonl", "{}\n\n{}\n{}\n", 3),
        ("a.csv", "prompt\na\nb\n", 2),
        ("a.json", "[{}, {}]", None),
        ("a.json", "{}\n{}\n", 2),
        ("a.txt", "x", None),
    ],
)
def test_count_rows(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert count_rows(path) == expected


def test_count_rows_parquet_and_missing(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b", "c"]}), path)
    assert count_rows(path) == 3
    assert count_rows(tmp_path / "missing.jsonl") is None


# --------------------------------------------------------------------------- the bad-input corpus


def test_corpus_matches_its_generator():
    for name, content in make_corpus.FILES.items():
        assert (CORPUS / name).read_bytes() == content, name
    assert (CORPUS / "wrong_schema.parquet").is_file()


BAD_FILES = [
    # (file, row or None, fragment of the problem)
    ("empty.jsonl", None, "no rows"),
    ("blank_lines.jsonl", None, "no rows"),
    ("empty.csv", None, "no rows (the file is empty)"),
    ("header_only.csv", None, "no rows (the file has only a header)"),
    ("wrong_column.csv", None, "no instruction column found"),
    ("invalid_json_row3.jsonl", 3, "invalid JSON (Expecting ',' delimiter"),
    ("non_utf8_row2.jsonl", 2, "not valid UTF-8 (byte 0xe9"),
    ("non_utf8_row2.csv", 2, "not valid UTF-8 (byte 0xe9"),
    ("duplicate_ids.jsonl", 3, "duplicated id 'a' (first used in row 1)"),
    ("null_id_row2.jsonl", 2, "id is null (column 'id')"),
    ("missing_column_row2.jsonl", 2, "column 'instruction' is missing"),
    ("not_an_object_row2.jsonl", 2, "expected an object, got a list"),
    ("missing_comma_row3.json", 3, "invalid JSON (Expecting ',' delimiter"),
    ("not_parquet.parquet", None, "not a valid parquet file"),
    ("wrong_schema.parquet", None, "columns are: id, text, score"),
    ("unknown.txt", None, "unsupported input format '.txt'; supported: .jsonl, .json, .csv, .parq"),
]


@pytest.mark.parametrize(("name", "row", "fragment"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_input_names_file_row_and_problem(name, row, fragment):
    path = CORPUS / name
    before = path.read_bytes()
    error = error_of(path)
    prefix = f"{path}: " if row is None else f"{path}, row {row}: "
    assert str(error).startswith(prefix)
    assert fragment in str(error)
    assert (error.path, error.row) == (str(path), row)
    assert path.read_bytes() == before


def test_wrong_column_lists_columns():
    path = CORPUS / "wrong_column.csv"
    expected = f"{path}: column 'prompt' not found; columns are: id, text"
    assert str(error_of(path, column="prompt")) == expected


def test_missing_file_is_reported_at_call_time(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError) as info:
        iter_items(path)
    assert str(info.value) == f"{path}: file not found"


def test_null_and_numeric_instructions_are_problems_not_errors():
    path = CORPUS / "null_and_numeric.jsonl"
    before = path.read_bytes()
    got = items(path)
    assert [(i.instruction, i.problem) for i in got] == [
        ("Write a haiku.", None),
        ("", "instruction is null"),
        ("42", "instruction is not text (int)"),
        ("True", "instruction is not text (bool)"),
        ("['a', 'list']", "instruction is not text (list)"),
        ("", "instruction is empty"),
        ("   ", "instruction is empty"),
    ]
    assert [i.row for i in got] == list(range(1, 8))
    assert path.read_bytes() == before


def test_sharegpt_without_human_turn_is_a_problem():
    got = items(CORPUS / "sharegpt_no_human.jsonl")
    assert [(i.id, i.instruction, i.row, i.problem) for i in got] == [
        ("0-0", "Hi", 1, None),
        ("1-0", "", 2, "conversation has no human turn"),
        ("2-0", "", 3, "conversations is not a list of turns (str)"),
    ]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_one_megabyte_instruction_is_truncated_with_a_problem(tmp_path, suffix):
    if suffix == "jsonl":
        path = make_corpus.write_large(tmp_path)
    else:
        path = tmp_path / "long.csv"
        path.write_text("instruction\nshort\n" + "x" * 1_000_000 + "\n", encoding="utf-8")
    before = path.read_bytes()
    short, long = items(path)
    assert short.problem is None
    limit = MAX_INSTRUCTION_CHARS
    assert long.problem == f"instruction is too long (1000000 characters; limit {limit})"
    assert long.instruction == "x" * MAX_INSTRUCTION_CHARS
    assert path.read_bytes() == before


def test_data_error_pickles():
    error = DataError("data.jsonl", "invalid JSON", 7)
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) == "data.jsonl, row 7: invalid JSON"


# --------------------------------------------------------------------------- output


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("out.jsonl", "jsonl"),
        ("out.PARQUET", "parquet"),
        ("out", "dataset"),
        ("dir/out/", "dataset"),
    ],
)
def test_output_format(path, expected):
    assert output_format(path) == expected
    assert expected in OUTPUT_FORMATS


@pytest.mark.parametrize("path", ["out.json", "out.csv", "out.v2"])
def test_unsupported_output_format(path):
    with pytest.raises(DataError, match=r"unsupported output format .*\.jsonl, \.parquet"):
        output_format(path)


def evolved_rows(n: int) -> list[EvolvedRow]:
    return [
        EvolvedRow(
            id=f"{i}-r1",
            parent_id=str(i),
            root_id=str(i),
            round=1,
            original=f"orig {i} é",
            evolved=None if i < 1500 else f"evolved {i}",  # null throughout the first batch
            answer=None,
            failed=i < 1500,
            rule="lm_error" if i < 1500 else None,
            reason="",
            method_fingerprint="abc",
            evol_model="local",
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_ds"])
@pytest.mark.parametrize("hint", [EvolvedRow, None], ids=["hint", "inferred"])
def test_round_trip(tmp_path, name, hint):
    rows = evolved_rows(2100)
    path = tmp_path / name
    assert write_rows((r.model_dump() for r in rows), path, schema_hint=hint) == len(rows)
    assert list(read_rows(path)) == [r.model_dump() for r in rows]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left


def test_write_accepts_models_and_replaces_outputs(tmp_path):
    for name in ["out.jsonl", "out.parquet", "out_ds"]:
        path = tmp_path / name
        write_rows(evolved_rows(3), path, schema_hint=EvolvedRow)
        write_rows(evolved_rows(2), path, schema_hint=EvolvedRow)
        assert [r["id"] for r in read_rows(path)] == ["0-r1", "1-r1"]


def test_jsonl_output_is_utf8_not_escaped(tmp_path):
    path = tmp_path / "out.jsonl"
    write_rows([{"text": "café ☕"}], path)
    assert path.read_text(encoding="utf-8") == '{"text": "café ☕"}\n'


def test_empty_outputs(tmp_path):
    for name in ["out.jsonl", "out.parquet", "out_ds"]:
        assert write_rows([], tmp_path / name, schema_hint=EvolvedRow) == 0
        assert list(read_rows(tmp_path / name)) == []
    assert pq.read_schema(tmp_path / "out.parquet").names == list(EvolvedRow.model_fields)


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out_ds"])
def test_atomic_write_leaves_nothing_when_rows_fail(tmp_path, name):
    def rows():
        yield from (r.model_dump() for r in evolved_rows(1200))
        raise RuntimeError("LM crashed")

    path = tmp_path / name
    with pytest.raises(RuntimeError, match="LM crashed"):
        write_rows(rows(), path)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_previous_output_when_rows_fail(tmp_path):
    path = tmp_path / "out.jsonl"
    write_rows([{"a": 1}], path)

    def rows():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_rows(rows(), path)
    assert list(read_rows(path)) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_dataset_output_never_replaces_an_unrelated_folder(tmp_path):
    folder = tmp_path / "mydir"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="refusing to replace"):
        write_rows([{"a": 1}], folder)
    assert (folder / "keep.txt").read_text() == "precious"


def test_rows_with_fields_outside_the_schema_are_rejected(tmp_path):
    schema = pa.schema([("a", pa.int64())])
    with pytest.raises(ValueError, match=r"row 2 has fields not in the output schema: \['extra'\]"):
        write_rows([{"a": 1}, {"a": 2, "extra": 3}], tmp_path / "out.parquet", schema_hint=schema)
    with pytest.raises(ValueError, match="row 1001 has fields not in the output schema"):
        write_rows([{"a": 1}] * 1000 + [{"a": 2, "extra": 3}], tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []


def test_read_rows_missing_output(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "none.parquet")
