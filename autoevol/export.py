"""Post-processing of a finished evolve output: training files per round or mixed, and a dataset card.

An evolve output holds one row per input and per round, failed rows included. An export keeps the
successful evolutions only (the training data), one row per evolved instruction with its lineage:

    id, root_id, parent_id, round, instruction, original, answer, method_fingerprint, evol_model,
    answer_model, turn

With ``include_seed`` the seed instructions join as round 0 rows (``id == root_id``, no parent).
``export_format`` writes those rows in a layout trainers read instead (chat messages, ShareGPT,
Alpaca; conversations put back together), with the lineage in a side file or column: see
:mod:`autoevol.formats`.
``mode="separate"`` writes one file per round; ``mode="mixed"`` one file with every round (the
paper's mixed-round data). The dataset card (``README.md``) follows the Hugging Face convention:
YAML front matter, then a Markdown description of how the data was made.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from autoevol import formats
from autoevol.data import DataError, output_format, read_rows, write_rows
from autoevol.formats import (
    ConversationCounts,
    ConversationInput,
    ExportFormat,
    LineageMode,
)
from autoevol.metrics.embeddings import Embedder
from autoevol.metrics.quality import QualityReport, dedup_indices, quality_report
from autoevol.records import fingerprint
from autoevol.signatures.evolve import INITIAL_METHOD

logger = logging.getLogger(__name__)

ExportMode = Literal["separate", "mixed"]

#: The columns of an exported row, in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "id", "root_id", "parent_id", "round", "instruction", "original", "answer", "method_fingerprint", "evol_model",
    "answer_model", "turn",
)
CARD_NAME = "README.md"
#: The line that marks a card as written by autoevol: only such a card is ever replaced.
CARD_MARKER = "<!-- dataset card written by autoevol; it is rewritten when the data is written again -->"

#: The fields of an exported row, as the card describes them.
EXPORT_FIELDS: dict[str, str] = {
    "id": "`<root id>:r<round>` (the root id itself for seed rows)",
    "root_id": "id of the seed instruction this row descends from",
    "parent_id": "id of the row this one was evolved from (round 1: the seed)",
    "round": "evolution round (0 = seed)",
    "instruction": "the evolved instruction",
    "original": "the instruction it was evolved from",
    "answer": "the answer to the evolved instruction",
    "method_fingerprint": "short hash of the evolving method",
    "evol_model": "the model that evolved the instruction",
    "answer_model": "the model that wrote the answer (the evol model unless a separate answer LM was set)",
    "turn": "conversation inputs: index of the human turn this row evolves",
}
#: The fields of an evolve output row (``EvolvedRow``): every input and round, failed rows included.
OUTPUT_FIELDS: dict[str, str] = {
    "id": "`<root id>:r<round>`",
    "parent_id": "id of the row this one was evolved from (round 1: the seed)",
    "root_id": "id of the seed instruction this row descends from",
    "round": "evolution round (1 = evolved from the seed)",
    "original": "the instruction it was evolved from",
    "evolved": "the evolved instruction (empty when the evol model gave none)",
    "answer": "the answer to the evolved instruction (failed rows: the evol model's, read by failure detection)",
    "failed": "whether a failure rule rejected the evolution",
    "rule": "the failure rule that decided it (failed rows only)",
    "reason": "why that rule fired",
    "method_fingerprint": "short hash of the evolving method",
    "evol_model": "the model that evolved the instruction",
    "answer_model": "the model that wrote the answer (the evol model unless a separate answer LM was set)",
    "turn": "conversation inputs: index of the human turn this row evolves",
}


class CardError(RuntimeError):
    """A ``README.md`` that autoevol did not write is in the way of a dataset card."""


class ExportResult(BaseModel):
    """What an export wrote."""

    files: list[Path]
    rows_by_round: dict[int, int] = Field(description="rows written per round (0 = seed)")
    duplicates_dropped: int = 0
    splits: dict[str, str] = Field(default_factory=dict, description="split name -> file, for a card")
    export_format: str = "raw"
    lineage_files: list[Path] = Field(default_factory=list)
    conversations: ConversationCounts | None = Field(
        default=None, description="conversations put back together (conversation inputs only)")


def export_rows(rows: Iterable[Mapping[str, Any]], *, include_seed: bool = False) -> list[dict[str, Any]]:
    """The exported rows of an evolve output's rows: successful evolutions, seeds first when asked."""
    seeds: dict[str, dict[str, Any]] = {}
    evolved: list[dict[str, Any]] = []
    for row in rows:
        round_no = int(row.get("round") or 1)
        if round_no == 1 and row.get("root_id") is not None and row["root_id"] not in seeds:
            seeds[row["root_id"]] = {
                "id": row["root_id"], "root_id": row["root_id"], "parent_id": None, "round": 0,
                "instruction": row.get("original"), "original": None, "answer": None,
                "method_fingerprint": None, "evol_model": None, "answer_model": None, "turn": row.get("turn"),
            }
        if row.get("failed") or not row.get("evolved"):
            continue
        evolved.append({
            "id": row.get("id"), "root_id": row.get("root_id"), "parent_id": row.get("parent_id"),
            "round": round_no, "instruction": row.get("evolved"), "original": row.get("original"),
            "answer": row.get("answer"), "method_fingerprint": row.get("method_fingerprint"),
            "evol_model": row.get("evol_model"), "answer_model": row.get("answer_model"), "turn": row.get("turn"),
        })
    evolved.sort(key=lambda r: r["round"])  # stable: input order within a round
    return ([*seeds.values()] if include_seed else []) + evolved


