"""The compile's data: distinct instructions, split into a training pool X and a development set D."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import dspy

from autoevol.metrics._text import normalize
from autoevol.optimizers.auto_evol.evaluation import Item
from autoevol.records import SeedItem, fingerprint

Instructions = Sequence["str | dspy.Example | SeedItem"]


class NotEnoughData(ValueError):
    """The training or development data has fewer distinct instructions than the settings need."""


class DataSplit(NamedTuple):
    """The compile's three disjoint parts: the training pool X, the development set D, and the
    confirmation split that only the final check measures (empty when it is turned off)."""

    pool: list[Item]
    dev: list[Item]
    confirm: list[Item]


def split_pool_and_dev(trainset: Instructions, valset: Instructions | None, *, batch_size: int, dev_size: int,
                       seed: int, confirm_size: int = 0) -> DataSplit:
    """The training pool, the development set and the confirmation split: distinct, never overlapping.

    Without ``valset`` the dev set is ``dev_size`` items drawn from ``trainset`` with the seed;
    with it, ``dev_size`` items are drawn from ``valset`` and every training item equal to a dev
    item is left out. ``confirm_size`` items of the remaining training data are drawn for the
    confirmation split, and the pool is the rest.

    Raises:
        NotEnoughData: the message says how many distinct instructions are needed and given.
    """
    train = distinct(items_of(trainset, "train"))
    rng = random.Random(f"{seed}:split")
    if valset is None:
        needed = batch_size + dev_size + confirm_size
        if len(train) < needed:
            raise NotEnoughData(
                f"compile needs at least {needed} distinct instructions (batch size {batch_size} + dev size "
                f"{dev_size}" + (f" + confirmation size {confirm_size}" if confirm_size else "") + f"), but the "
                f"training data has {len(train)}; lower the batch, dev or confirmation size, or add data")
        shuffled = rng.sample(train, len(train))
        end = dev_size + confirm_size
        return DataSplit(pool=shuffled[end:], dev=shuffled[:dev_size], confirm=shuffled[dev_size:end])
    candidates = distinct(items_of(valset, "dev"))
    if len(candidates) < dev_size:
        raise NotEnoughData(
            f"the dev set needs at least {dev_size} distinct instructions (dev size), but the "
            f"validation data has {len(candidates)}; lower the dev size, or add data")
    dev = rng.sample(candidates, dev_size)
    in_dev = {normalize(item.text) for item in dev}
    rest = [item for item in train if normalize(item.text) not in in_dev]
    if len(rest) < batch_size + confirm_size:
        overlap = len(train) - len(rest)
        raise NotEnoughData(
            f"compile needs at least {batch_size + confirm_size} distinct training instructions outside the dev "
            f"set (batch size {batch_size}" + (f" + confirmation size {confirm_size}" if confirm_size else "")
            + f"), but the training data has {len(rest)}"
            + (f" ({overlap} more are also dev items)" if overlap else "")
            + "; lower the batch or confirmation size, or add data")
    confirm = rng.sample(rest, confirm_size)
    in_confirm = {id(item) for item in confirm}
    return DataSplit(pool=[item for item in rest if id(item) not in in_confirm], dev=dev, confirm=confirm)


def items_of(data: Iterable[str | dspy.Example | SeedItem], prefix: str) -> list[Item]:
    """Plain items from strings, ``dspy.Example`` (field ``instruction``) or ``SeedItem``."""
    items = []
    for position, entry in enumerate(data):
        if isinstance(entry, SeedItem):
            if entry.problem is None:
                items.append(Item(id=entry.id, text=entry.instruction))
            continue
        if isinstance(entry, str):
            text, item_id = entry, f"{prefix}-{position}"
        elif isinstance(entry, (dspy.Example, Mapping)):
            if "instruction" not in entry:
                raise TypeError(f"{prefix} item {position} has no 'instruction' field")
            text, item_id = entry["instruction"], str(entry.get("id", f"{prefix}-{position}"))
        else:
            raise TypeError(f"{prefix} item {position}: expected a string, a dspy.Example or a SeedItem, "
                            f"not {type(entry).__name__}")
        if isinstance(text, str) and text.strip():
            items.append(Item(id=item_id, text=text))
    return items


def distinct(items: Iterable[Item]) -> list[Item]:
    """The items without repeats (compared by :func:`~autoevol.metrics._text.normalize` text), first occurrence kept."""
    seen: set[str] = set()
    unique = []
    for item in items:
        key = normalize(item.text)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def data_summary(pool: Sequence[Item], dev: Sequence[Item], confirm: Sequence[Item] = ()) -> dict[str, Any]:
    """Fingerprints and sizes of the split (recorded in run.json and the evolver's metadata)."""
    pool_texts = [item.text for item in pool]
    dev_texts = [item.text for item in dev]
    confirm_texts = [item.text for item in confirm]
    confirmation = {"confirm_fingerprint": fingerprint(json.dumps(confirm_texts, ensure_ascii=False)),
                    "confirm_size": len(confirm)} if confirm else {}
    return {
        "fingerprint": fingerprint(json.dumps([sorted(pool_texts + dev_texts + confirm_texts)], ensure_ascii=False)),
        "train_fingerprint": fingerprint(json.dumps(sorted(pool_texts), ensure_ascii=False)),
        "dev_fingerprint": fingerprint(json.dumps(dev_texts, ensure_ascii=False)),
        "size": len(pool) + len(dev) + len(confirm),
        "train_pool_size": len(pool),
        "dev_size": len(dev),
        **confirmation,
    }
