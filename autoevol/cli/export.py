"""``autoevol export``: training files from a finished evolve output, with an optional dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from autoevol.cli.common import console, fail
from autoevol.data import output_format
from autoevol.export.layouts import fields as fields_of
from autoevol.programs.evolver import Evolver


def export_command(
    source: Annotated[Path, typer.Argument(help="An evolve output (.jsonl, .parquet or a saved dataset folder).")],
    to: Annotated[Path, typer.Option("--to", help="Mixed: the output file or folder. Separate: a folder, or a .jsonl/.parquet prefix.")] = ...,  # type: ignore[assignment]
    mode: Annotated[str, typer.Option(help="'separate' (one file per round) or 'mixed' (every round in one file).")] = "separate",
    export_format: Annotated[str, typer.Option("--format", help="'raw' (autoevol's rows with lineage columns), 'messages' (role/content chat messages), 'sharegpt' (conversations, from human/gpt) or 'alpaca' (instruction/input/output).")] = "raw",
    data: Annotated[Optional[Path], typer.Option(help="The input evolve read: needed to put conversations (ShareGPT or messages inputs) back together.")] = None,
    column: Annotated[Optional[str], typer.Option(help="With --data: its instruction column, as given to evolve (default: detected).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="With --data: its id column, as given to evolve.")] = None,
    lineage: Annotated[str, typer.Option(help="Non-raw formats: 'file' (EXPORT.lineage.jsonl beside the data), 'column' (a 'lineage' JSON column) or 'none'.")] = "file",
    include_seed: Annotated[bool, typer.Option(help="Add the seed instructions as round 0.")] = False,
    dedup: Annotated[bool, typer.Option(help="Drop exact and near-duplicate instructions (WordLlama embeddings).")] = False,
    dup_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Cosine similarity from which two instructions are near-duplicates.")] = 0.95,
    card: Annotated[bool, typer.Option(help="Write a dataset card (README.md) with the method, models and quality figures.")] = False,
    program: Annotated[Optional[Path], typer.Option(help="The evolver file used, to record its method in the card.")] = None,
    quality: Annotated[bool, typer.Option(help="Put quality metrics in the card.")] = True,
    push_to_hub: Annotated[Optional[str], typer.Option(help="Upload the export to this Hugging Face Hub dataset repo.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing export files.")] = False,
) -> None:
    """Export the successful rows of SOURCE per round or mixed, with lineage, for fine-tuning.

    Every export loads as it is with datasets.load_dataset (json, parquet) or load_from_disk (a
    folder). Conversations read from ShareGPT or messages inputs come back whole with --format
    messages or sharegpt (give --data): evolved turns in place, failed turns with their original text.
    """
    from autoevol import export as exporting
    from autoevol.export.layouts import EXPORT_FORMATS, LINEAGE_MODES, ConversationInput

    if mode not in ("separate", "mixed"):
        fail(f"--mode must be 'separate' or 'mixed', not '{mode}'")
    if export_format not in EXPORT_FORMATS:
        fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not '{export_format}'")
    if lineage not in LINEAGE_MODES:
        fail(f"--lineage must be one of {', '.join(LINEAGE_MODES)}, not '{lineage}'")
    if include_seed and export_format != "raw":
        fail("--include-seed adds seed rows, which have no answers: use it with --format raw")
    if data is not None and not data.exists():
        fail(f"{data}: no such file or folder")
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
    conversations = ConversationInput(data, column=column, id_column=id_column) if data is not None else None
    try:
        result = exporting.export_rounds(source, to, mode=mode, include_seed=include_seed, dedup=dedup,  # type: ignore[arg-type]
                                         dup_threshold=dup_threshold, embedder=embedder, export_format=export_format,  # type: ignore[arg-type]
                                         lineage=lineage, conversations=conversations)  # type: ignore[arg-type]
    except ValueError as error:
        fail(str(error))
    for path in [*result.files, *result.lineage_files]:
        console.print(f"wrote {path}", highlight=False)
    if result.conversations is not None:
        counts = result.conversations
        console.print(f"conversations: {counts.conversations}; turns evolved: {counts.evolved_turns}; turns kept "
                      f"with their original text: {counts.kept_turns}", highlight=False)
    counts = ", ".join(f"round {r}: {n}" for r, n in result.rows_by_round.items())
    console.print(f"rows: {counts or 'none'}" + (f"; duplicates dropped: {result.duplicates_dropped}" if dedup else ""),
                  highlight=False)
    if card:
        splits = result.splits if mode == "separate" or output_format(to) != "dataset" else {}
        written = exporting.write_dataset_card(folder, source, method=method, splits=splits, quality=quality,
                                               exported_rows=sum(result.rows_by_round.values()),
                                               hyperparameters={"mode": mode, "format": export_format, "lineage": lineage,
                                                                "include_seed": include_seed, "dedup": dedup,
                                                                "dup_threshold": dup_threshold},
                                               fields=None if export_format == "raw" else fields_of(export_format, lineage),
                                               export_format=export_format, conversations=result.conversations)
        console.print(f"wrote {written}", highlight=False)
    if push_to_hub:
        try:
            exporting.push_to_hub(to, push_to_hub)
        except exporting.HubError as error:
            fail(str(error))
        console.print(f"pushed to https://huggingface.co/datasets/{push_to_hub}", highlight=False)
