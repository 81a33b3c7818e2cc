"""The dataset card (``README.md``) of an evolve output or an export.

The card follows the Hugging Face convention: YAML front matter (with a ``configs`` entry that
lets ``datasets.load_dataset`` find the data files), then Markdown describing how the data was
made: the evolving method, the models, the settings, rows and failures per round, failures by
rule, quality figures, the fields and the files. Only a card autoevol wrote (it carries
:data:`CARD_MARKER`) is ever replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from autoevol.data import output_format, read_rows
from autoevol.data.writers import temporary_sibling
from autoevol.export.layouts import FORMAT_DESCRIPTIONS, ConversationCounts
from autoevol.metrics.embeddings import Embedder
from autoevol.metrics.quality import QualityReport, quality_report
from autoevol.records import fingerprint
from autoevol.signatures.evolve import INITIAL_METHOD

logger = logging.getLogger(__name__)

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
    "operation": "the classic operation that evolved the row (`--method evol-instruct`; empty otherwise)",
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
    "operation": "the classic operation that evolved the row (`--method evol-instruct`; empty otherwise)",
}


class CardError(RuntimeError):
    """A ``README.md`` that autoevol did not write is in the way of a dataset card."""


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
    return f"`{export_format}`: {FORMAT_DESCRIPTIONS[export_format]} Loads as it is with {loaders}."


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
    with temporary_sibling(card) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
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
