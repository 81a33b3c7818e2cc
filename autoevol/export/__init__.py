"""Post-processing of a finished evolve output: training files, their dataset card, the Hub.

The rooms: :mod:`~autoevol.export.rounds` (the export itself: successful rows, per round or mixed,
deduplicated on request), :mod:`~autoevol.export.layouts` (the training layouts: chat messages,
ShareGPT, Alpaca, conversations put back together, lineage), :mod:`~autoevol.export.card` (the
dataset card, ``README.md``) and :mod:`~autoevol.export.hub` (uploading to the Hugging Face Hub).
"""

from autoevol.export.card import (
    CARD_MARKER,
    CARD_NAME,
    EXPORT_FIELDS,
    OUTPUT_FIELDS,
    CardError,
    CardFacts,
    card_facts,
    dataset_card,
    is_own_card,
    write_dataset_card,
    write_output_card,
)
from autoevol.export.hub import HubError, push_to_hub
from autoevol.export.rounds import (
    ExportMode,
    ExportResult,
    export_rounds,
    export_rows,
    separate_paths,
)

__all__ = [
    "CARD_MARKER",
    "CARD_NAME",
    "EXPORT_FIELDS",
    "OUTPUT_FIELDS",
    "CardError",
    "CardFacts",
    "ExportMode",
    "ExportResult",
    "HubError",
    "card_facts",
    "dataset_card",
    "export_rounds",
    "export_rows",
    "is_own_card",
    "push_to_hub",
    "separate_paths",
    "write_dataset_card",
    "write_output_card",
]
