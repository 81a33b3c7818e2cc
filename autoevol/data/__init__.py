"""Reading seed instructions and writing evolved rows.

Inputs are local files or folders:

* ``.jsonl``: one JSON object per line, read line by line (blank lines are skipped);
* ``.json``: a JSON array of objects (parsed incrementally) or JSON lines in a ``.json`` file;
* ``.csv``: a header line, then one row per record (UTF-8, comma separated);
* ``.parquet``: read in record batches, only the needed columns;
* a folder written by HF ``datasets``' ``save_to_disk``.

Everything streams: a large input is never loaded whole into memory. The instruction column is
named by the caller or detected (:func:`detect_column`); ShareGPT ``conversations`` and OpenAI-style
``messages`` columns yield one item per human turn.

Unusable input raises :class:`DataError`, whose message is one line naming the file, the row and
the problem. Row numbers are 1-based: in JSON lines files a row is a line (blank lines count, so the
number is what an editor shows); in the other formats it is the position of the record among the
data records (a CSV header is not a row). Problems that concern one row's instruction only (null,
empty, not text, too long) do not abort the file: the item carries them in ``SeedItem.problem``.

Outputs are ``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder (a path without a suffix). They
are written to a temporary sibling and renamed at the end, so a crash never leaves half an output.

The rooms: :mod:`~autoevol.data.file_formats` (which format a path holds),
:mod:`~autoevol.data.json_files`, :mod:`~autoevol.data.csv_files`,
:mod:`~autoevol.data.parquet_files` and :mod:`~autoevol.data.saved_datasets` (one reader per
format), :mod:`~autoevol.data.columns` (instruction and id columns),
:mod:`~autoevol.data.conversations` (turns), :mod:`~autoevol.data.validation` (the error, ids,
instruction checks), :mod:`~autoevol.data.readers` (records to seed items) and
:mod:`~autoevol.data.writers`.
"""

from autoevol.data.columns import (
    CONVERSATION_COLUMNS,
    INSTRUCTION_COLUMNS,
    detect_column,
    resolve_columns,
)
from autoevol.data.conversations import is_human_turn, turn_text
from autoevol.data.file_formats import INPUT_FORMATS, OUTPUT_FORMATS, output_format
from autoevol.data.readers import (
    SOURCE_OPENERS,
    count_rows,
    iter_conversations,
    iter_items,
    read_rows,
    record_items,
)
from autoevol.data.validation import MAX_INSTRUCTION_CHARS, DataError, record_id
from autoevol.data.writers import write_rows

__all__ = [
    "CONVERSATION_COLUMNS",
    "INPUT_FORMATS",
    "INSTRUCTION_COLUMNS",
    "MAX_INSTRUCTION_CHARS",
    "OUTPUT_FORMATS",
    "SOURCE_OPENERS",
    "DataError",
    "count_rows",
    "detect_column",
    "is_human_turn",
    "iter_conversations",
    "iter_items",
    "output_format",
    "read_rows",
    "record_id",
    "record_items",
    "resolve_columns",
    "turn_text",
    "write_rows",
]
