"""A persistent cache of completed LM calls, keyed by the full request."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


#: Connection settings that do not change what a model answers (a local server gets a new port
#: every start, a key may be rotated): they are left out of the cache key.
CONNECTION_KEYS = frozenset({"api_key", "api_base", "base_url", "timeout"})


def request_key(request: dict[str, Any]) -> str:
    """A stable hash of a request (model, messages, sampling settings, rollout id)."""
    content = {key: value for key, value in request.items() if key not in CONNECTION_KEYS}
    canonical = json.dumps(content, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CallCache:
    """Completed LM responses stored in SQLite, safe to share between threads.

    Every completed call is committed at once, so after a crash a rerun with the same cache
    repeats none of the calls that had completed. ``path=None`` keeps the cache in memory.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            if self.path:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, ensure_ascii=False, default=str)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls (key, record) VALUES (?, ?)", (key, text))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