def _dedup(rows: list[dict[str, Any]], *, embedder: Embedder | None, dup_threshold: float) -> list[dict[str, Any]]:
    texts = [str(r["instruction"] or "") for r in rows]
    if not texts:
        return rows
    emb = None
    if embedder is not None:
        from autoevol.metrics.embeddings import normalize_rows

        emb = normalize_rows(embedder.embed(texts))
    return [rows[i] for i in dedup_indices(texts, emb, threshold=dup_threshold)]


def separate_paths(out: str | Path, rounds: Sequence[int]) -> dict[int, Path]:
    """Where ``mode="separate"`` writes each round.

    A ``.jsonl``/``.parquet`` path is a prefix (``data.jsonl`` -> ``data.round-1.jsonl``); a path
    without a suffix is a folder holding ``round-<r>.parquet`` files (the Hub's folder layout).
    """
    out = Path(out)
    if output_format(out) == "dataset":
        return {r: out / f"round-{r}.parquet" for r in rounds}
    return {r: out.with_name(f"{out.stem}.round-{r}{out.suffix}") for r in rounds}


def export_rounds(
    rows_path: str | Path,
    out_dir_or_prefix: str | Path,
    *,
    mode: ExportMode = "separate",
    include_seed: bool = False,
    dedup: bool = False,
    dup_threshold: float = 0.95,
    embedder: Embedder | None = None,
    export_format: ExportFormat = "raw",
    lineage: LineageMode = "file",
    conversations: ConversationInput | None = None,
) -> ExportResult:
    """Export the successful rows of an evolve output, per round or mixed, in a training layout.

    Args:
        rows_path: an evolve output (``.jsonl``, ``.parquet`` or a ``save_to_disk`` folder).
        out_dir_or_prefix: ``mode="mixed"``: the output file or dataset folder; ``mode="separate"``:
            see :func:`separate_paths`.
        include_seed: add the seed instructions as round 0.
        dedup: drop exact repeats and, with ``embedder``, near-duplicates (cosine >= ``dup_threshold``)
            of an earlier row; within each file, first occurrence wins (seeds come first).
        embedder: for near-duplicates; without one only exact (normalized text) repeats are dropped.
        export_format: ``raw`` (the rows above), ``messages``, ``sharegpt`` or ``alpaca`` (see
            :mod:`autoevol.formats`).
        lineage: where a non-raw layout keeps the lineage: ``file`` (``<export>.lineage.jsonl``
            beside each data file), ``column`` (a ``lineage`` JSON column) or ``none``.
        conversations: the input evolve read, when it held conversations: needed by
            ``messages`` and ``sharegpt`` to put them back together.

    Raises:
        ValueError: an unknown mode, format or lineage mode, or seeds or dedup asked with a non-raw
            layout that cannot hold them.
        DataError: conversation rows without ``conversations``, or an input that lacks them.
    """
    if mode not in ("separate", "mixed"):
        raise ValueError(f"mode must be 'separate' or 'mixed', not {mode!r}")
    formats.check_format(export_format, lineage)
    if include_seed and export_format != "raw":
        raise ValueError("seed rows have no answers: include_seed works with the raw format only")
    rows = export_rows(read_rows(rows_path), include_seed=include_seed)
    rebuilding = export_format in ("messages", "sharegpt") and any(row.get("turn") is not None for row in rows)
    if rebuilding and conversations is None:
        raise DataError(rows_path, "holds turns of conversations; give the input evolve read (--data) to put "
                                   "them back together, or export them one by one with --format alpaca or raw")
    if rebuilding and dedup:
        raise ValueError("dedup would drop single turns out of conversations; export conversations without it")
    groups: dict[int, list[dict[str, Any]]] = {}
    if mode == "mixed":
        groups[-1] = rows
    else:
        for row in rows:
            groups.setdefault(row["round"], []).append(row)
    dropped = 0
    if dedup:
        for key, group in groups.items():
            kept = _dedup(group, embedder=embedder, dup_threshold=dup_threshold)
            dropped += len(group) - len(kept)
            groups[key] = kept
    root = Path(out_dir_or_prefix)
    result = ExportResult(files=[], rows_by_round={}, duplicates_dropped=dropped, export_format=export_format,
                          conversations=ConversationCounts() if rebuilding else None)
    targets = {-1: root} if mode == "mixed" else separate_paths(root, sorted(groups))
    written: Counter[int] = Counter()
    for key, group in sorted(groups.items()):
        target = targets[key]
        written.update(_write_layout(group, target, root, result, export_format=export_format, lineage=lineage,
                                     conversations=conversations if rebuilding else None))
        result.files.append(target)
        if mode == "mixed":
            result.splits["train"] = target.name if output_format(target) != "dataset" else ""
        else:
            result.splits[f"round_{key}"] = target.name
    result.rows_by_round = dict(sorted(written.items()))
    logger.info("exported %d rows to %d file(s)", sum(written.values()), len(result.files))
    return result


