"""What the fake server does wrong on purpose (the fault plan) and what it counts (the stats)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = ("error_500", "rate_limit_429", "timeout", "drop", "garbage")


@dataclass(frozen=True)
class FaultPlan:
    """Probabilities (each in [0, 1], summing to at most 1) of each injected fault per request.

    ``retry_after`` is the ``Retry-After`` header (seconds) sent with 429s; ``hang_seconds`` is how
    long a ``timeout`` fault holds the request before closing the connection without an answer.
    """

    error_500: float = 0.0
    rate_limit_429: float = 0.0
    retry_after: float = 1.0
    timeout: float = 0.0
    hang_seconds: float = 30.0
    drop: float = 0.0
    garbage: float = 0.0

    def __post_init__(self) -> None:
        rates = [getattr(self, kind) for kind in FAULT_KINDS]
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"fault rates must be in [0, 1]: {self}")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"fault rates sum to {sum(rates):.3f} > 1: {self}")
        if self.retry_after < 0 or self.hang_seconds < 0:
            raise ValueError("retry_after and hang_seconds must be >= 0")

    def choose(self, rng: random.Random) -> str | None:
        """Draw one fault kind (or ``None`` for a normal answer) from ``rng``."""
        draw, edge = rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += getattr(self, kind)
            if draw < edge:
                return kind
        return None


@dataclass
class ServerStats:
    """A snapshot of the server's counters.

    ``requests`` counts chat-completion requests received, ``ok`` the real completions answered
    with 200, ``faults`` the injected faults by kind (plus ``bad_request`` and ``responder_error``),
    and ``completions_by_key`` the successful completions per :func:`request_key` of the messages.
    """

    requests: int = 0
    ok: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    completions_by_key: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerStats:
        """Rebuild a snapshot from :meth:`to_dict` output (e.g. ``GET /stats``)."""
        return cls(requests=data["requests"], ok=data["ok"], faults=dict(data["faults"]),
                   completions_by_key=dict(data["completions_by_key"]))

    @property
    def repeated_completions(self) -> dict[str, int]:
        """Keys answered successfully more than once (empty when no completed call was repeated)."""
        return {key: count for key, count in self.completions_by_key.items() if count > 1}


def request_key(messages: list[dict]) -> str:
    """A stable short hash of a request's messages (the key of ``completions_by_key``)."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
