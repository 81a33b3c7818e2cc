"""Write the bad-input corpus used by tests/test_data.py.

Run ``python tests/bad_inputs/make_corpus.py`` to regenerate the files of this folder. The
1 MB instruction file is not kept in the repository: tests write it with :func:`write_large`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _lines(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")


#: Small files, written byte for byte (some are deliberately not valid UTF-8).
FILES: dict[str, bytes] = {
    "empty.jsonl": b"",
    "blank_lines.jsonl": b"\n  \n\t\n",
    "empty.csv": b"",
    "header_only.csv": b"id,instruction\n",
    "wrong_column.csv": b"id,text\n1,hello\n2,world\n",
    "invalid_json_row3.jsonl": (
        b'{"instruction": "first"}\n'
        b'{"instruction": "second"}\n'
        b'{"instruction": "third" "oops": 1}\n'
        b'{"instruction": "fourth"}\n'
    ),
    "non_utf8_row2.jsonl": b'{"instruction": "fine"}\n{"instruction": "caf\xe9 latin-1"}\n',
    "non_utf8_row2.csv": b"instruction\nfine\ncaf\xe9 latin-1\n",
    "null_and_numeric.jsonl": _lines(
        {"instruction": "Write a haiku."},
        {"instruction": None},
        {"instruction": 42},
        {"instruction": True},
        {"instruction": ["a", "list"]},
        {"instruction": ""},
        {"instruction": "   "},
    ),
    "duplicate_ids.jsonl": _lines(
        {"id": "a", "instruction": "one"},
        {"id": "b", "instruction": "two"},
        {"id": "a", "instruction": "three"},
    ),
    "null_id_row2.jsonl": _lines(
        {"id": "a", "instruction": "one"}, {"id": None, "instruction": "two"}
    ),
    "missing_column_row2.jsonl": _lines({"instruction": "one"}, {"prompt": "two"}),
    "not_an_object_row2.jsonl": _lines({"instruction": "one"}, [1, 2]),
    "sharegpt_no_human.jsonl": _lines(
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "system", "value": "Be nice"}, {"from": "gpt", "value": "Hi"}]},
        {"conversations": "not a list"},
    ),
    "missing_comma_row3.json": (
        b'[\n  {"prompt": "one"},\n  {"prompt": "two"}\n  {"prompt": "three"}\n]\n'
    ),
    "not_parquet.parquet": b"this is plain text, not a parquet file\n",
    "unknown.txt": b"Write a poem about the sea.\n",
}


def write_wrong_schema_parquet(directory: Path) -> Path:
    """A parquet file without any instruction-like column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = directory / "wrong_schema.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["a", "b"], "score": [0.5, 0.7]}), path)
    return path


def write_large(directory: Path) -> Path:
    """A JSON lines file whose second row holds a 1 MB instruction."""
    path = directory / "long_instruction.jsonl"
    path.write_bytes(_lines({"instruction": "short"}, {"instruction": "x" * 1_000_000}))
    return path


def write_corpus(directory: Path = HERE) -> None:
    """Write every small file and the wrong-schema parquet into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in FILES.items():
        (directory / name).write_bytes(content)
    write_wrong_schema_parquet(directory)


if __name__ == "__main__":
    write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