def _write_layout(group: list[dict[str, Any]], target: Path, root: Path, result: ExportResult, *,
                  export_format: str, lineage: str, conversations: ConversationInput | None) -> Counter[int]:
    """Write one export file (and its lineage file) in ``export_format``; returns rows per round."""
    if export_format == "raw":
        write_rows(group, target, schema_hint=None)
        return Counter(row["round"] for row in group)
    if conversations is not None and result.conversations is not None:
        pairs = formats.conversation_rows(group, export_format, lineage, conversations, result.conversations)
    else:
        pairs = formats.single_turn_rows(group, export_format, lineage)
    records: list[dict[str, Any]] = []

    def layout_rows() -> Any:
        for row, record in pairs:
            records.append(record)
            yield row

    write_rows(layout_rows(), target, schema_hint=formats.schema(export_format, lineage))
    if lineage == "file":
        side = formats.lineage_path(target, root)
        write_rows(records, side)
        result.lineage_files.append(side)
    return Counter(int(record["round"]) for record in records)


# --------------------------------------------------------------------------- dataset card


class CardFacts(BaseModel):
    """What a dataset card records about an evolve output (gathered by :func:`card_facts`)."""

    rows: int = 0
    rounds: list[int] = Field(default_factory=list)
    rows_by_round: dict[int, int] = Field(default_factory=dict)
    failed_by_round: dict[int, int] = Field(default_factory=dict)
    failures_by_rule: dict[str, int] = Field(default_factory=dict)
    method_fingerprints: list[str] = Field(default_factory=list)
    evol_models: list[str] = Field(default_factory=list)
    answer_models: list[str] = Field(default_factory=list)
    seed_quality: QualityReport | None = None
    evolved_quality: dict[int, QualityReport] = Field(default_factory=dict)


