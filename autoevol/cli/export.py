"""``autoevol export``: training files from a finished evolve output, with an optional dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autoevol.cli.common import console, fail
from autoevol.data import output_format
from autoevol.programs.evolver import Evolver


def export_command(
    source: Annotated[Path, typer.Argument(help="An evolve output (.jsonl, .parquet or a saved dataset folder).")],
    to: Annotated[Path, typer.Option("--to", help="Mixed: the output file or folder. Separate: a folder, or a .jsonl/.parquet prefix.")] = ...,  # type: ignore[assignment]
    mode: Annotated[str, typer.Option(help="'separate' (one file per round) or 'mixed' (every round in one file).")] = "separate",
    include_seed: Annotated[bool, typer.Option(help="Add the seed instructions as round 0.")] = False,
    dedup: Annotated[bool, typer.Option(help="Drop exact and near-duplicate instructions (WordLlama embeddings).")] = False,
    dup_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Cosine similarity from which two instructions are near-duplicates.")] = 0.95,
    card: Annotated[bool, typer.Option(help="Write a dataset card (README.md) with the method, models and quality figures.")] = False,
    program: Annotated[Optional[Path], typer.Option(help="The evolver file used, to record its method in the card.")] = None,
    quality: Annotated[bool, typer.Option(help="Put quality metrics in the card.")] = True,
    push_to_hub: Annotated[Optional[str], typer.Option(help="Upload the export to this Hugging Face Hub dataset repo.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing export files.")] = False,
) -> None:
    """Export the successful rows of SOURCE per round or mixed, with lineage, for fine-tuning."""
    from autoevol import export as exporting

    if mode not in ("separate", "mixed"):
        fail(f"--mode must be 'separate' or 'mixed', not '{mode}'")
    if not source.exists():
        fail(f"{source}: no such evolve output")
    output_format(source)
    output_format(to)
    if to.exists() and not overwrite:
        fail(f"{to}: the export exists already; use --overwrite to replace it")
    folder = to if output_format(to) == "dataset" else to.parent
    readme = folder / exporting.CARD_NAME
    if card and readme.exists():
        if not exporting.is_own_card(readme):
            fail(f"{readme}: exists and was not written by autoevol; move it away to get a dataset card")
        if not overwrite and not (to.is_dir() and readme.parent == to):
            fail(f"{readme}: exists already; use --overwrite to replace it")
    if to.exists() and to.is_dir() and overwrite and mode == "separate":
        for old in to.glob("round-*.parquet"):
            old.unlink()
    method = Evolver().load(program).method if program else None
    embedder = None
    if dedup:
        from autoevol.metrics.embeddings import WordLlamaEmbedder

        embedder = WordLlamaEmbedder()
    result = exporting.export_rounds(source, to, mode=mode, include_seed=include_seed, dedup=dedup,  # type: ignore[arg-type]
                                     dup_threshold=dup_threshold, embedder=embedder)
    for path in result.files:
        console.print(f"wrote {path}", highlight=False)
    counts = ", ".join(f"round {r}: {n}" for r, n in result.rows_by_round.items())
    console.print(f"rows: {counts or 'none'}" + (f"; duplicates dropped: {result.duplicates_dropped}" if dedup else ""),
                  highlight=False)
    if card:
        splits = result.splits if mode == "separate" or output_format(to) != "dataset" else {}
        written = exporting.write_dataset_card(folder, source, method=method, splits=splits, quality=quality,
                                               exported_rows=sum(result.rows_by_round.values()),
                                               hyperparameters={"mode": mode, "include_seed": include_seed,
                                                                "dedup": dedup, "dup_threshold": dup_threshold})
        console.print(f"wrote {written}", highlight=False)
    if push_to_hub:
        try:
            exporting.push_to_hub(to, push_to_hub)
        except exporting.HubError as error:
            fail(str(error))
        console.print(f"pushed to https://huggingface.co/datasets/{push_to_hub}", highlight=False)
