"""Folders written by HF ``datasets``' ``save_to_disk``: loading one offline, and reading it in batches.

HF ``datasets`` is imported only when a folder is read or written, offline and with its progress
bars off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autoevol.data.file_formats import BATCH_ROWS, Source
from autoevol.data.validation import DataError, name_list

logger = logging.getLogger(__name__)


def _datasets() -> types.ModuleType:
    """Import HF ``datasets`` for offline local use."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    return datasets


@contextlib.contextmanager
def quiet_datasets() -> Iterator[types.ModuleType]:
    """HF ``datasets`` with its progress bars off for the duration of the block."""
    datasets = _datasets()
    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def load_dataset_folder(path: Path) -> Any:
    """The ``datasets.Dataset`` saved in a folder (the ``train`` split or the only split)."""
    with quiet_datasets() as datasets:
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(
                path, f"a folder that is not a dataset saved with save_to_disk ({exc})"
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            split = "train"
        elif len(splits) == 1:
            split = splits[0]
        else:
            raise DataError(
                path, f"a dataset with several splits and no 'train' split: {name_list(splits)}"
            )
        if len(splits) > 1:
            logger.warning("%s: reading split %r; ignoring %s", path, split, splits)
        loaded = loaded[split]
    return loaded.with_format(None)


def open_dataset(path: Path) -> Source:
    """A ``save_to_disk`` folder as an input; its columns are the dataset's."""
    dataset = load_dataset_folder(path)
    columns = list(dataset.column_names)

    def read(wanted: list[str] | None) -> Iterator[tuple[int, dict]]:
        selected = dataset.select_columns(wanted) if wanted else dataset
        row = 0
        for batch in selected.iter(batch_size=BATCH_ROWS):
            names = list(batch)
            for values in zip(*(batch[n] for n in names)):
                row += 1
                yield row, dict(zip(names, values))

    return Source(columns, read)