def card_facts(
    rows: Iterable[Mapping[str, Any]], *, quality: bool = True, embedder: Embedder | None = None,
    dup_threshold: float = 0.95,
) -> CardFacts:
    """Counts, failures by rule, and (with ``quality``) quality of the seeds and of each round.

    ``rows`` is read once, so a stream works; without ``quality`` no text is kept in memory.
    """
    facts = CardFacts()
    seeds: dict[str, str] = {}
    evolved: dict[int, tuple[list[str], list[str]]] = {}
    for row in rows:
        facts.rows += 1
        r = int(row.get("round") or 1)
        facts.rows_by_round[r] = facts.rows_by_round.get(r, 0) + 1
        if row.get("failed"):
            facts.failed_by_round[r] = facts.failed_by_round.get(r, 0) + 1
            rule = str(row.get("rule") or "unknown")
            facts.failures_by_rule[rule] = facts.failures_by_rule.get(rule, 0) + 1
        elif quality and row.get("evolved"):
            texts, parents = evolved.setdefault(r, ([], []))
            texts.append(str(row["evolved"]))
            parents.append(str(row.get("original") or ""))
        if quality and r == 1 and row.get("root_id") is not None:
            seeds.setdefault(str(row["root_id"]), str(row.get("original") or ""))
        for key, target in (("method_fingerprint", facts.method_fingerprints), ("evol_model", facts.evol_models),
                            ("answer_model", facts.answer_models)):
            if row.get(key) and row[key] not in target:
                target.append(str(row[key]))
    facts.rounds = sorted(facts.rows_by_round)
    facts.failures_by_rule = dict(sorted(facts.failures_by_rule.items(), key=lambda kv: (-kv[1], kv[0])))
    if quality:
        if embedder is None:
            from autoevol.metrics.embeddings import WordLlamaEmbedder

            embedder = WordLlamaEmbedder()
        if seeds:
            facts.seed_quality = quality_report(list(seeds.values()), embedder=embedder, dup_threshold=dup_threshold)
        for r, (texts, parents) in sorted(evolved.items()):
            facts.evolved_quality[r] = quality_report(texts, parents=parents, embedder=embedder,
                                                      dup_threshold=dup_threshold)
    return facts


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def dataset_card(
    facts: CardFacts,
    *,
    method: str | None = None,
    title: str = "Evolved instructions",
    models: Mapping[str, str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    splits: Mapping[str, str] | None = None,
    exported_rows: int | None = None,
    fields: Mapping[str, str] | None = None,
    export_format: str | None = None,
    conversations: ConversationCounts | None = None,
) -> str:
    """The text of a dataset card (``README.md``): YAML front matter, then Markdown sections.

    Records the evolving method (when known; e_0 is recognised by its fingerprint), the models,
    hyperparameters, failures per rule, per-round counts, the quality figures of the seeds and of
    each round, the lineage fields and how the data was made. ``splits`` maps split names to data
    files (a ``configs`` entry lets ``datasets.load_dataset`` on the folder find them). ``fields``
    describes the columns (default :data:`EXPORT_FIELDS`; an evolve output: :data:`OUTPUT_FIELDS`).
    ``export_format`` names the layout of an export (``None``: an evolve output's own rows);
    ``conversations`` says how many conversation turns were evolved and how many kept their text.
    """
    if method is None and fingerprint(INITIAL_METHOD) in facts.method_fingerprints:
        method = INITIAL_METHOD
    models = dict(models or {})
    if facts.evol_models and "evol" not in models:
        models["evol"] = ", ".join(facts.evol_models)
    if facts.answer_models and "answer" not in models:
        models["answer"] = ", ".join(facts.answer_models)
    front = ["---", "language:", "- en", "license: other", "task_categories:", "- text-generation",
             "tags:", "- synthetic", "- instruction-tuning", "- evol-instruct", "- autoevol",
             "size_categories:", f"- {_size_category(exported_rows if exported_rows is not None else facts.rows)}",
             f"pretty_name: {_yaml_str(title)}"]
    files = {name: path for name, path in (splits or {}).items() if path}
    if files:
        front += ["configs:", "- config_name: default", "  data_files:"]
        for name, path in files.items():
            front += [f"  - split: {name}", f"    path: {_yaml_str(path)}"]
    front.append("---")
    out = [*front, CARD_MARKER, "", f"# {title}", "",
           "Instructions made harder and more diverse with [autoevol](https://arxiv.org/abs/2406.00770) "
           "(Auto Evol-Instruct as a compiled DSPy program).", "", "## How the data was made", "",
           "Each seed instruction was rewritten by the evol model following the evolving method below; the "
           "evol model then answered the rewrite, and failure rules judged the rewrite and its answer. When a "
           "separate answer model is listed below, it answered the rewrites that passed, and its answer is the "
           "one kept. With "
           "several rounds, round *r* rewrites the successful rows of round *r - 1* again. Failed rewrites "
           "are kept in the raw output with the rule and reason, but not in the exported training files.", ""]
    out += ["## Evolving method", ""]
    if method:
        out += ["```text", method.replace("```", "'''"), "```", ""]
    else:
        out += ["(method text not recorded; fingerprints: "
                + (", ".join(f"`{f}`" for f in facts.method_fingerprints) or "none") + ")", ""]
    if facts.method_fingerprints:
        out += ["Method fingerprint(s): " + ", ".join(f"`{f}`" for f in facts.method_fingerprints), ""]
    out += ["## Format", "", _format_text(export_format), ""]
    if conversations is not None:
        out += [f"Conversations put back together: {conversations.conversations}; human turns evolved: "
                f"{conversations.evolved_turns}; human turns kept with their original text (their evolution "
                f"failed, or was not in this round): {conversations.kept_turns}.", ""]
    if models:
        out += ["## Models", "", "| role | model |", "|---|---|"]
        out += [f"| {role} | `{name}` |" for role, name in models.items()] + [""]
    if hyperparameters:
        out += ["## Hyperparameters", "", "| setting | value |", "|---|---|"]
        out += [f"| {key} | `{value}` |" for key, value in hyperparameters.items()] + [""]
    out += ["## Rows per round", "", "| round | rows | failed | failure rate |", "|---|---|---|---|"]
    for r in facts.rounds:
        total, failed = facts.rows_by_round.get(r, 0), facts.failed_by_round.get(r, 0)
        out.append(f"| {r} | {total} | {failed} | {failed / total:.1%} |" if total else f"| {r} | 0 | 0 | - |")
    out.append("")
    if facts.failures_by_rule:
        out += ["## Failures by rule", "", "| rule | failed rows |", "|---|---|"]
        out += [f"| {rule} | {count} |" for rule, count in facts.failures_by_rule.items()] + [""]
    if facts.seed_quality is not None or facts.evolved_quality:
        columns = (["seed"] if facts.seed_quality is not None else []) + [f"round {r}" for r in facts.evolved_quality]
        reports = ([facts.seed_quality] if facts.seed_quality is not None else []) + list(facts.evolved_quality.values())
        figures = [rep.figures() for rep in reports]
        names = [name for name in figures[0] if any(f.get(name) is not None for f in figures)]
        for f in figures[1:]:
            names += [n for n in f if n not in names and f[n] is not None]
        out += ["## Quality metrics", "",
                "Complexity and diversity proxies (embedding diversity = mean pairwise cosine distance; "
                "distinct-n = distinct n-grams / n-grams; tag figures only when an InsTag tagger was used).", "",
                "| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for name in names:
            out.append(f"| {name} | " + " | ".join(_fmt(f.get(name)) for f in figures) + " |")
        out.append("")
    out += ["## Fields", "", "| field | meaning |", "|---|---|"]
    out += [f"| {name} | {meaning} |" for name, meaning in (fields or EXPORT_FIELDS).items()] + [""]
    if files:
        out += ["## Files", "", "| split | file |", "|---|---|"]
        out += [f"| {name} | `{path}` |" for name, path in files.items()] + [""]
    return "\n".join(out)


def _format_text(export_format: str | None) -> str:
    if export_format is None:
        return ("autoevol's evolve output: one row per input and round, failed rows included with the rule "
                "and reason (`autoevol export --format` writes training layouts from it).")
    loaders = "`datasets.load_dataset` (json or parquet files) or `datasets.load_from_disk` (a saved folder)"
    return f"`{export_format}`: {formats.FORMAT_DESCRIPTIONS[export_format]} Loads as it is with {loaders}."


def is_own_card(path: str | Path) -> bool:
    """Whether the file at ``path`` is a dataset card autoevol wrote (it carries :data:`CARD_MARKER`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return any(line.rstrip("\n") == CARD_MARKER for line in file)
    except OSError:
        return False


def write_dataset_card(
    out_folder: str | Path,
    rows_path: str | Path,
    *,
    method: str | None = None,
    models: Mapping[str, str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    splits: Mapping[str, str] | None = None,
    exported_rows: int | None = None,
    quality: bool = True,
    embedder: Embedder | None = None,
    title: str = "Evolved instructions",
    fields: Mapping[str, str] | None = None,
    export_format: str | None = None,
    conversations: ConversationCounts | None = None,
) -> Path:
    """Write ``README.md`` into ``out_folder`` for the evolve output at ``rows_path``; returns its path.

    The card replaces the old one in one step (a temporary sibling, then a rename), so a reader
    never sees half a card. Only a card autoevol wrote is replaced (see :func:`is_own_card`).

    Raises:
        CardError: ``out_folder`` holds a ``README.md`` that autoevol did not write.
    """
    folder = Path(out_folder)
    card = folder / CARD_NAME
    if card.exists() and not is_own_card(card):
        raise CardError(f"{card}: exists and was not written by autoevol; refusing to replace it "
                        "(move it away to get a dataset card)")
    facts = card_facts(read_rows(rows_path), quality=quality, embedder=embedder)
    text = dataset_card(facts, method=method, title=title, models=models, hyperparameters=hyperparameters,
                        splits=splits, exported_rows=exported_rows, fields=fields, export_format=export_format,
                        conversations=conversations)
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{CARD_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        os.replace(temporary, card)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return card


def write_output_card(
    out: str | Path,
    *,
    method: str,
    models: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Path | None:
    """The dataset card of an evolve output written as a dataset folder (what ``evolve --out FOLDER`` does).

    The card is :func:`write_dataset_card`'s (the card ``autoevol export --card`` writes), describing
    the output's own columns (:data:`OUTPUT_FIELDS`), without quality metrics (``autoevol export
    --card`` or ``autoevol report`` compute those). A ``.jsonl`` or ``.parquet`` output gets no card.
    A ``README.md`` autoevol did not write is left alone, with a warning. Returns the card's path.
    """
    if output_format(out) != "dataset":
        return None
    try:
        card = write_dataset_card(out, out, method=method, models=models, hyperparameters=settings,
                                  quality=False, title="Evolve output", fields=OUTPUT_FIELDS)
    except CardError as error:
        logger.warning("no dataset card written: %s", error)
        return None
    logger.info("wrote the dataset card %s", card)
    return card


# --------------------------------------------------------------------------- hub


class HubError(RuntimeError):
    """Pushing to the Hugging Face Hub is not possible (library missing, no access, no network)."""


def push_to_hub(path: str | Path, repo: str, *, private: bool = False) -> None:
    """Upload an export (a file, a ``save_to_disk`` folder or a folder of round files) with ``datasets``.

    Raises:
        HubError: ``datasets`` is missing or the upload fails (one line, naming the repo).
    """
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - datasets is a dependency
        raise HubError(f"pushing to the Hub needs the 'datasets' package ({error})") from None
    path = Path(path)
    try:
        if path.is_dir() and (path / "state.json").exists():
            data: Any = datasets.load_from_disk(str(path))
        elif path.is_dir():
            files = {p.stem.replace("-", "_"): str(p) for p in sorted(path.glob("*.parquet"))}
            if not files:
                raise HubError(f"{path}: no parquet files or saved dataset to push")
            data = datasets.load_dataset("parquet", data_files=files)
        else:
            kind = "json" if path.suffix == ".jsonl" else "parquet"
            data = datasets.load_dataset(kind, data_files={"train": str(path)})
        data.push_to_hub(repo, private=private)
    except HubError:
        raise
    except Exception as error:  # network, authentication, repository errors
        detail = " ".join(str(error).split())[:300]
        raise HubError(f"cannot push {path} to the Hub repo '{repo}': {type(error).__name__}: {detail}") from None
