"""Exports of an evolve output: rounds separate or mixed, seeds, duplicates, lineage, dataset card."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoevol.data import read_rows, write_rows
from autoevol.export import (
    CARD_MARKER,
    CardError,
    card_facts,
    dataset_card,
    export_rounds,
    push_to_hub,
    HubError,
    separate_paths,
    write_dataset_card,
    write_output_card,
)
from autoevol.records import EvolvedRow, fingerprint
from autoevol.signatures.evolve import INITIAL_METHOD
from tests.metrics.test_quality import HashingEmbedder

E0 = fingerprint(INITIAL_METHOD)


def make_output(path: Path, *, n: int = 6, rounds: int = 3, duplicate: bool = False) -> Path:
    """n seeds; item k fails in round k % 4 (k=1 and 5 fail round 1, k=2 round 2, k=3 round 3)."""
    rows = []
    for k in range(n):
        root, parent, text = f"s{k}", f"s{k}", f"Seed task number {k} about topic {k * 7}."
        for r in range(1, rounds + 1):
            fails = k % 4 == r
            evolved = None if fails else f"{text} Harder in round {r} with extra detail {k}."
            if duplicate and k == 2 and r == 1:
                evolved = f"{'Seed task number 0 about topic 0.'} Harder in round 1 with extra detail 0."
            rows.append(EvolvedRow(id=f"{root}:r{r}", parent_id=parent, root_id=root, round=r, original=text,
                                   evolved=evolved, answer=None if fails else f"answer {k}.{r}", failed=fails,
                                   rule="unchanged" if fails else None, reason="same" if fails else "",
                                   method_fingerprint=E0, evol_model="openai/fake"))
            if fails:
                break
            parent, text = f"{root}:r{r}", evolved
    write_rows(rows, path, schema_hint=EvolvedRow)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_mixed_export_keeps_consistent_lineage(tmp_path: Path, suffix: str) -> None:
    source = make_output(tmp_path / f"out{suffix}")
    result = export_rounds(source, tmp_path / f"mixed{suffix}", mode="mixed", include_seed=True)
    rows = list(read_rows(result.files[0]))
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows)
    assert result.rows_by_round[0] == 6
    for row in rows:
        if row["round"] == 0:
            assert row["parent_id"] is None and row["id"] == row["root_id"]
            continue
        parent = by_id[row["parent_id"]]  # every parent is in the export
        assert parent["round"] == row["round"] - 1
        assert parent["root_id"] == row["root_id"]
        assert row["original"] == parent["instruction"]
        assert row["id"] == f"{row['root_id']}:r{row['round']}"
    assert result.rows_by_round == {0: 6, 1: 4, 2: 3, 3: 2}


def test_separate_export_writes_one_file_per_round(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.jsonl")
    result = export_rounds(source, tmp_path / "train.jsonl", mode="separate")
    assert [p.name for p in result.files] == ["train.round-1.jsonl", "train.round-2.jsonl", "train.round-3.jsonl"]
    assert [len(list(read_rows(p))) for p in result.files] == [4, 3, 2]
    assert all(r["round"] == 2 for r in read_rows(result.files[1]))
    folder = export_rounds(source, tmp_path / "hub", mode="separate", include_seed=True)
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == [f"round-{r}.parquet" for r in range(4)]
    assert folder.splits == {f"round_{r}": f"round-{r}.parquet" for r in range(4)}
    assert separate_paths(tmp_path / "x.parquet", [2])[2].name == "x.round-2.parquet"


def test_dataset_folder_export_and_dedup(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.jsonl", duplicate=True)
    plain = export_rounds(source, tmp_path / "plain", mode="mixed")
    deduped = export_rounds(source, tmp_path / "dedup", mode="mixed", dedup=True)
    assert plain.duplicates_dropped == 0 and deduped.duplicates_dropped == 1
    assert len(list(read_rows(tmp_path / "dedup"))) == len(list(read_rows(tmp_path / "plain"))) - 1
    near = export_rounds(source, tmp_path / "near.jsonl", mode="mixed", dedup=True, embedder=HashingEmbedder(),
                         dup_threshold=0.8)
    assert near.duplicates_dropped >= 1


def test_dataset_card_has_front_matter_method_and_figures(tmp_path: Path) -> None:
    source = make_output(tmp_path / "out.jsonl")
    facts = card_facts(list(read_rows(source)), embedder=HashingEmbedder())
    assert facts.failures_by_rule == {"unchanged": 4}
    assert facts.failed_by_round == {1: 2, 2: 1, 3: 1}
    card = dataset_card(facts, models={"evol": "openai/fake"}, hyperparameters={"rounds": 3},
                        splits={"round_1": "round-1.parquet"})
    assert card.startswith("---\n") and card.count("\n---\n") >= 1
    front = card.split("---")[1]
    assert "configs:" in front and "round-1.parquet" in front and "size_categories" in front
    assert INITIAL_METHOD.splitlines()[0] in card  # e_0 recognised by its fingerprint
    for text in ("Failures by rule", "| unchanged | 4 |", "embedding diversity", "distinct-2", "round 3",
                 "parent_id", "root_id", "| rounds | `3` |", "openai/fake"):
        assert text in card, text
    custom = dataset_card(card_facts(list(read_rows(source)), quality=False), method="My own method ```x```")
    assert "My own method" in custom and "Quality metrics" not in custom
    written = write_dataset_card(tmp_path / "folder", source, quality=False)
    assert written.name == "README.md" and "Evolving method" in written.read_text()


def test_card_replaces_only_its_own_readme(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = make_output(tmp_path / "out.jsonl")
    folder = tmp_path / "folder"
    first = write_dataset_card(folder, source, quality=False)
    assert CARD_MARKER in first.read_text()
    first.write_text(first.read_text().replace("Evolving method", "Stale"))
    assert "Evolving method" in write_dataset_card(folder, source, quality=False).read_text()
    first.write_text("# somebody's notes\n")
    with pytest.raises(CardError, match="not written by autoevol"):
        write_dataset_card(folder, source, quality=False)
    assert first.read_text() == "# somebody's notes\n"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]  # no temporary left behind
    # an evolve output: a card for a dataset folder only, and a user's README is left with a warning
    assert write_output_card(source, method=INITIAL_METHOD) is None
    dataset = make_output(tmp_path / "evolved")
    card = write_output_card(dataset, method="My method", models={"evol": "openai/fake"}, settings={"rounds": 3})
    text = card.read_text()
    assert "My method" in text and "| rounds | `3` |" in text and "| rule |" in text and "| evolved |" in text
    card.write_text("mine\n")
    assert write_output_card(dataset, method="My method") is None and card.read_text() == "mine\n"
    assert "no dataset card written" in caplog.text


def test_push_to_hub_fails_clearly_without_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "")
    source = make_output(tmp_path / "out.jsonl")
    export = export_rounds(source, tmp_path / "train.jsonl", mode="mixed")
    with pytest.raises(HubError, match="autoevol-test/none"):
        push_to_hub(export.files[0], "autoevol-test/none")
